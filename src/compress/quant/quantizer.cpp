// Uniform and log2 quantizers (definitions in quantizer.h). Every inner loop works on one
// contiguous span sharing a (scale, zero) pair, so it vectorises; rows are spread over OpenMP
// threads once a tensor is big enough to pay for the fork.
#include "compress/quant/quantizer.h"

#include "kernels/log2_quant.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <string>

#include "core/error.h"

namespace vs::quant {

namespace {

// Below this many elements a parallel region costs more than it saves.
constexpr int64_t kParallelMin = int64_t(1) << 15;

std::string gran_name(Granularity g) {
  switch (g) {
    case Granularity::tensor: return "tensor";
    case Granularity::channel: return "channel";
    case Granularity::group: return "group";
    case Granularity::token: return "token";
  }
  return "?";
}

// Checks p against a [rows, cols] tensor. Token params are only checked when the caller uses
// them (quantize / dequantize); fake_quantize derives its own.
void validate(const QParams& p, int64_t rows, int64_t cols, bool need_token_scales) {
  check_bits(p.bits);
  if (rows < 0 || cols < 0) throw Error("quantizer: negative tensor shape");
  if (p.off()) return;
  int64_t n = scale_count(p.gran, rows, cols, p.group);
  if (p.gran == Granularity::token && !need_token_scales) return;
  // Messages are built only on failure: this runs on every (possibly small) call.
  if (int64_t(p.scale.size()) != n)
    throw Error("quantizer: " + gran_name(p.gran) + " granularity on a [" + std::to_string(rows) +
                ", " + std::to_string(cols) + "] tensor needs " + std::to_string(n) +
                " scales, got " + std::to_string(p.scale.size()));
  // Symmetric params may leave `zero` empty: it is all 0 by definition.
  if (int64_t(p.zero.size()) != n && !(p.symmetric && p.zero.empty()))
    throw Error("quantizer: expected " + std::to_string(n) + " zero points, got " +
                std::to_string(p.zero.size()));
  bool scales_ok = true, zeros_ok = true;
  for (float s : p.scale) scales_ok &= std::isfinite(s) && s > 0;
  int32_t zlo = p.symmetric ? 0 : p.qmin(), zhi = p.symmetric ? 0 : p.qmax();
  for (int32_t z : p.zero) zeros_ok &= z >= zlo && z <= zhi;
  if (!scales_ok) throw Error("quantizer: scales must be positive and finite");
  if (!zeros_ok)
    throw Error("quantizer: zero points must lie in [" + std::to_string(zlo) + ", " +
                std::to_string(zhi) + "] (0 when symmetric)");
}

// How a [rows, cols] tensor splits into units: each row holds `per_row` spans of `len` columns;
// span g of row r uses scale index unit(r, g).
struct Layout {
  Granularity gran;
  int64_t per_row, len;
  int64_t unit(int64_t r, int64_t g) const {
    return gran == Granularity::tensor ? 0 : r * per_row + g;
  }
};

Layout layout(const QParams& p, int64_t cols) {
  int64_t per_row = p.gran == Granularity::group ? cols / p.group : 1;
  return {p.gran, per_row, per_row ? cols / per_row : 0};
}

// Fake-quantises one span. NaN inputs stay NaN (std::min/max pass them through here).
void fq_span(const float* x, float* y, int64_t n, float s, float z, float qlo, float qhi) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    float v = std::nearbyint(x[i] / s) + z;
    v = std::min(std::max(v, qlo), qhi);
    y[i] = (v - z) * s;
  }
}

// Integer codes for one span; the clamp order maps NaN to qhi so the cast is always defined.
template <class T>
void q_span(const float* x, T* q, int64_t n, float s, float z, float qlo, float qhi) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    float v = std::nearbyint(x[i] / s) + z;
    v = std::max(qlo, std::min(qhi, v));
    q[i] = T(v);
  }
}

template <class T>
void dq_span(const T* q, float* y, int64_t n, float s, float z) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] = (float(q[i]) - z) * s;
}

// Runs fn(row, span, unit) over every span, rows in parallel for big tensors.
template <class Fn>
void for_each_span(int64_t rows, int64_t cols, const Layout& L, Fn fn) {
#pragma omp parallel for schedule(static) if (rows > 1 && rows * cols >= kParallelMin)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t g = 0; g < L.per_row; ++g) fn(r, g, L.unit(r, g));
}

