// Vectorisable float exp (Cephes-style: 2^n * p(r), relative error ~2e-7 over the softmax range).
// std::exp does not vectorise under GCC without -ffast-math; softmax spends most of its time
// here. Written with plain arithmetic only (no libm calls, no branches) so `omp simd` loops
// compile to AVX2.
#pragma once
#include <bit>
#include <cstdint>

namespace vs::kernels {

inline float fast_exp(float x) {
  x = x < -87.3f ? -87.3f : (x > 88.3f ? 88.3f : x);
  // n = round(x / ln2) via the 1.5 * 2^23 trick (exact for |n| < 2^22)
  float n = (x * 1.44269504088896341f + 12582912.f) - 12582912.f;
  float r = x - n * 0.693359375f + n * 2.12194440e-4f;  // x - n*ln2 in two parts
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.f;
  return p * std::bit_cast<float>((int32_t(n) + 127) << 23);
}

}  // namespace vs::kernels

namespace vs::kernels {

// Vectorisable erf (Numerical Recipes' erfc Chebyshev fit, fractional error < 1.2e-7, with
// fast_exp): std::erf does not vectorise, and the GELU after an integer GEMM runs on every
// element of the MLP's hidden layer.
inline float fast_erf(float x) {
  float z = x < 0.f ? -x : x;
  float t = 1.f / (1.f + 0.5f * z);
  float p = 0.17087277f;
  p = p * t - 0.82215223f;
  p = p * t + 1.48851587f;
  p = p * t - 1.13520398f;
  p = p * t + 0.27886807f;
  p = p * t - 0.18628806f;
  p = p * t + 0.09678418f;
  p = p * t + 0.37409196f;
  p = p * t + 1.00002368f;
  p = p * t - 1.26551223f;
  float erfc = t * fast_exp(-z * z + p);
  return x < 0.f ? erfc - 1.f : 1.f - erfc;
}

inline float gelu_erf(float x) { return 0.5f * x * (1.f + fast_erf(x * 0.70710678118654752f)); }

}  // namespace vs::kernels
