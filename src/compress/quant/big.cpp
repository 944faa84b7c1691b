#include "compress/quant/big.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace vs::quant {

BimodalTest detect_bimodal(const std::vector<float>& values) {
  BimodalTest t;
  const size_t n = values.size();
  if (n < 16) return t;
  std::vector<float> v(values);
  std::sort(v.begin(), v.end());
  const double lo = v.front(), hi = v.back();
  if (!(hi > lo) || lo >= 0 || hi <= 0) return t;  // one side of zero only: nothing to integrate
  double mean = 0, sq = 0;
  for (float x : v) mean += x;
  mean /= double(n);
  for (float x : v) sq += (x - mean) * (x - mean);
  const double sd = std::sqrt(sq / double(n));
  const double iqr = v[n * 3 / 4] - v[n / 4];
  const double h = 0.9 * std::min(sd, iqr > 0 ? iqr / 1.34 : sd) * std::pow(double(n), -0.2);
  constexpr int kBins = 512;
  const double width = (hi - lo) / kBins;
  std::vector<double> hist(kBins, 0.0), dens(kBins, 0.0);
  for (float x : v) hist[size_t(std::min(kBins - 1, int((x - lo) / width)))] += 1;
  const double sigma = std::max(h / width, 0.5);  // in bins
  const int reach = int(std::ceil(3 * sigma));
  for (int i = 0; i < kBins; ++i)
    for (int j = std::max(0, i - reach); j <= std::min(kBins - 1, i + reach); ++j)
      dens[size_t(i)] += hist[size_t(j)] * std::exp(-0.5 * std::pow((i - j) / sigma, 2));
  const double top = *std::max_element(dens.begin(), dens.end());
  auto center = [&](int i) { return lo + (i + 0.5) * width; };
  int left = -1, right = -1;  // highest local maximum on each side of zero
  for (int i = 0; i < kBins; ++i) {
    const bool peak = (i == 0 || dens[size_t(i)] >= dens[size_t(i - 1)]) &&
                      (i == kBins - 1 || dens[size_t(i)] > dens[size_t(i + 1)]);
    if (!peak || dens[size_t(i)] < 0.1 * top) continue;
    int& side = center(i) < 0 ? left : right;
    if (side < 0 || dens[size_t(i)] > dens[size_t(side)]) side = i;
  }
  if (left < 0 || right < 0) return t;
  const double valley = *std::min_element(dens.begin() + left, dens.begin() + right + 1);
  t.left_peak = center(left);
  t.right_peak = center(right);
  t.bimodal = valley < 0.5 * std::min(dens[size_t(left)], dens[size_t(right)]);
  return t;
}

namespace {

double quant_mse(const std::vector<float>& x, int bits, Observer obs) {
  ActObserver o;
  o.observe(x.data(), 1, int64_t(x.size()));
  QParams p = o.finalize(bits, false, obs);
  std::vector<float> y(x.size());
  fake_quantize(x.data(), y.data(), 1, int64_t(x.size()), p);
  double e = 0;
  for (size_t i = 0; i < x.size(); ++i) e += std::pow(double(x[i]) - y[i], 2);
  return e / double(x.size());
}

}  // namespace

BigDecision decide_big(const std::vector<float>& keys, int64_t qk, const std::vector<double>& channel_mean,
                       int bits, Observer obs) {
  BigDecision d;
  d.test = detect_bimodal(keys);
  d.mse_before = d.mse_after = quant_mse(keys, bits, obs);
  if (!d.test.bimodal) return d;
  int64_t neg = 0;
  for (double m : channel_mean) neg += m < 0;
  const bool flip_negative = 2 * neg <= qk;  // flip the minority sign
  for (int64_t c = 0; c < qk; ++c)
    if ((channel_mean[size_t(c)] < 0) == flip_negative && channel_mean[size_t(c)] != 0) d.flip.push_back(c);
  std::vector<float> flipped(keys);
  const int64_t rows = int64_t(keys.size()) / qk;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c : d.flip) flipped[size_t(r * qk + c)] = -flipped[size_t(r * qk + c)];
  d.mse_after = quant_mse(flipped, bits, obs);
  return d;
}

void apply_big(nn::Attention& attn, const std::vector<int64_t>& channels) {
  const int64_t qk = attn.heads.qk_total();
  std::vector<int64_t> rows;
  for (int64_t c : channels) {
    check(c >= 0 && c < qk, "BIG: channel out of range");
    rows.push_back(c);
    rows.push_back(qk + c);
  }
  negate_rows(attn.qkv, rows);
}

void negate_rows(std::unique_ptr<nn::Linear>& layer, const std::vector<int64_t>& rows) {
  auto* dense = dynamic_cast<nn::DenseLinear*>(layer.get());
  check(dense != nullptr, "BIG: the query and key projections must be float (dense) layers");
  const int64_t K = dense->in_features();
  Tensor w = dense->weight().clone(), b = dense->bias().defined() ? dense->bias().clone() : Tensor();
  for (int64_t row : rows) {
    check(row >= 0 && row < dense->out_features(), "BIG: row out of range");
    for (int64_t k = 0; k < K; ++k) w.f32()[row * K + k] = -w.f32()[row * K + k];
    if (b.defined()) b.f32()[row] = -b.f32()[row];
  }
  layer = std::make_unique<nn::DenseLinear>(w, b);
}

}  // namespace vs::quant
