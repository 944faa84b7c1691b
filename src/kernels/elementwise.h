// Row-wise normalisation and activations (vectorised, OpenMP over rows).
#pragma once
#include <cstdint>

namespace vs::kernels {

// y[r,:] = (x[r,:] - mean) / sqrt(var + eps) * gamma + beta, for rows r < R of width C.
// x and y may alias.
void layernorm(const float* x, const float* gamma, const float* beta, float* y, int64_t R,
               int64_t C, float eps);

// In place: x[r,:] = softmax(scale * x[r,:]).
void softmax_rows(float* x, int64_t R, int64_t C, float scale = 1.f);

// In place exact GELU: x * 0.5 * (1 + erf(x / sqrt 2)) (where no GEMM/conv epilogue can do it:
// after a residual add or a LayerNorm in SAM).
void gelu(float* x, int64_t n);

// y[i] += x[i]  (residual connections)
void add_inplace(float* y, const float* x, int64_t n);

}  // namespace vs::kernels
