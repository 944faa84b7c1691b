#include "kernels/quantize_act.h"

#include <algorithm>
#include <cmath>

#include "kernels/fastmath.h"

namespace vs::kernels {

static inline int32_t code(float x, float s, int32_t zero, int32_t qmin, int32_t qmax) {
  return std::clamp(int32_t(std::nearbyint(x / s)) + zero, qmin, qmax);
}

void quantize_u8(const float* x, uint8_t* q, int64_t rows, int64_t cols, int64_t ldx, float scale,
                 int32_t zero, int bits) {
  const int32_t qmax = (1 << bits) - 1;
#pragma omp parallel for schedule(static) if (rows * cols > 32768)
  for (int64_t r = 0; r < rows; ++r) {
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) q[r * cols + c] = uint8_t(code(x[r * ldx + c], scale, zero, 0, qmax));
  }
}

void quantize_s8(const float* x, int8_t* q, int64_t rows, int64_t cols, int64_t ldx, float scale,
                 int bits) {
  const int32_t lim = (1 << (bits - 1)) - 1;
#pragma omp parallel for schedule(static) if (rows * cols > 32768)
  for (int64_t r = 0; r < rows; ++r) {
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) q[r * cols + c] = int8_t(code(x[r * ldx + c], scale, 0, -lim, lim));
  }
}

void quantize_u8_per_row(const float* x, uint8_t* q, int64_t rows, int64_t cols, int bits,
                         float* scales, int32_t* zeros) {
  const int32_t qmax = (1 << bits) - 1;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    float lo = 0.f, hi = 0.f;  // the range always includes 0, so 0 is exact
#pragma omp simd reduction(min : lo) reduction(max : hi)
    for (int64_t c = 0; c < cols; ++c) {
      lo = std::min(lo, xr[c]);
      hi = std::max(hi, xr[c]);
    }
    float s = hi > lo ? (hi - lo) / float(qmax) : 1.f;
    int32_t z = std::clamp(int32_t(std::nearbyint(-lo / s)), 0, qmax);
    scales[r] = s;
    zeros[r] = z;
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) q[r * cols + c] = uint8_t(code(xr[c], s, z, 0, qmax));
  }
}

void dequantize_acc(const int32_t* acc, int64_t M, int64_t N, const Dequant& d, float* y, int64_t ldy) {
#pragma omp parallel for schedule(static) if (M * N > 16384)
  for (int64_t m = 0; m < M; ++m) {
    const int32_t* a = acc + m * N;
    float* yr = y + m * ldy;
    const float sa = d.a_scale[d.a_per_row ? m : 0];
    const int32_t za = d.a_zero_rows ? d.a_zero_rows[m] : 0;
#pragma omp simd
    for (int64_t n = 0; n < N; ++n) {
      int32_t v = a[n] - (d.b_sums ? za * d.b_sums[n] : 0);
      float f = float(v) * (sa * d.b_scale[d.b_per_col ? n : 0]) + (d.bias ? d.bias[n] : 0.f);
      yr[n] = d.ep == Epilogue::gelu ? gelu_erf(f) : f;
    }
  }
}

}  // namespace vs::kernels
