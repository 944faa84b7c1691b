#include "kernels/quantize_act.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "kernels/fastmath.h"

namespace vs::kernels {

static inline int32_t code(float x, float s, int32_t zero, int32_t qmin, int32_t qmax) {
  return std::clamp(int32_t(std::nearbyint(x / s)) + zero, qmin, qmax);
}

// Row r = b * tokens + i of x (stride ldx), columns [h * d, (h + 1) * d), goes to codes
// [((b * heads + h) * tokens + i) * d, ...): head-major, dense. heads = 1 is a plain copy.
template <class T, class Code>
static void encode_heads(const float* x, T* q, int64_t rows, int64_t tokens, int64_t heads, int64_t d,
                         int64_t ldx, Code code) {
#pragma omp parallel for schedule(static) if (rows * heads * d > 32768)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t b = r / tokens, i = r % tokens;
    for (int64_t h = 0; h < heads; ++h) {
      const float* xs = x + r * ldx + h * d;
      T* qs = q + ((b * heads + h) * tokens + i) * d;
#pragma omp simd
      for (int64_t c = 0; c < d; ++c) qs[c] = code(xs[c]);
    }
  }
}

void quantize_u8_heads(const float* x, uint8_t* q, int64_t rows, int64_t tokens, int64_t heads, int64_t d,
                       int64_t ldx, float scale, int32_t zero, int bits) {
  const int32_t qmax = (1 << bits) - 1;
  encode_heads(x, q, rows, tokens, heads, d, ldx, [=](float v) { return uint8_t(code(v, scale, zero, 0, qmax)); });
}

void quantize_s8_heads(const float* x, int8_t* q, int64_t rows, int64_t tokens, int64_t heads, int64_t d,
                       int64_t ldx, float scale, int bits) {
  const int32_t lim = (1 << (bits - 1)) - 1;
  encode_heads(x, q, rows, tokens, heads, d, ldx, [=](float v) { return int8_t(code(v, scale, 0, -lim, lim)); });
}

void quantize_asym_s8_heads(const float* x, int8_t* q, int64_t rows, int64_t tokens, int64_t heads, int64_t d,
                            int64_t ldx, float scale, int32_t zero, int bits) {
  const int32_t qmax = (1 << bits) - 1, half = 1 << (bits - 1);
  encode_heads(x, q, rows, tokens, heads, d, ldx,
               [=](float v) { return int8_t(code(v, scale, zero, 0, qmax) - half); });
}

void quantize_u8(const float* x, uint8_t* q, int64_t rows, int64_t cols, int64_t ldx, float scale,
                 int32_t zero, int bits) {
  quantize_u8_heads(x, q, rows, rows, 1, cols, ldx, scale, zero, bits);
}

void quantize_u8_row(const float* x, uint8_t* q, int64_t n, float scale, int32_t zero, int bits) {
  const int32_t qmax = (1 << bits) - 1;
#pragma omp simd
  for (int64_t c = 0; c < n; ++c) q[c] = uint8_t(code(x[c], scale, zero, 0, qmax));
}

void quantize_s8(const float* x, int8_t* q, int64_t rows, int64_t cols, int64_t ldx, float scale,
                 int bits) {
  quantize_s8_heads(x, q, rows, rows, 1, cols, ldx, scale, bits);
}

void quantize_asym_s8(const float* x, int8_t* q, int64_t rows, int64_t cols, int64_t ldx, float scale,
                      int32_t zero, int bits) {
  quantize_asym_s8_heads(x, q, rows, rows, 1, cols, ldx, scale, zero, bits);
}

// One row's own range (widened to include 0, so 0 is exact) and its codes. (min / max reduce
// exactly in any order, so every caller gets the same range.)
static void per_row_codes(const float* xr, uint8_t* q, int64_t cols, int32_t qmax, float* scale, int32_t* zero) {
  float lo = 0.f, hi = 0.f;
#pragma omp simd reduction(min : lo) reduction(max : hi)
  for (int64_t c = 0; c < cols; ++c) {  // (std::min / std::max do not vectorise here)
    lo = xr[c] < lo ? xr[c] : lo;
    hi = xr[c] > hi ? xr[c] : hi;
  }
  float s = hi > lo ? (hi - lo) / float(qmax) : 1.f;
  int32_t z = std::clamp(int32_t(std::nearbyint(-lo / s)), 0, qmax);
  *scale = s;
  *zero = z;
#pragma omp simd
  for (int64_t c = 0; c < cols; ++c) q[c] = uint8_t(code(xr[c], s, z, 0, qmax));
}

