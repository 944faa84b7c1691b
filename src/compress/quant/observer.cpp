// Range calibration (see observer.h). All three observers reduce to "pick [lo, hi] for one unit
// of values, then range_to_qparams"; a unit is the whole tensor, one row, or one row group —
// always a contiguous span of a row-major [rows, cols] weight.
#include "compress/quant/observer.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace vs::quant {

namespace {

constexpr int kAlphaSteps = 100;      // mse grid: alpha = 1.0 .. 0.2
constexpr double kAlphaMin = 0.2;
constexpr int kLog2Candidates = 8;    // calibrate_log2: s = max * 2^(-k/8), k = 0..7

double alpha_at(int i) { return 1.0 - (1.0 - kAlphaMin) * i / (kAlphaSteps - 1); }

// Squared error of fake-quantising one span; the same arithmetic as fake_quantize, summed in
// double so long spans do not lose the small differences between candidate ranges.
double sq_error(const float* x, int64_t n, float s, float z, float qlo, float qhi) {
  double acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) {
    float v = std::nearbyint(x[i] / s) + z;
    v = std::min(std::max(v, qlo), qhi);
    float d = (v - z) * s - x[i];
    acc += double(d) * double(d);
  }
  return acc;
}


// x * 0 is NaN exactly when x is inf or NaN, so one vectorised sum finds any of them.
bool all_finite(const float* x, int64_t n) {
  float acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) acc += x[i] * 0.f;
  return acc == 0;
}

// p-th percentile (0..100) with linear interpolation between order statistics (numpy's
// default). Reorders v.
float quantile(std::vector<float>& v, double p) {
  if (v.empty()) return 0.f;
  double pos = (double(v.size()) - 1) * p / 100.0;
  size_t k = size_t(pos);
  std::nth_element(v.begin(), v.begin() + k, v.end());
  float a = v[k];
  if (k + 1 >= v.size()) return a;
  float b = *std::min_element(v.begin() + k + 1, v.end());  // next order statistic
  return float(a + (pos - double(k)) * (double(b) - a));
}

void percentile_range(const float* x, int64_t n, bool symmetric, double pct,
                      std::vector<float>& scratch, float& lo, float& hi) {
  if (symmetric) {
    scratch.resize(size_t(n));
    for (int64_t i = 0; i < n; ++i) scratch[i] = std::abs(x[i]);
    hi = quantile(scratch, pct);
    lo = -hi;
    return;
  }
  scratch.assign(x, x + n);
  hi = quantile(scratch, pct);
  lo = quantile(scratch, 100.0 - pct);
}

// Best alpha * [lo, hi] by squared error over x. Candidates run in parallel only when asked
// (one big unit); the choice itself is serial, so the result never depends on thread count.
void mse_range(const float* x, int64_t n, int bits, bool symmetric, bool parallel, float& lo,
               float& hi) {
  double err[kAlphaSteps];
  QParams q;  // only for qmin / qmax
  q.bits = bits;
  q.symmetric = symmetric;
  float qlo = float(q.qmin()), qhi = float(q.qmax());
  auto candidate = [&](int i) {
    float a = float(alpha_at(i)), s;
    int32_t z;
    try {  // only a range wider than float32 can throw; such a candidate just loses
      range_to_qparams(a * lo, a * hi, bits, symmetric, s, z);
      err[i] = sq_error(x, n, s, float(z), qlo, qhi);
    } catch (const Error&) {
      err[i] = std::numeric_limits<double>::infinity();
    }
  };
  // Two loops rather than `if (parallel)`: even an inactive parallel region costs a runtime
  // call, which adds up over tens of thousands of small groups.
  if (parallel) {
#pragma omp parallel for schedule(dynamic)
    for (int i = 0; i < kAlphaSteps; ++i) candidate(i);
  } else {
    for (int i = 0; i < kAlphaSteps; ++i) candidate(i);
  }
  int best = 0;  // strict < keeps the widest range among equals
  for (int i = 1; i < kAlphaSteps; ++i)
    if (err[i] < err[best]) best = i;
  float a = float(alpha_at(best));
  lo *= a;
  hi *= a;
}

