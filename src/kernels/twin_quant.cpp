#include "kernels/twin_quant.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"

namespace vs::kernels {

void check_twin(const TwinQuant& t, const char* what) {
  const std::string w = what;
  check(t.bits >= 3 && t.bits <= 8, w + ": twin-uniform activations need 3..8 bits, got " + std::to_string(t.bits));
  check(t.m >= 1 && t.m <= kMaxTwinM, w + ": twin-uniform scale ratio 2^m needs m in 1.." + std::to_string(kMaxTwinM) +
                                          ", got " + std::to_string(t.m));
  check(t.scale > 0 && std::isfinite(t.scale), w + ": twin-uniform scale is not a positive number");
  check(t.zero >= 0 && t.zero < (1 << (t.bits - 1)), w + ": twin-uniform zero point outside the fine region's codes");
}

bool twin_fits_int32(const TwinQuant& t, int64_t K, int32_t wmax) {
  const double h = double((1 << (t.bits - 1)) - 1);
  return double(K) * double(wmax) * h * (1.0 + std::ldexp(1.0, t.m)) < 2147483647.0;
}

// Region and code of one value: returns true for the coarse region.
static inline bool twin_code(float x, const TwinQuant& t, int32_t& c) {
  const int32_t hmax = (1 << (t.bits - 1)) - 1;
  const float r1 = std::nearbyint(x / t.scale) + float(t.zero);  // float: no int overflow for outliers
  if (r1 <= float(hmax)) {
    c = r1 > 0.f ? int32_t(r1) : 0;
    return false;
  }
  const float s2 = std::ldexp(t.scale, t.m);
  c = int32_t(std::clamp(std::nearbyint(x / s2), 0.f, float(hmax)));
  return true;
}

float twin_fake(float x, const TwinQuant& t) {
  int32_t c;
  return twin_code(x, t, c) ? float(c) * std::ldexp(t.scale, t.m) : float(c - t.zero) * t.scale;
}

void quantize_twin(const float* x, uint8_t* q1, uint8_t* q2, int64_t rows, int64_t cols, const TwinQuant& t) {
  const int64_t n = rows * cols;
#pragma omp parallel for schedule(static) if (n > 32768)
  for (int64_t i = 0; i < n; ++i) {
    int32_t c;
    const bool coarse = twin_code(x[i], t, c);
    q1[i] = uint8_t(coarse ? t.zero : c);
    q2[i] = uint8_t(coarse ? c : 0);
  }
}

void combine_twin(int32_t* acc1, const int32_t* acc2, int64_t n, int m) {
  const int32_t f = int32_t(1) << m;
#pragma omp parallel for simd schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) acc1[i] += f * acc2[i];
}

}  // namespace vs::kernels
