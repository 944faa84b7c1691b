// Run-time activation quantisation for the integer path: float -> u8 codes, asymmetric,
// q = clamp(round_half_even(x / s) + z, 0, 2^bits - 1). The same formula as quant::quantize,
// kept here because it sits on the hot path of every quantised layer.
#pragma once
#include <cstdint>

namespace vs::kernels {

// One scale / zero point for the whole tensor (static, calibrated).
void quantize_u8(const float* x, uint8_t* q, int64_t n, float scale, int32_t zero, int bits);

// Per row (dynamic, per token): picks each row's own range (widened to include 0), writes its
// scale and zero point.
void quantize_u8_per_row(const float* x, uint8_t* q, int64_t rows, int64_t cols, int bits,
                         float* scales, int32_t* zeros);

// Simulation of the same: y = (q - z) * s, for checking the integer path against float math.
void fake_quantize_u8(const float* x, float* y, int64_t n, float scale, int32_t zero, int bits);

}  // namespace vs::kernels