// The clipping range of one unit under `obs`. Inputs are finite (checked by the callers).
void unit_range(const float* x, int64_t n, int bits, bool symmetric, Observer obs, double pct,
                bool parallel, std::vector<float>& scratch, float& lo, float& hi) {
  switch (obs) {
    case Observer::minmax: value_range(x, n, lo, hi); return;
    case Observer::percentile: percentile_range(x, n, symmetric, pct, scratch, lo, hi); return;
    case Observer::mse:
      value_range(x, n, lo, hi);
      mse_range(x, n, bits, symmetric, parallel, lo, hi);
      return;
  }
}

// Below 50 the asymmetric tails would cross (lo > hi).
void check_percentile(double pct) {
  check(pct >= 50 && pct <= 100,
        "observer: percentile must be in [50, 100], got " + std::to_string(pct));
}

QParams make_params(int bits, bool symmetric, Granularity g, int group, int64_t units) {
  QParams p;
  p.bits = bits;
  p.symmetric = symmetric;
  p.gran = g;
  p.group = g == Granularity::group ? group : 0;
  p.scale.assign(size_t(units), 1.f);
  p.zero.assign(size_t(units), 0);
  return p;
}

}  // namespace

Observer parse_observer(const std::string& name) {
  if (name == "minmax") return Observer::minmax;
  if (name == "percentile") return Observer::percentile;
  if (name == "mse") return Observer::mse;
  throw Error("unknown observer '" + name + "' (expected minmax, percentile or mse)");
}

std::string observer_name(Observer obs) {
  switch (obs) {
    case Observer::minmax: return "minmax";
    case Observer::percentile: return "percentile";
    case Observer::mse: return "mse";
  }
  return "?";
}

QParams calibrate_weight(const float* w, int64_t rows, int64_t cols, int bits, bool symmetric,
                         Granularity g, int group, Observer obs, double percentile) {
  check_bits(bits);
  check_percentile(percentile);
  check(rows > 0 && cols > 0, "calibrate_weight: empty weight");
  check(g != Granularity::token,
        "calibrate_weight: per-token granularity applies to activations, not weights");
  int64_t units = scale_count(g, rows, cols, group);
  QParams p = make_params(bits, symmetric, g, group, units);
  if (p.off()) return p;
  check(all_finite(w, rows * cols), "calibrate_weight: weight has non-finite values");
  int64_t len = rows * cols / units;  // every unit is one contiguous span of this length
  bool one_unit = units == 1;
  std::vector<float> lo(static_cast<size_t>(units)), hi(static_cast<size_t>(units));
#pragma omp parallel if (!one_unit)
  {
    std::vector<float> scratch;
#pragma omp for schedule(dynamic, 16)
    for (int64_t u = 0; u < units; ++u)
      unit_range(w + u * len, len, bits, symmetric, obs, percentile, one_unit, scratch, lo[u], hi[u]);
  }
  // Serial: range_to_qparams may throw, and an exception must not leave a parallel region.
  for (int64_t u = 0; u < units; ++u)
    range_to_qparams(lo[u], hi[u], bits, symmetric, p.scale[u], p.zero[u]);
  return p;
}

// ---- ActObserver ------------------------------------------------------------------------------

ActObserver::ActObserver(int64_t capacity, uint64_t seed) : capacity_(capacity), state_(seed) {
  check(capacity >= 1, "ActObserver: sample capacity must be at least 1");
}

float ActObserver::absmax() const { return std::max(std::abs(min_), std::abs(max_)); }

