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

void softmax_row(float* xr, int64_t C, float scale) {
  float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
  for (int64_t c = 0; c < C; ++c) mx = xr[c] > mx ? xr[c] : mx;
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
