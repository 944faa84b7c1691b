#include "compress/lowrank/mlp_units.h"

#include <algorithm>

#include "compress/prune/scores.h"
#include "core/error.h"

namespace vs::compress {

MlpUnits mlp_units(const Mat& w1, const Vec& b1, const Mat& w2, const Vec& b2, const Moments& hidden, double damping) {
  const int64_t n = w1.rows();
  check(w2.cols() == n && b1.size() == n && b2.size() == w2.rows() && hidden.mean.size() == n && hidden.rows > 0,
        "MLP units: fc1 / fc2 / statistics shapes do not match");
  MlpUnits u{w1, w2, b1, b2, hidden, damping, {}, Vec::Zero(n + 1), 0.0};
  std::vector<double> costs;
  u.order = prune::output_error_order(w2, hidden, prune::Compensation::refit, damping, &costs);
  for (int64_t k = 0; k < n; ++k) u.error(k + 1) = u.error(k) + costs[size_t(k)];
  u.energy = (w2 * hidden.cgram * w2.transpose()).trace();
  return u;
}

MlpWeights mlp_at(const MlpUnits& u, int64_t r, bool pad) {
  const int64_t n = u.width();
  check(r >= 1 && r <= n, "MLP units: width " + std::to_string(r) + " outside 1.." + std::to_string(n));
  std::vector<int64_t> kept(u.order.begin() + (n - r), u.order.end());
  std::sort(kept.begin(), kept.end());
  const LinearFit fit = ridge_refit(u.w2, u.b2, PairedMoments::of_columns(u.hidden, kept), u.damping);  // [out, r]
  MlpWeights w;
  if (pad) {
    w.w1 = u.w1;
    w.b1 = u.b1;
    w.w2 = Mat::Zero(u.w2.rows(), n);
    for (int64_t j = 0; j < r; ++j) w.w2.col(kept[size_t(j)]) = fit.W.col(j);
  } else {
    w.w1.resize(r, u.w1.cols());
    w.b1.resize(r);
    for (int64_t j = 0; j < r; ++j) {
      w.w1.row(j) = u.w1.row(kept[size_t(j)]);
      w.b1(j) = u.b1(kept[size_t(j)]);
    }
    w.w2 = fit.W;
  }
  w.b2 = fit.b;
  return w;
}

}  // namespace vs::compress