// range_to_qparams without the argument checks, safe inside parallel regions (an exception
// must not escape one). Returns false when the scale is not finite.
bool range_params(float lo, float hi, int bits, bool symmetric, float& scale, int32_t& zero) {
  scale = 1.f;
  zero = 0;
  if (bits >= 16) return true;
  if (symmetric) {
    float amax = std::max(std::abs(lo), std::abs(hi));
    float s = amax / float((1 << (bits - 1)) - 1);
    if (s > 0) scale = s;  // zero width (or underflow): keep 1 so x^ stays finite
    return std::isfinite(s);
  }
  lo = std::min(lo, 0.f);  // widen so that 0 is a grid point
  hi = std::max(hi, 0.f);
  float levels = float((1 << bits) - 1);
  float s = (hi - lo) / levels;
  if (!std::isfinite(s)) return false;
  if (!(s > 0)) return true;
  scale = s;
  zero = int32_t(std::min(std::max(std::nearbyint(-lo / s), 0.f), levels));
  return true;
}

// ---- log2 -----------------------------------------------------------------------------------
// Codes come from kernels/log2_quant.h (the same function quantised attention runs); levels:
// x^ = s * 2^(-c / tau), level[cmax] = 0.

std::vector<float> log2_levels(const Log2Params& p) {
  const int cmax = (1 << p.bits) - 1;
  std::vector<float> level(size_t(cmax) + 1, 0.f);
  for (int c = 0; c < cmax; ++c) level[size_t(c)] = float(double(p.scale) * std::exp2(-double(c) / p.tau));
  return level;
}

void validate_log2(const Log2Params& p, int64_t n) {
  check_bits(p.bits);
  if (n < 0) throw Error("log2 quantizer: negative element count");
  if (p.tau != 1 && p.tau != 2 && p.tau != 4)
    throw Error("log2 quantizer: tau must be 1, 2 or 4, got " + std::to_string(p.tau));
  if (!(std::isfinite(p.scale) && p.scale > 0))
    throw Error("log2 quantizer: scale must be positive and finite");
}

}  // namespace

// Public entry points build error messages only on failure: check() would allocate its message
// on every call, and range_to_qparams runs once per candidate in calibration searches.
void check_bits(int bits) {
  if ((bits >= 2 && bits <= 8) || bits == 16) return;
  throw Error("quantizer: bits must be 2..8 or 16 (off), got " + std::to_string(bits));
}

int64_t scale_count(Granularity g, int64_t rows, int64_t cols, int group) {
  switch (g) {
    case Granularity::tensor: return 1;
    case Granularity::channel:
    case Granularity::token: return rows;
    case Granularity::group:
      if (group <= 0)
        throw Error("quantizer: group size must be positive, got " + std::to_string(group));
      if (cols % group != 0)
        throw Error("quantizer: group size " + std::to_string(group) +
                    " does not divide the row length " + std::to_string(cols));
      return rows * (cols / group);
  }
  throw Error("quantizer: unknown granularity");
}

void range_to_qparams(float lo, float hi, int bits, bool symmetric, float& scale, int32_t& zero) {
  check_bits(bits);
  if (!std::isfinite(lo) || !std::isfinite(hi)) throw Error("quantizer: range must be finite");
  if (!(lo <= hi)) throw Error("quantizer: range lower bound above upper bound");
  if (!range_params(lo, hi, bits, symmetric, scale, zero))
    throw Error("quantizer: range too wide for float32");
}

void quantize(const float* x, int64_t rows, int64_t cols, const QParams& p, int8_t* q_signed,
              uint8_t* q_unsigned) {
  validate(p, rows, cols, true);
  if (p.off()) throw Error("quantize: 16 bits means no quantisation; there are no integer codes");
  if ((q_signed != nullptr) == (q_unsigned != nullptr))
    throw Error("quantize: pass exactly one output buffer");
  if ((q_signed != nullptr) != p.symmetric)
    throw Error("quantize: symmetric params write int8 codes, asymmetric ones uint8 codes");
  Layout L = layout(p, cols);
  float qlo = float(p.qmin()), qhi = float(p.qmax());
  for_each_span(rows, cols, L, [&](int64_t r, int64_t g, int64_t u) {
    int64_t off = r * cols + g * L.len;
    float z = p.zero.empty() ? 0.f : float(p.zero[u]);
    if (q_signed) q_span(x + off, q_signed + off, L.len, p.scale[u], z, qlo, qhi);
    else q_span(x + off, q_unsigned + off, L.len, p.scale[u], z, qlo, qhi);
  });
}

