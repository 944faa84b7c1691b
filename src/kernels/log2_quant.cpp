#include "kernels/log2_quant.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

namespace vs::kernels {
namespace {

// Quiet comparisons (std::isgreaterequal) keep the loop branch-free under the default
// -ftrapping-math, so it vectorises.
template <int TAU>
inline int32_t log2_code(float x, float s, const float* thr, int32_t cmax) {
  float r = x / s;
  uint32_t b;
  std::memcpy(&b, &r, 4);
  int32_t e = int32_t((b >> 23) & 0xff) - 127;
  uint32_t mb = (b & 0x7fffffu) | 0x3f800000u;
  float m;
  std::memcpy(&m, &mb, 4);
  int32_t c = -TAU * e;
  for (int k = 0; k < TAU; ++k) c -= int32_t(std::isgreaterequal(m, thr[k]));
  c = std::min(std::max(c, 0), cmax);
  return std::isgreaterequal(r, FLT_MIN) ? c : cmax;
}

template <int TAU>
void codes_row(const float* x, uint8_t* codes, int64_t n, const Log2Grid& g) {
  float thr[TAU];
  std::copy(g.thr, g.thr + TAU, thr);
  const float s = g.scale;
  const int32_t cmax = g.cmax;
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) codes[i] = uint8_t(log2_code<TAU>(x[i], s, thr, cmax));
}

template <int TAU>
void codes_loop(const float* x, uint8_t* codes, int64_t n, const Log2Grid& g) {
  constexpr int64_t kBlock = 4096;
#pragma omp parallel for schedule(static) if (n >= 4 * kBlock)
  for (int64_t b = 0; b < n; b += kBlock) codes_row<TAU>(x + b, codes + b, std::min(kBlock, n - b), g);
}

}  // namespace

Log2Grid make_log2_grid(float scale, int tau, int bits) {
  Log2Grid g;
  g.tau = tau;
  g.bits = bits;
  g.scale = scale;
  g.cmax = (1 << bits) - 1;
  for (int k = 0; k < tau; ++k) {
    double exact = std::exp2((k + 0.5) / tau);
    float f = float(exact);
    g.thr[k] = double(f) > exact ? f : std::nextafter(f, FLT_MAX);
  }
  return g;
}

void log2_fixed_table(const Log2Grid& g, uint16_t* table) {
  for (int32_t c = 0; c < g.cmax; ++c) table[c] = uint16_t(std::lrint(std::exp2(15.0 - double(c) / g.tau)));
  table[g.cmax] = 0;
}

void log2_codes(const float* x, uint8_t* codes, int64_t n, const Log2Grid& g) {
  switch (g.tau) {
    case 1: codes_loop<1>(x, codes, n, g); break;
    case 2: codes_loop<2>(x, codes, n, g); break;
    default: codes_loop<4>(x, codes, n, g); break;
  }
}

void log2_codes_row(const float* x, uint8_t* codes, int64_t n, const Log2Grid& g) {
  switch (g.tau) {
    case 1: codes_row<1>(x, codes, n, g); break;
    case 2: codes_row<2>(x, codes, n, g); break;
    default: codes_row<4>(x, codes, n, g); break;
  }
}

}  // namespace vs::kernels