void quantize_u8_per_row(const float* x, uint8_t* q, int64_t rows, int64_t cols, int bits,
                         float* scales, int32_t* zeros) {
  const int32_t qmax = (1 << bits) - 1;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) per_row_codes(x + r * cols, q + r * cols, cols, qmax, scales + r, zeros + r);
}

void encode_row(const float* x, int64_t n, int64_t r, const RowCodes& out) {
  if (out.per_row)
    per_row_codes(x, out.q + r * n, n, (1 << out.bits) - 1, out.scales + r, out.zeros + r);
  else
    quantize_u8_row(x, out.q + r * n, n, out.scale, out.zero, out.bits);
}

// One row of dequantize_acc, specialised at compile time so the inner loop vectorises (no
// branches, every pointer a local).
template <bool kZeroRows, bool kPerCol, bool kBias, bool kGelu>
static void dequant_row(const int32_t* __restrict a, float* __restrict y, int64_t N, float sa, int32_t za,
                        const int32_t* __restrict bsum, const float* __restrict sb, const float* __restrict bias) {
  const float s0 = sa * sb[0];
#pragma omp simd
  for (int64_t n = 0; n < N; ++n) {
    int32_t v = a[n];
    if constexpr (kZeroRows) v -= za * bsum[n];
    float f = float(v) * (kPerCol ? sa * sb[n] : s0);
    if constexpr (kBias) f += bias[n];
    y[n] = kGelu ? gelu_erf(f) : f;
  }
}

// Row m of dequantize_acc, its Dequant's variant picked once per call (no branches per row).
template <bool kZeroRows, bool kPerCol, bool kBias, bool kGelu>
static void dequant_one(const int32_t* acc, int64_t m, int64_t N, const Dequant& d, float* y) {
  dequant_row<kZeroRows, kPerCol, kBias, kGelu>(acc + m * N, y, N, d.a_scale[d.a_per_row ? m : 0],
                                                !kZeroRows ? 0 : d.a_zero_rows ? d.a_zero_rows[m] : d.a_zero_all,
                                                d.b_sums, d.b_scale, d.bias);
}

using RowFn = void (*)(const int32_t*, int64_t, int64_t, const Dequant&, float*);

static RowFn pick_row(const Dequant& d) {
  static constexpr RowFn per_col[2][2][2] = {  // [zero rows][bias][gelu]
      {{dequant_one<false, true, false, false>, dequant_one<false, true, false, true>},
       {dequant_one<false, true, true, false>, dequant_one<false, true, true, true>}},
      {{dequant_one<true, true, false, false>, dequant_one<true, true, false, true>},
       {dequant_one<true, true, true, false>, dequant_one<true, true, true, true>}}};
  const bool z = (d.a_zero_rows || d.a_zero_all != 0) && d.b_sums, gelu = d.ep == Epilogue::gelu, bias = d.bias != nullptr;
  if (!d.b_per_col && !z && !bias && !gelu) return dequant_one<false, false, false, false>;  // attention products
  if (d.b_per_col) return per_col[z][bias][gelu];
  throw Error("dequantize_acc: per-tensor weight scales are only supported without bias, GELU or row zero points");
}

void dequantize_acc(const int32_t* acc, int64_t M, int64_t N, const Dequant& d, float* y, int64_t ldy) {
  const RowFn row = pick_row(d);
#pragma omp parallel for schedule(static) if (M * N > 16384)
  for (int64_t m = 0; m < M; ++m) row(acc, m, N, d, y + m * ldy);
}

void dequantize_acc_to_codes(const int32_t* acc, int64_t M, int64_t N, const Dequant& d, const RowCodes& out) {
  const RowFn row = pick_row(d);
#pragma omp parallel if (M * N > 16384)
  {
    std::vector<float> buf(static_cast<size_t>(N));  // one row of floats, in L1
#pragma omp for schedule(static)
    for (int64_t m = 0; m < M; ++m) {
      row(acc, m, N, d, buf.data());
      encode_row(buf.data(), N, m, out);
    }
  }
}

}  // namespace vs::kernels
