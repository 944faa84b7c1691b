// Learned quantisers for PTQ block reconstruction (compress/reconstruct): AdaRound's rectified
// sigmoid rounding of weights (Nagel et al. 2020, "Up or Down?") with its annealed regulariser,
// and LSQ's step-size gradient for activations (Esser et al. 2020). Sums over large arrays are
// taken in fixed chunks and added in order, so results do not depend on the thread count.
#pragma once
#include <cstdint>

namespace vs::train {

// h(a) = clamp(sigmoid(a) * (zeta - gamma) + gamma, 0, 1), zeta = 1.1, gamma = -0.1: the soft
// rounding offset added to floor(w / s). Its derivative is 0 where clamped.
float rect_sigmoid(float a);
float rect_sigmoid_grad(float a);
// The a with h(a) = frac (frac in [0, 1)): AdaRound starts from the float weight itself.
float rect_sigmoid_inverse(float frac);

// AdaRound regulariser R = sum_i 1 - |2 h(a_i) - 1|^beta, which pushes every h to 0 or 1 (beta
// annealed from large to small). Adds weight * dR/da to grad; returns R.
double adaround_regularizer(const float* a, float* grad, int64_t n, float beta, double weight);

// LSQ: y = (clamp(round(x / s) + z, 0, 2^bits - 1) - z) * s. Returns sum_i dy_i * dy_i/ds where
// dy/ds = round(x / s) - x / s inside the range, -z below it, 2^bits - 1 - z above it.
double lsq_scale_grad(const float* x, const float* dy, int64_t n, float s, int32_t zero, int bits);

// The same for the symmetric signed quantiser y = clamp(round(x / s), -lim, lim) * s,
// lim = 2^(bits-1) - 1 (attention v): dy/ds = round(x / s) - x / s inside, -+lim outside.
double lsq_scale_grad_sym(const float* x, const float* dy, int64_t n, float s, int bits);

}  // namespace vs::train
