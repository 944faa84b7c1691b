// Twin-region uniform quantisation of a Linear layer's input (PTQ4ViT's twin uniform quantizer
// for post-GELU activations, with the scale ratio searched per layer as in MPTQ-ViT's OPT-m).
// b bits: one bit selects the region, b-1 bits are the code within it (h = 2^(b-1) codes each):
//   fine region   (R1): scale s1, zero point z1: c1 = round_half_even(x / s1) + z1, x^ = (c1 - z1) s1,
//                       for every x with c1 <= h - 1 (the negative GELU tail and the dense bulk
//                       near 0; c1 is clamped below at 0);
//   coarse region (R2): scale s2 = 2^m s1, zero point 0: c2 = clamp(round_half_even(x / s2), 0, h - 1),
//                       x^ = c2 s2, for the larger values (true divisions, as in quantizer.h).
// Integer execution: the input becomes two u8 code matrices, q1 (c1 in R1, z1 elsewhere) and q2
// (c2 in R2, 0 elsewhere); two u8 x s8 GEMMs give acc1 = sum (q1 - z1) w and acc2 = sum q2 w,
// and acc1 + 2^m acc2 (exact in int32, see twin_fits_int32) is dequantised with the scale s1 by
// the usual epilogue: x^ . w = s1 (acc1 + 2^m acc2). The simulated path computes the same two
// accumulators with exact float GEMMs, so the two paths stay bit-identical.
#pragma once
#include <cstdint>

namespace vs::kernels {

struct TwinQuant {
  int bits = 8;      // total bits b (3..8): b-1 bits per region
  float scale = 1;   // s1, of the fine region
  int32_t zero = 0;  // z1 in [0, 2^(b-1) - 1]
  int m = 1;         // s2 / s1 = 2^m, m in 1..kMaxTwinM
};
constexpr int kMaxTwinM = 10;

// Validates bits, m, scale and zero point (throws vs::Error with `what` in the message).
void check_twin(const TwinQuant& t, const char* what);
// Whether acc1 + 2^m acc2 fits int32 for any K-long product with |weight code| <= wmax.
bool twin_fits_int32(const TwinQuant& t, int64_t K, int32_t wmax);

// x^ of one value (the simulated definition; used by the search and the tests).
float twin_fake(float x, const TwinQuant& t);
// The two code matrices of x [rows, cols] (leading dimension cols).
void quantize_twin(const float* x, uint8_t* q1, uint8_t* q2, int64_t rows, int64_t cols, const TwinQuant& t);
// acc1[i] += 2^m acc2[i].
void combine_twin(int32_t* acc1, const int32_t* acc2, int64_t n, int m);

}  // namespace vs::kernels
