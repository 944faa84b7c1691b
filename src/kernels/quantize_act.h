// Run-time activation quantisation and dequantisation for the integer path.
//   quantise  : q = clamp(round_half_even(x / s) + z, 0, 2^bits - 1)   (u8 codes, asymmetric;
//               true division, the definition in compress/quant/quantizer.h)
//   dequantise: the int32 result of an integer GEMM back to floats, with bias and GELU fused.
// The integer and the simulated paths of every quantised layer call these same functions, so
// given the same int32 accumulators they produce bit-identical floats.
#pragma once
#include <cstdint>
#include <functional>

#include "kernels/gemm.h"
#include "kernels/rotation.h"

namespace vs::kernels {

// One scale / zero point for the whole tensor (static, calibrated). Rows of `cols` values are
// read with leading dimension ldx (>= cols) and written densely.
void quantize_u8(const float* x, uint8_t* q, int64_t rows, int64_t cols, int64_t ldx, float scale,
                 int32_t zero, int bits);
// The same codes for n values, on the calling thread (for fused row passes).
void quantize_u8_row(const float* x, uint8_t* q, int64_t n, float scale, int32_t zero, int bits);
// Symmetric signed codes q = clamp(round_half_even(x / s), -(2^(bits-1) - 1), 2^(bits-1) - 1).
void quantize_s8(const float* x, int8_t* q, int64_t rows, int64_t cols, int64_t ldx, float scale,
                 int bits);

// Asymmetric codes u = clamp(round_half_even(x / s) + zero, 0, 2^bits - 1) stored as
// int8(u - 2^(bits-1)), so that they can be the s8 operand of an integer GEMM; the effective
// zero point of the stored codes is zero - 2^(bits-1).
void quantize_asym_s8(const float* x, int8_t* q, int64_t rows, int64_t cols, int64_t ldx, float scale,
                      int32_t zero, int bits);

// The same codes, split into heads: x holds rows = B * tokens rows of heads * d columns (row
// stride ldx); head h of row (b, i) is written to q[((b * heads + h) * tokens + i) * d ...], so
// each head is a dense [tokens, d] operand of a batched (B * heads) integer GEMM.
void quantize_u8_heads(const float* x, uint8_t* q, int64_t rows, int64_t tokens, int64_t heads, int64_t d,
                       int64_t ldx, float scale, int32_t zero, int bits);
void quantize_s8_heads(const float* x, int8_t* q, int64_t rows, int64_t tokens, int64_t heads, int64_t d,
                       int64_t ldx, float scale, int bits);
void quantize_asym_s8_heads(const float* x, int8_t* q, int64_t rows, int64_t tokens, int64_t heads, int64_t d,
                            int64_t ldx, float scale, int32_t zero, int bits);

// Row r (= b * tokens + i) of those, on the calling thread (x: that row's heads * d values), for
// fused row passes; the same codes as the parallel functions above.
void quantize_u8_heads_row(const float* x, uint8_t* q, int64_t r, int64_t tokens, int64_t heads, int64_t d,
                           float scale, int32_t zero, int bits);
void quantize_s8_heads_row(const float* x, int8_t* q, int64_t r, int64_t tokens, int64_t heads, int64_t d,
                           float scale, int bits);
void quantize_asym_s8_heads_row(const float* x, int8_t* q, int64_t r, int64_t tokens, int64_t heads, int64_t d,
                                float scale, int32_t zero, int bits);
// Per row (dynamic, per token): picks each row's own range (widened to include 0), writes its
// scale and zero point.
void quantize_u8_per_row(const float* x, uint8_t* q, int64_t rows, int64_t cols, int bits,
                         float* scales, int32_t* zeros);

// How an int32 accumulator matrix acc [M, N] becomes floats:
//   y[m, n] = float(acc[m, n] - a_zero[m or -] * b_sums[n]) * (a_scale[m or 0] * b_scale[n or 0])
//             + bias[n], then the epilogue (or, with `add`, y[m, n] += that).
// a_zero is a_zero_rows[m] (per token) or the scalar a_zero_all; b_sums null when the zero point
// was already applied inside the GEMM.
struct Dequant {
  const float* a_scale = nullptr;
  bool a_per_row = false;
  const int32_t* a_zero_rows = nullptr;
  int32_t a_zero_all = 0;
  const int32_t* b_sums = nullptr;
  const float* b_scale = nullptr;
  bool b_per_col = false;
  const float* bias = nullptr;
  Epilogue ep = Epilogue::none;
  bool add = false;  // y += the result instead of y = (a residual connection fused in; not with GELU)
};
// y is written with leading dimension ldy (>= N).
void dequantize_acc(const int32_t* acc, int64_t M, int64_t N, const Dequant& d, float* y, int64_t ldy);

// Where a fused row pass (a layer's output becoming the next layer's input in one pass, while the
// row is in L1) writes: u8 codes q [rows, n] per tensor (scale, zero), or per row (each row's own
// range, as quantize_u8_per_row: scales[r], zeros[r] written).
struct RowCodes {
  uint8_t* q = nullptr;
  int bits = 8;
  bool per_row = false;
  float scale = 1.f;
  int32_t zero = 0;
  float* scales = nullptr;
  int32_t* zeros = nullptr;
  const Rotation* rot = nullptr;  // when set, each row is rotated first (x R) and x R is quantised
};
// Row r (n values) into out, the codes quantize_u8 / quantize_u8_per_row would make (of x R
// when out.rot is set).
void encode_row(const float* x, int64_t n, int64_t r, const RowCodes& out);
// dequantize_acc's rows, each handed to sink(row, m) as floats in a per-thread L1 buffer (valid
// during the call) instead of being stored: the next step consumes the row while it is in cache.
using RowSink = std::function<void(const float* row, int64_t m)>;
void dequantize_acc_rows(const int32_t* acc, int64_t M, int64_t N, const Dequant& d, const RowSink& sink);

}  // namespace vs::kernels
