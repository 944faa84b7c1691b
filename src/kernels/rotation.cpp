#include "kernels/rotation.h"

#include <cmath>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "core/error.h"

namespace vs::kernels {

void Rotation::apply(const float* x, float* y) const {
  const float* s = signs.data();
  const float* q = mix.data();
  // y[b' p + a] = sum_b Q[b][b'] s[b p + a] x[b p + a]
  for (int64_t b2 = 0; b2 < r; ++b2) {
    float* yb = y + b2 * p;
    for (int64_t a = 0; a < p; ++a) yb[a] = 0.f;
    for (int64_t b = 0; b < r; ++b) {
      const float c = q[b * r + b2];
      const float* xb = x + b * p;
      const float* sb = s + b * p;
#pragma omp simd
      for (int64_t a = 0; a < p; ++a) yb[a] += c * (sb[a] * xb[a]);
    }
  }
  // Each block of p: Walsh-Hadamard butterflies (v[a], v[a + h]) -> (v[a] + v[a + h], v[a] - v[a + h]),
  // then 1 / sqrt(p).
  const float norm = 1.f / std::sqrt(float(p));
  for (int64_t b = 0; b < r; ++b) {
    float* v = y + b * p;
    int64_t h = 1;
#if defined(__AVX512F__)
    // The stages h = 1, 2, 4, 8 inside each 16-lane vector: the partner lane a ^ h comes from a
    // permute; lower lanes add it, upper lanes subtract themselves from it - the same two
    // operands and operation as the scalar butterfly, so the results are bit-identical.
    if (p >= 16) {
      static const __m512i partner[4] = {  // lane l ^ h for h = 1, 2, 4, 8
          _mm512_set_epi32(14, 15, 12, 13, 10, 11, 8, 9, 6, 7, 4, 5, 2, 3, 0, 1),
          _mm512_set_epi32(13, 12, 15, 14, 9, 8, 11, 10, 5, 4, 7, 6, 1, 0, 3, 2),
          _mm512_set_epi32(11, 10, 9, 8, 15, 14, 13, 12, 3, 2, 1, 0, 7, 6, 5, 4),
          _mm512_set_epi32(7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8)};
      static constexpr __mmask16 upper[4] = {0xAAAA, 0xCCCC, 0xF0F0, 0xFF00};  // lanes with bit h set
      for (int64_t a0 = 0; a0 < p; a0 += 16) {
        __m512 x16 = _mm512_loadu_ps(v + a0);
        for (int st = 0; st < 4; ++st) {
          const __m512 u = _mm512_permutexvar_ps(partner[st], x16);
          x16 = _mm512_mask_sub_ps(_mm512_add_ps(x16, u), upper[st], u, x16);
        }
        _mm512_storeu_ps(v + a0, x16);
      }
      h = 16;
    }
#endif
    for (; h < p; h *= 2)
      for (int64_t a0 = 0; a0 < p; a0 += 2 * h)
#pragma omp simd
        for (int64_t a = a0; a < a0 + h; ++a) {
          const float u = v[a], w = v[a + h];
          v[a] = u + w;
          v[a + h] = u - w;
        }
#pragma omp simd
    for (int64_t a = 0; a < p; ++a) v[a] *= norm;
  }
}

void check_rotation(const Rotation& rot, const std::string& what) {
  check(rot.r >= 1 && rot.p >= 1 && (rot.p & (rot.p - 1)) == 0,
        what + ": rotation blocks must be r >= 1 times a power of two, got " + std::to_string(rot.r) + " x " +
            std::to_string(rot.p));
  check(int64_t(rot.signs.size()) == rot.dim(), what + ": rotation signs should have " + std::to_string(rot.dim()) + " values");
  check(int64_t(rot.mix.size()) == rot.r * rot.r, what + ": rotation mix should be " + std::to_string(rot.r) + " x " +
                                                      std::to_string(rot.r));
  for (float v : rot.signs) check(v == 1.f || v == -1.f, what + ": rotation signs must be +1 or -1");
  for (int64_t i = 0; i < rot.r; ++i)
    for (int64_t j = 0; j < rot.r; ++j) {
      double dot = 0;
      for (int64_t k = 0; k < rot.r; ++k) dot += double(rot.mix[size_t(i * rot.r + k)]) * rot.mix[size_t(j * rot.r + k)];
      check(std::fabs(dot - (i == j ? 1.0 : 0.0)) < 1e-4, what + ": rotation mix is not orthogonal");
    }
}

}  // namespace vs::kernels
