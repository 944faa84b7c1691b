#include "compress/quant/smoothquant.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "kernels/gemm.h"

namespace vs::quant {

void InputStats::observe(const float* x, int64_t rows, int64_t cols, int64_t max_sample_rows) {
  if (lo.empty()) {
    lo.assign(size_t(cols), INFINITY);
    hi.assign(size_t(cols), -INFINITY);
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      lo[size_t(c)] = std::min(lo[size_t(c)], x[r * cols + c]);
      hi[size_t(c)] = std::max(hi[size_t(c)], x[r * cols + c]);
    }
  const int64_t take = std::min(rows, max_sample_rows - sample_rows);
  if (take > 0) {
    sample.insert(sample.end(), x, x + take * cols);
    sample_rows += take;
  }
}

namespace {

// ||Q(X') Q(W')^T + b' - (X W^T + b)||^2 per element, for X' = (X - z) / s, W' = W diag(s),
// b' = b + W z (identity when s = 1, z = 0).
double layer_error(const std::vector<float>& x, int64_t rows, const Tensor& w, const std::vector<float>& ref,
                   const std::vector<float>& z, const std::vector<float>& s, int wbits, int abits, Observer wobs,
                   Observer aobs) {
  const int64_t N = w.dim(0), K = w.dim(1);
  const size_t NK = size_t(N * K), Ns = size_t(N);
  std::vector<float> xs(x.size()), ws(NK), bz(Ns, 0.f);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < K; ++k) xs[size_t(r * K + k)] = (x[size_t(r * K + k)] - z[size_t(k)]) / s[size_t(k)];
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      ws[size_t(n * K + k)] = w.f32()[n * K + k] * s[size_t(k)];
      bz[size_t(n)] += w.f32()[n * K + k] * z[size_t(k)];
    }
  ActObserver o;
  o.observe(xs.data(), rows, K);
  fake_quantize(xs.data(), xs.data(), rows, K, o.finalize(abits, false, aobs));
  fake_quantize(ws.data(), ws.data(), N, K, calibrate_weight(ws.data(), N, K, wbits, true, Granularity::channel, 0, wobs));
  const size_t YN = size_t(rows * N);
  std::vector<float> y(YN);
  kernels::linear_f32(xs.data(), ws.data(), bz.data(), y.data(), rows, N, K);
  double e = 0;
  for (size_t i = 0; i < y.size(); ++i) e += std::pow(double(y[i]) - ref[i], 2);
  return e / double(y.size());
}

}  // namespace

void fold_norm_linear(nn::LayerNorm& norm, std::unique_ptr<nn::Linear>& linear, const std::vector<float>& z,
                      const std::vector<float>& s) {
  auto* dense = dynamic_cast<nn::DenseLinear*>(linear.get());
  check(dense != nullptr, "folding into a LayerNorm: the layer after it must be float (dense)");
  const Tensor& w = dense->weight();
  const int64_t N = w.dim(0), K = w.dim(1);
  check(int64_t(z.size()) == K && int64_t(s.size()) == K && norm.weight.numel() == K,
        "folding into a LayerNorm: one shift and scale per channel expected");
  Tensor g = norm.weight.clone(), be = norm.bias.clone(), w2 = w.clone();
  Tensor b2 = dense->bias().defined() ? dense->bias().clone() : Tensor({N});
  for (int64_t k = 0; k < K; ++k) {
    g.f32()[k] /= s[size_t(k)];
    be.f32()[k] = (be.f32()[k] - z[size_t(k)]) / s[size_t(k)];
  }
  for (int64_t n = 0; n < N; ++n) {
    double bz = 0;
    for (int64_t k = 0; k < K; ++k) {
      bz += double(w.f32()[n * K + k]) * z[size_t(k)];
      w2.f32()[n * K + k] = w.f32()[n * K + k] * s[size_t(k)];
    }
    b2.f32()[n] += float(bz);
  }
  norm.weight = g;
  norm.bias = be;
  linear = std::make_unique<nn::DenseLinear>(w2, b2);
}

SmoothResult smooth_norm_linear(nn::LayerNorm& norm, std::unique_ptr<nn::Linear>& linear, const InputStats& st,
                                int wbits, int abits, Observer wobs, Observer aobs) {
  auto* dense = dynamic_cast<nn::DenseLinear*>(linear.get());
  check(dense != nullptr, "SQ-b: the layer after a LayerNorm must be float (dense)");
  const Tensor& w = dense->weight();
  const int64_t N = w.dim(0), K = w.dim(1), rows = st.sample_rows;
  check(int64_t(st.lo.size()) == K && rows > 0, "SQ-b: no calibration statistics for this layer");
  const size_t RN = size_t(rows * N);
  std::vector<float> ref(RN);
  kernels::linear_f32(st.sample.data(), w.f32(), nullptr, ref.data(), rows, N, K);
  const size_t Ks = size_t(K);
  std::vector<float> z(Ks), xmax(Ks), wmax(Ks, 0.f), ones(Ks, 1.f), zeros(Ks, 0.f);
  for (int64_t k = 0; k < K; ++k) {
    z[size_t(k)] = 0.5f * (st.lo[size_t(k)] + st.hi[size_t(k)]);
    xmax[size_t(k)] = std::max(1e-5f, 0.5f * (st.hi[size_t(k)] - st.lo[size_t(k)]));
    for (int64_t n = 0; n < N; ++n) wmax[size_t(k)] = std::max(wmax[size_t(k)], std::abs(w.f32()[n * K + k]));
    wmax[size_t(k)] = std::max(wmax[size_t(k)], 1e-5f);
  }
  SmoothResult res;
  res.error_before = res.error_after = layer_error(st.sample, rows, w, ref, zeros, ones, wbits, abits, wobs, aobs);
  std::vector<float> best_s;
  for (int i = 0; i <= 10; ++i) {
    const double a = i / 10.0;
    std::vector<float> s(Ks);
    for (int64_t k = 0; k < K; ++k)
      s[size_t(k)] = float(std::pow(double(xmax[size_t(k)]), a) / std::pow(double(wmax[size_t(k)]), 1 - a));
    const double e = layer_error(st.sample, rows, w, ref, z, s, wbits, abits, wobs, aobs);
    if (e < res.error_after) {
      res.error_after = e;
      res.alpha = a;
      best_s = s;
    }
  }
  if (res.alpha >= 0) fold_norm_linear(norm, linear, z, best_s);
  return res;
}

}  // namespace vs::quant
