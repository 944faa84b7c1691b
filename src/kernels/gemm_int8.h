// Integer GEMM through oneDNN: u8 activations (with a zero point) x s8 weights -> s32
// accumulators -> f32 with per-output-channel scales and bias, all fused in one primitive.
#pragma once
#include <cstdint>

#include "kernels/gemm.h"

namespace vs::kernels {

// The widest weight codes whose products with `abits`-bit u8 activations the int8 GEMM computes
// exactly on this CPU. With VNNI (vpdpbusd) that is 8. Without it (plain AVX2, e.g. AMD Zen 3),
// oneDNN uses vpmaddubsw, which sums adjacent u8*s8 products in int16 with saturation:
// 255 * 127 * 2 overflows, so 8-bit activations need weights within 7 bits (255 * 63 * 2 fits);
// activations of 7 bits or fewer take 8-bit weights. (PyTorch's fbgemm answers the same limit
// with 7-bit activations, "reduce_range".)
int int8_exact_weight_bits(int abits);
bool cpu_has_vnni();

// y[M,N] = (scale_x * scale_w[n]) * sum_k (x[m,k] - zero_x) * w[n,k] + bias[n], then epilogue.
// x: u8 [M,K]; w: s8 [N,K] (PyTorch layout); scale_w: [N]; bias may be null.
void linear_u8s8(const uint8_t* x, int32_t zero_x, float scale_x, const int8_t* w,
                 const float* scale_w, const float* bias, float* y, int64_t M, int64_t N,
                 int64_t K, Epilogue ep = Epilogue::none);

// Per-row (per-token) activation scales, for dynamic quantisation: row m uses scale_x[m] and
// zero_x[m]. Implemented as the s32 GEMM followed by a vectorised dequantisation pass.
void linear_u8s8_per_row(const uint8_t* x, const int32_t* zero_x, const float* scale_x,
                         const int8_t* w, const float* scale_w, const int32_t* w_row_sums,
                         const float* bias, float* y, int64_t M, int64_t N, int64_t K,
                         Epilogue ep = Epilogue::none);

}  // namespace vs::kernels
