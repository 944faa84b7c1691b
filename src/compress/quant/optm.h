// OPT-m (MPTQ-ViT, arXiv 2401.14895): the twin-region uniform quantizer of post-GELU activations
// (kernels/twin_quant.h: a fine region with scale s1 for the dense bulk near 0 and the negative
// GELU tail, a coarse region with s2 = 2^m s1 for the rare large values) with the ratio m searched
// per layer instead of fixed by hand. For each m in 1..kMaxTwinM (where the integer product cannot
// overflow int32) and each clipping of the coarse region (s2 = a * max / (2^(b-1) - 1), a on a
// grid from 1 down to 0.2), s1 = s2 / 2^m and z1 = round(-min / s1) (clamped to the fine codes);
// the candidate whose quantised layer output Q(X) Q(W)^T is closest to the float X W^T on a
// calibration sample wins. The layer's plain uniform quantizer competes too: twin-uniform is used
// only where it lowers that error.
#pragma once
#include <cstdint>

#include "compress/quant/quantizer.h"
#include "kernels/twin_quant.h"

namespace vs::quant {

struct TwinChoice {
  int m = 0;  // 0: the uniform quantizer is better (keep it)
  kernels::TwinQuant twin;
  double error = 0, error_uniform = 0;  // ||Q(X) Q(W)^T - X W^T||^2 per element, on the sample
};

// x: sample [rows, K] of the layer's inputs; lo, hi: their calibrated range (all images);
// w: float weight [N, K]; wq: the quantised weight (dequantised, [N, K]), wmax its largest |code|;
// uniform: the per-tensor quantizer it replaces.
TwinChoice search_twin(const float* x, int64_t rows, float lo, float hi, const float* w, const float* wq, int64_t N,
                       int64_t K, int bits, int32_t wmax, const QParams& uniform);

}  // namespace vs::quant