void dequantize(const int8_t* q_signed, const uint8_t* q_unsigned, int64_t rows, int64_t cols,
                const QParams& p, float* y) {
  validate(p, rows, cols, true);
  if (p.off()) throw Error("dequantize: 16 bits means no quantisation; there are no integer codes");
  if ((q_signed != nullptr) == (q_unsigned != nullptr))
    throw Error("dequantize: pass exactly one code buffer");
  if ((q_signed != nullptr) != p.symmetric)
    throw Error("dequantize: symmetric params read int8 codes, asymmetric ones uint8 codes");
  Layout L = layout(p, cols);
  for_each_span(rows, cols, L, [&](int64_t r, int64_t g, int64_t u) {
    int64_t off = r * cols + g * L.len;
    float z = p.zero.empty() ? 0.f : float(p.zero[u]);
    if (q_signed) dq_span(q_signed + off, y + off, L.len, p.scale[u], z);
    else dq_span(q_unsigned + off, y + off, L.len, p.scale[u], z);
  });
}

void fake_quantize(const float* x, float* y, int64_t rows, int64_t cols, const QParams& p) {
  validate(p, rows, cols, false);
  if (p.off()) {
    if (x != y) std::copy(x, x + rows * cols, y);
    return;
  }
  Layout L = layout(p, cols);
  float qlo = float(p.qmin()), qhi = float(p.qmax());
  bool bad_row = false;  // reported after the parallel loop: exceptions must not escape it
  for_each_span(rows, cols, L, [&](int64_t r, int64_t g, int64_t u) {
    int64_t off = r * cols + g * L.len;
    float s, z;
    if (p.gran == Granularity::token) {  // dynamic: this row's own range, right now
      float lo, hi;
      int32_t zi;
      value_range(x + off, cols, lo, hi);
      if (!std::isfinite(lo) || !std::isfinite(hi) ||
          !range_params(lo, hi, p.bits, p.symmetric, s, zi)) {
#pragma omp atomic write
        bad_row = true;
        return;
      }
      z = float(zi);
    } else {
      s = p.scale[u];
      z = p.zero.empty() ? 0.f : float(p.zero[u]);
    }
    fq_span(x + off, y + off, L.len, s, z, qlo, qhi);
  });
  if (bad_row) throw Error("fake_quantize: per-token quantisation met a row with non-finite values");
}

QParams token_qparams(const float* x, int64_t rows, int64_t cols, int bits, bool symmetric) {
  check_bits(bits);
  if (rows < 0 || cols < 0) throw Error("quantizer: negative tensor shape");
  QParams p;
  p.bits = bits;
  p.symmetric = symmetric;
  p.gran = Granularity::token;
  p.scale.assign(size_t(rows), 1.f);
  p.zero.assign(size_t(rows), 0);
  for (int64_t r = 0; r < rows; ++r) {
    float lo, hi;
    value_range(x + r * cols, cols, lo, hi);
    if (!std::isfinite(lo) || !std::isfinite(hi))
      throw Error("token_qparams: row " + std::to_string(r) + " has non-finite values");
    range_to_qparams(lo, hi, bits, symmetric, p.scale[r], p.zero[r]);
  }
  return p;
}

void fake_quantize_log2(const float* x, float* y, int64_t n, const Log2Params& p) {
  validate_log2(p, n);
  if (p.bits >= 16) {
    if (x != y) std::copy(x, x + n, y);
    return;
  }
  std::vector<uint8_t> codes(size_t(std::max<int64_t>(n, 0)));
  kernels::log2_codes(x, codes.data(), n, kernels::make_log2_grid(p.scale, p.tau, p.bits));
  const std::vector<float> level = log2_levels(p);
  for (int64_t i = 0; i < n; ++i) y[i] = level[codes[size_t(i)]];
}

void quantize_log2(const float* x, uint8_t* codes, int64_t n, const Log2Params& p) {
  validate_log2(p, n);
  if (p.bits >= 16) throw Error("quantize_log2: 16 bits means no quantisation; there are no codes");
  kernels::log2_codes(x, codes, n, kernels::make_log2_grid(p.scale, p.tau, p.bits));
}

void value_range(const float* x, int64_t n, float& lo, float& hi) {
  lo = n ? x[0] : 0.f;
  hi = lo;
#pragma omp simd reduction(min : lo) reduction(max : hi)
  for (int64_t i = 0; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
}

}  // namespace vs::quant
