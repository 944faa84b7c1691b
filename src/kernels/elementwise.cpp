#include "kernels/elementwise.h"

#include <cmath>
#include <vector>

#include "kernels/fastmath.h"

namespace vs::kernels {

// (Not inlined: both callers run the very same reductions, so their rows are bit-identical.)
__attribute__((noinline)) static void layernorm_row(const float* xr, const float* gamma, const float* beta, float* yr, int64_t C, float eps) {
  float sum = 0.f;
#pragma omp simd reduction(+ : sum)
  for (int64_t c = 0; c < C; ++c) sum += xr[c];
  float mean = sum / float(C);
  float sq = 0.f;  // two-pass variance: exact enough and immune to large means
#pragma omp simd reduction(+ : sq)
  for (int64_t c = 0; c < C; ++c) sq += (xr[c] - mean) * (xr[c] - mean);
  float rstd = 1.f / std::sqrt(sq / float(C) + eps);
#pragma omp simd
  for (int64_t c = 0; c < C; ++c) yr[c] = (xr[c] - mean) * rstd * gamma[c] + beta[c];
}

void layernorm(const float* x, const float* gamma, const float* beta, float* y, int64_t R,
               int64_t C, float eps) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < R; ++r) layernorm_row(x + r * C, gamma, beta, y + r * C, C, eps);
}

void layernorm_to_codes(const float* x, const float* gamma, const float* beta, int64_t R, int64_t C, float eps,
                        const RowCodes& out) {
#pragma omp parallel
  {
    std::vector<float> buf(static_cast<size_t>(C));  // one normalised row, in L1
#pragma omp for schedule(static)
    for (int64_t r = 0; r < R; ++r) {
      layernorm_row(x + r * C, gamma, beta, buf.data(), C, eps);
      encode_row(buf.data(), C, r, out);
    }
  }
}

#if defined(__AVX512F__)
// AVX-512: whole rows in 16-lane vectors, the last partial vector masked. Attention rows have
// 197 keys (12 vectors + 5): the auto-vectorised loops ran those 5 through scalar code, and the
// scalar exp of the tail cost as much as the 12 vectors (perf: a third of softmax's time).
void softmax_row_with_max(float* xr, int64_t C, float row_max, float scale) {
  const int64_t full = C & ~int64_t(15);
  const __mmask16 tail = __mmask16((1u << (C - full)) - 1u);
  const __m512 mx = _mm512_set1_ps(row_max), sc = _mm512_set1_ps(scale);
  __m512 sum = _mm512_setzero_ps();
  for (int64_t c = 0; c < full; c += 16) {
    const __m512 e = fast_exp16(_mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(xr + c), mx), sc));
    _mm512_storeu_ps(xr + c, e);
    sum = _mm512_add_ps(sum, e);
  }
  if (tail) {
    const __m512 e = fast_exp16(_mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, xr + full), mx), sc));
    _mm512_mask_storeu_ps(xr + full, tail, e);
    sum = _mm512_mask_add_ps(sum, tail, sum, e);
  }
  const __m512 inv = _mm512_set1_ps(1.f / _mm512_reduce_add_ps(sum));
  for (int64_t c = 0; c < full; c += 16) _mm512_storeu_ps(xr + c, _mm512_mul_ps(_mm512_loadu_ps(xr + c), inv));
  if (tail) _mm512_mask_storeu_ps(xr + full, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, xr + full), inv));
}

void softmax_row(float* xr, int64_t C, float scale) {
  const int64_t full = C & ~int64_t(15);
  const __mmask16 tail = __mmask16((1u << (C - full)) - 1u);
  __m512 vmax = _mm512_set1_ps(-INFINITY);
  for (int64_t c = 0; c < full; c += 16) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(xr + c));
  if (tail) vmax = _mm512_mask_max_ps(vmax, tail, vmax, _mm512_maskz_loadu_ps(tail, xr + full));
  softmax_row_with_max(xr, C, _mm512_reduce_max_ps(vmax), scale);
}
#else
void softmax_row_with_max(float* xr, int64_t C, float mx, float scale) {
  float sum = 0.f;
#pragma omp simd reduction(+ : sum)
  for (int64_t c = 0; c < C; ++c) {
    float e = fast_exp((xr[c] - mx) * scale);
    xr[c] = e;
    sum += e;
  }
  float inv = 1.f / sum;
#pragma omp simd
  for (int64_t c = 0; c < C; ++c) xr[c] *= inv;
}

void softmax_row(float* xr, int64_t C, float scale) {
  float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
  for (int64_t c = 0; c < C; ++c) mx = xr[c] > mx ? xr[c] : mx;
  softmax_row_with_max(xr, C, mx, scale);
}
#endif

void softmax_rows(float* x, int64_t R, int64_t C, float scale) {
  // Inside an attention tile (already in a parallel region) this runs on the calling thread:
  // nested OpenMP regions are inactive.
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < R; ++r) softmax_row(x + r * C, C, scale);
}

void gelu(float* x, int64_t n) {  // fast_erf: std::erf does not vectorise (fastmath.h)
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) x[i] = gelu_erf(x[i]);
}

void add_inplace(float* y, const float* x, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

}  // namespace vs::kernels
