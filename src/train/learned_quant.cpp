#include "train/learned_quant.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace vs::train {
namespace {

constexpr float kZeta = 1.1f, kGamma = -0.1f;

// sum_i f(i) over [0, n) in fixed chunks, added in chunk order (deterministic).
template <class F>
double chunked_sum(int64_t n, F f) {
  constexpr int64_t kChunk = 4096;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> part(size_t(std::max<int64_t>(chunks, 1)), 0.0);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    double s = 0;
    for (int64_t i = c * kChunk; i < std::min(n, (c + 1) * kChunk); ++i) s += f(i);
    part[size_t(c)] = s;
  }
  double total = 0;
  for (double p : part) total += p;
  return total;
}

float sigmoid(float a) { return 1.f / (1.f + std::exp(-a)); }

}  // namespace

float rect_sigmoid(float a) { return std::clamp(sigmoid(a) * (kZeta - kGamma) + kGamma, 0.f, 1.f); }

float rect_sigmoid_grad(float a) {
  const float s = sigmoid(a), h = s * (kZeta - kGamma) + kGamma;
  return h <= 0.f || h >= 1.f ? 0.f : s * (1.f - s) * (kZeta - kGamma);
}

float rect_sigmoid_inverse(float frac) {
  const float s = std::clamp((frac - kGamma) / (kZeta - kGamma), 1e-6f, 1.f - 1e-6f);
  return -std::log(1.f / s - 1.f);
}

double adaround_regularizer(const float* a, float* grad, int64_t n, float beta, double weight) {
  return chunked_sum(n, [&](int64_t i) {
    const float h = rect_sigmoid(a[i]), t = 2.f * h - 1.f, at = std::fabs(t);
    // d/da (1 - |t|^beta) = -beta |t|^(beta-1) sign(t) * 2 h'(a)
    if (at > 0.f)
      grad[i] += float(weight) * -beta * std::pow(at, beta - 1.f) * (t > 0 ? 1.f : -1.f) * 2.f * rect_sigmoid_grad(a[i]);
    return 1.0 - std::pow(double(at), double(beta));
  });
}

double lsq_scale_grad(const float* x, const float* dy, int64_t n, float s, int32_t zero, int bits) {
  const float qmax = float((1 << bits) - 1), z = float(zero);
  return chunked_sum(n, [&](int64_t i) {
    const float r = x[i] / s, q = std::nearbyint(r) + z;
    const float d = q < 0.f ? -z : q > qmax ? qmax - z : std::nearbyint(r) - r;
    return double(dy[i]) * d;
  });
}

double lsq_scale_grad_sym(const float* x, const float* dy, int64_t n, float s, int bits) {
  const float lim = float((1 << (bits - 1)) - 1);
  return chunked_sum(n, [&](int64_t i) {
    const float r = x[i] / s, q = std::nearbyint(r);
    const float d = q < -lim ? -lim : q > lim ? lim : q - r;
    return double(dy[i]) * d;
  });
}

}  // namespace vs::train
