#include "kernels/quantize_act.h"

#include <algorithm>
#include <cmath>

namespace vs::kernels {

static inline int32_t code(float x, float inv_s, int32_t zero, int32_t qmax) {
  int32_t q = int32_t(std::nearbyint(x * inv_s)) + zero;
  return std::clamp(q, 0, qmax);
}

void quantize_u8(const float* x, uint8_t* q, int64_t n, float scale, int32_t zero, int bits) {
  const float inv = 1.f / scale;
  const int32_t qmax = (1 << bits) - 1;
#pragma omp parallel for simd schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) q[i] = uint8_t(code(x[i], inv, zero, qmax));
}

void fake_quantize_u8(const float* x, float* y, int64_t n, float scale, int32_t zero, int bits) {
  const float inv = 1.f / scale;
  const int32_t qmax = (1 << bits) - 1;
#pragma omp parallel for simd schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) y[i] = float(code(x[i], inv, zero, qmax) - zero) * scale;
}

void quantize_u8_per_row(const float* x, uint8_t* q, int64_t rows, int64_t cols, int bits,
                         float* scales, int32_t* zeros) {
  const int32_t qmax = (1 << bits) - 1;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    float lo = 0.f, hi = 0.f;  // the range always includes 0, so 0 is exact
    for (int64_t c = 0; c < cols; ++c) {
      lo = std::min(lo, xr[c]);
      hi = std::max(hi, xr[c]);
    }
    float s = hi > lo ? (hi - lo) / float(qmax) : 1.f;
    int32_t z = std::clamp(int32_t(std::nearbyint(-lo / s)), 0, qmax);
    scales[r] = s;
    zeros[r] = z;
    const float inv = 1.f / s;
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) q[r * cols + c] = uint8_t(code(xr[c], inv, z, qmax));
  }
}

}  // namespace vs::kernels