uint64_t ActObserver::next_u64() {
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

double ActObserver::uniform() { return (double(next_u64() >> 11) + 0.5) * 0x1.0p-53; }

// Algorithm L (Li, 1994): the gaps between reservoir insertions are geometric, so a full
// reservoir costs O(capacity * log(count / capacity)) random numbers instead of one per value.
void ActObserver::advance_skip() {
  double k = double(capacity_);
  w_ *= std::exp(std::log(uniform()) / k);
  double gap = std::floor(std::log(uniform()) / std::log1p(-w_));
  gap = std::min(gap, 4e18);  // w_ -> 0 after astronomically many values; keep the int finite
  next_take_ += int64_t(gap) + 1;
}

void ActObserver::take(float v) {
  uint64_t slot = uint64_t((unsigned __int128)next_u64() * uint64_t(capacity_) >> 64);
  sample_[slot] = v;
}

void ActObserver::observe(const float* x, int64_t rows, int64_t cols) {
  check(rows >= 0 && cols >= 0, "ActObserver: negative shape");
  int64_t n = rows * cols;
  if (n == 0) return;
  check(all_finite(x, n), "ActObserver: activations have non-finite values");
  float lo, hi;
  value_range(x, n, lo, hi);
  min_ = count_ ? std::min(min_, lo) : lo;
  max_ = count_ ? std::max(max_, hi) : hi;

  if (int64_t(sample_.size()) < capacity_) {  // filling: keep everything
    int64_t fill = std::min(n, capacity_ - int64_t(sample_.size()));
    sample_.insert(sample_.end(), x, x + fill);
    if (int64_t(sample_.size()) < capacity_) {
      count_ += n;
      return;
    }
    w_ = 1.0;  // just filled: schedule the first replacement after the last value kept
    next_take_ = count_ + fill - 1;
    advance_skip();
  }
  for (int64_t g; (g = next_take_ - count_) < n;) {  // g > index of every value kept so far
    take(x[g]);
    advance_skip();
  }
  count_ += n;
}

QParams ActObserver::finalize(int bits, bool symmetric, Observer obs, double percentile) const {
  check_bits(bits);
  check_percentile(percentile);
  check(count_ > 0, "ActObserver: no activations were observed; run calibration first");
  QParams p = make_params(bits, symmetric, Granularity::tensor, 0, 1);
  if (p.off()) return p;
  float lo = min_, hi = max_;
  std::vector<float> scratch;
  if (obs == Observer::percentile) {
    percentile_range(sample_.data(), int64_t(sample_.size()), symmetric, percentile, scratch, lo, hi);
  } else if (obs == Observer::mse) {  // alpha scales the true range; the error is on the sample
    mse_range(sample_.data(), int64_t(sample_.size()), bits, symmetric, true, lo, hi);
  }
  range_to_qparams(lo, hi, bits, symmetric, p.scale[0], p.zero[0]);
  return p;
}

// ---- log2 -------------------------------------------------------------------------------------

Log2Params calibrate_log2(const ActObserver& probs, int bits, int tau) {
  check_bits(bits);
  check(tau == 1 || tau == 2 || tau == 4, "calibrate_log2: tau must be 1, 2 or 4, got " +
                                              std::to_string(tau));
  check(probs.count() > 0, "calibrate_log2: no attention probabilities were observed");
  Log2Params p;
  p.bits = bits;
  p.tau = tau;
  p.scale = probs.max() > 0 ? probs.max() : 1.f;
  if (bits >= 16 || probs.max() <= 0) return p;
  const std::vector<float>& x = probs.sample();
  std::vector<float> y(x.size());
  double best_err = std::numeric_limits<double>::infinity();
  float best_s = p.scale;
  for (int k = 0; k < kLog2Candidates; ++k) {
    Log2Params c = p;
    c.scale = float(double(probs.max()) * std::exp2(-k / double(kLog2Candidates)));
    fake_quantize_log2(x.data(), y.data(), int64_t(x.size()), c);
    double err = 0;
    for (size_t i = 0; i < x.size(); ++i) err += double(y[i] - x[i]) * double(y[i] - x[i]);
    if (err < best_err) {
      best_err = err;
      best_s = c.scale;
    }
  }
  p.scale = best_s;
  return p;
}

}  // namespace vs::quant
