#include "kernels/quantize_act.h"

#include <algorithm>
#include <cmath>
#include <vector>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "core/error.h"
#include "kernels/fastmath.h"

namespace vs::kernels {

static inline int32_t code(float x, float s, int32_t zero, int32_t qmin, int32_t qmax) {
  return std::clamp(int32_t(std::nearbyint(x / s)) + zero, qmin, qmax);
}

// Every code of this file, n at a time: q[c] = code(x[c]) - offset as a byte (u8 codes, or s8
// codes through two's complement).
#if defined(__AVX512F__)
// round_half_even(x / s) on 16 lanes, bit-identical to the true division at a fraction of its
// cost: y = x * (1/s) is within 2 ulp of the correctly rounded quotient (two roundings of 2^-24),
// which can only round differently where the quotient is that close to a boundary k + 1/2; the
// rare vectors with such a lane (tolerance 2^-21 |y|, margin > 2) divide. (A vdivps per 16
// codes costs ~10 cycles of throughput; with this, the code passes' share of a DeiT-S W8A8
// forward went from ~9.8 % to 8.6 % of the samples.)
static inline __m512 rounded_quotient(__m512 x, __m512 s, __m512 inv) {
  const __m512 y = _mm512_mul_ps(x, inv);
  const __m512 r = _mm512_roundscale_ps(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 dist = _mm512_abs_ps(_mm512_sub_ps(_mm512_abs_ps(_mm512_sub_ps(y, r)), _mm512_set1_ps(0.5f)));
  const __mmask16 near = _mm512_cmp_ps_mask(dist, _mm512_mul_ps(_mm512_abs_ps(y), _mm512_set1_ps(0x1p-21f)), _CMP_LE_OQ);
  if (near == 0) return r;
  return _mm512_roundscale_ps(_mm512_div_ps(x, s), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

static void codes_row(const float* x, uint8_t* q, int64_t n, float scale, int32_t zero, int32_t qmin, int32_t qmax,
                      int32_t offset) {
  const float inv_s = 1.f / scale;
  if (!std::isfinite(inv_s)) {  // (a subnormal scale: divide)
    for (int64_t c = 0; c < n; ++c) q[c] = uint8_t(code(x[c], scale, zero, qmin, qmax) - offset);
    return;
  }
  const __m512 s = _mm512_set1_ps(scale), inv = _mm512_set1_ps(inv_s);
  const __m512i z = _mm512_set1_epi32(zero - offset), lo = _mm512_set1_epi32(qmin - offset),
                hi = _mm512_set1_epi32(qmax - offset);
  auto codes = [&](__m512 v) {  // clamp(k + zero, qmin, qmax) - offset == clamp(k + zero - offset, ...)
    const __m512i k = _mm512_cvtps_epi32(rounded_quotient(v, s, inv));
    return _mm512_cvtepi32_epi8(_mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(k, z), lo), hi));
  };
  const int64_t full = n & ~int64_t(15);
  for (int64_t c = 0; c < full; c += 16) _mm_storeu_si128(reinterpret_cast<__m128i*>(q + c), codes(_mm512_loadu_ps(x + c)));
  if (const __mmask16 tail = __mmask16((1u << (n - full)) - 1u))  // (attention rows: 197 = 12 * 16 + 5)
    _mm_mask_storeu_epi8(q + full, tail, codes(_mm512_maskz_loadu_ps(tail, x + full)));
}
#else
static void codes_row(const float* x, uint8_t* q, int64_t n, float scale, int32_t zero, int32_t qmin, int32_t qmax,
                      int32_t offset) {
#pragma omp simd
  for (int64_t c = 0; c < n; ++c) q[c] = uint8_t(code(x[c], scale, zero, qmin, qmax) - offset);
}
#endif

// Row r = b * tokens + i of x, columns [h * d, (h + 1) * d), goes to codes
// [((b * heads + h) * tokens + i) * d, ...): head-major, dense. heads = 1 is a plain copy.
template <class T>
static void encode_heads_row(const float* xr, T* q, int64_t r, int64_t tokens, int64_t heads, int64_t d, float scale,
                             int32_t zero, int32_t qmin, int32_t qmax, int32_t offset) {
  const int64_t b = r / tokens, i = r % tokens;
  for (int64_t h = 0; h < heads; ++h)
    codes_row(xr + h * d, reinterpret_cast<uint8_t*>(q + ((b * heads + h) * tokens + i) * d), d, scale, zero, qmin,
              qmax, offset);
}

void quantize_u8_heads_row(const float* x, uint8_t* q, int64_t r, int64_t tokens, int64_t heads, int64_t d,
                           float scale, int32_t zero, int bits) {
  encode_heads_row(x, q, r, tokens, heads, d, scale, zero, 0, (1 << bits) - 1, 0);
}

void quantize_s8_heads_row(const float* x, int8_t* q, int64_t r, int64_t tokens, int64_t heads, int64_t d,
                           float scale, int bits) {
  const int32_t lim = (1 << (bits - 1)) - 1;
  encode_heads_row(x, q, r, tokens, heads, d, scale, 0, -lim, lim, 0);
}

void quantize_asym_s8_heads_row(const float* x, int8_t* q, int64_t r, int64_t tokens, int64_t heads, int64_t d,
                                float scale, int32_t zero, int bits) {
  encode_heads_row(x, q, r, tokens, heads, d, scale, zero, 0, (1 << bits) - 1, 1 << (bits - 1));
}

void quantize_u8_heads(const float* x, uint8_t* q, int64_t rows, int64_t tokens, int64_t heads, int64_t d,
                       int64_t ldx, float scale, int32_t zero, int bits) {
#pragma omp parallel for schedule(static) if (rows * heads * d > 32768)
  for (int64_t r = 0; r < rows; ++r) quantize_u8_heads_row(x + r * ldx, q, r, tokens, heads, d, scale, zero, bits);
}

void quantize_s8_heads(const float* x, int8_t* q, int64_t rows, int64_t tokens, int64_t heads, int64_t d,
                       int64_t ldx, float scale, int bits) {
#pragma omp parallel for schedule(static) if (rows * heads * d > 32768)
  for (int64_t r = 0; r < rows; ++r) quantize_s8_heads_row(x + r * ldx, q, r, tokens, heads, d, scale, bits);
}

void quantize_asym_s8_heads(const float* x, int8_t* q, int64_t rows, int64_t tokens, int64_t heads, int64_t d,
                            int64_t ldx, float scale, int32_t zero, int bits) {
#pragma omp parallel for schedule(static) if (rows * heads * d > 32768)
  for (int64_t r = 0; r < rows; ++r) quantize_asym_s8_heads_row(x + r * ldx, q, r, tokens, heads, d, scale, zero, bits);
}

void quantize_u8(const float* x, uint8_t* q, int64_t rows, int64_t cols, int64_t ldx, float scale,
                 int32_t zero, int bits) {
  quantize_u8_heads(x, q, rows, rows, 1, cols, ldx, scale, zero, bits);
}

void quantize_u8_row(const float* x, uint8_t* q, int64_t n, float scale, int32_t zero, int bits) {
  codes_row(x, q, n, scale, zero, 0, (1 << bits) - 1, 0);
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
  codes_row(xr, q, cols, s, z, 0, qmax, 0);
}

void quantize_u8_per_row(const float* x, uint8_t* q, int64_t rows, int64_t cols, int bits,
                         float* scales, int32_t* zeros) {
  const int32_t qmax = (1 << bits) - 1;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) per_row_codes(x + r * cols, q + r * cols, cols, qmax, scales + r, zeros + r);
}

void encode_row(const float* x, int64_t n, int64_t r, const RowCodes& out) {
  if (out.rot) {
    check(out.rot->dim() == n, "encode_row: rotation of another width");
    thread_local std::vector<float> rotated;
    rotated.resize(size_t(n));
    out.rot->apply(x, rotated.data());
    x = rotated.data();
  }
  if (out.per_row)
    per_row_codes(x, out.q + r * n, n, (1 << out.bits) - 1, out.scales + r, out.zeros + r);
  else
    quantize_u8_row(x, out.q + r * n, n, out.scale, out.zero, out.bits);
}

// One row of dequantize_acc, specialised at compile time so the inner loop vectorises (no
// branches, every pointer a local). kOut: what happens to each value f - stored (0), stored as
// GELU(f) (1), or added to y (2: a residual connection, y + f exactly as a separate add would).
template <bool kZeroRows, bool kPerCol, bool kBias, int kOut>
static void dequant_row(const int32_t* __restrict a, float* __restrict y, int64_t N, float sa, int32_t za,
                        const int32_t* __restrict bsum, const float* __restrict sb, const float* __restrict bias) {
  const float s0 = sa * sb[0];
#pragma omp simd
  for (int64_t n = 0; n < N; ++n) {
    int32_t v = a[n];
    if constexpr (kZeroRows) v -= za * bsum[n];
    float f = float(v) * (kPerCol ? sa * sb[n] : s0);
    if constexpr (kBias) f += bias[n];
    if constexpr (kOut == 1) y[n] = gelu_erf(f);
    else if constexpr (kOut == 2) y[n] += f;
    else y[n] = f;
  }
}

// Row m of dequantize_acc, its Dequant's variant picked once per call (no branches per row).
template <bool kZeroRows, bool kPerCol, bool kBias, int kOut>
static void dequant_one(const int32_t* acc, int64_t m, int64_t N, const Dequant& d, float* y) {
  dequant_row<kZeroRows, kPerCol, kBias, kOut>(acc + m * N, y, N, d.a_scale[d.a_per_row ? m : 0],
                                               !kZeroRows ? 0 : d.a_zero_rows ? d.a_zero_rows[m] : d.a_zero_all,
                                               d.b_sums, d.b_scale, d.bias);
}

using RowFn = void (*)(const int32_t*, int64_t, int64_t, const Dequant&, float*);

static RowFn pick_row(const Dequant& d) {
  static constexpr RowFn per_col[2][2][3] = {  // [zero rows][bias][out]
      {{dequant_one<false, true, false, 0>, dequant_one<false, true, false, 1>, dequant_one<false, true, false, 2>},
       {dequant_one<false, true, true, 0>, dequant_one<false, true, true, 1>, dequant_one<false, true, true, 2>}},
      {{dequant_one<true, true, false, 0>, dequant_one<true, true, false, 1>, dequant_one<true, true, false, 2>},
       {dequant_one<true, true, true, 0>, dequant_one<true, true, true, 1>, dequant_one<true, true, true, 2>}}};
  const bool z = (d.a_zero_rows || d.a_zero_all != 0) && d.b_sums, gelu = d.ep == Epilogue::gelu, bias = d.bias != nullptr;
  if (gelu && d.add) throw Error("dequantize_acc: GELU and a residual add cannot be fused together");
  if (!d.b_per_col && !z && !bias && !gelu && !d.add) return dequant_one<false, false, false, 0>;  // attention products
  if (d.b_per_col) return per_col[z][bias][gelu ? 1 : d.add ? 2 : 0];
  throw Error("dequantize_acc: per-tensor weight scales are only supported without bias, GELU, residual or row zero points");
}

void dequantize_acc(const int32_t* acc, int64_t M, int64_t N, const Dequant& d, float* y, int64_t ldy) {
  const RowFn row = pick_row(d);
#pragma omp parallel for schedule(static) if (M * N > 16384)
  for (int64_t m = 0; m < M; ++m) row(acc, m, N, d, y + m * ldy);
}

void dequantize_acc_rows(const int32_t* acc, int64_t M, int64_t N, const Dequant& d, const RowSink& sink) {
  check(!d.add, "dequantize_acc_rows: a residual add needs float output");
  const RowFn row = pick_row(d);
#pragma omp parallel if (M * N > 16384)
  {
    std::vector<float> buf(static_cast<size_t>(N));  // one row of floats, in L1
#pragma omp for schedule(static)
    for (int64_t m = 0; m < M; ++m) {
      row(acc, m, N, d, buf.data());
      sink(buf.data(), m);
    }
  }
}

}  // namespace vs::kernels
