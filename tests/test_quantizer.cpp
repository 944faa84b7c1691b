// Quantizer definitions (quantizer.h), calibration observers (observer.h) and int4 packing
// (pack.h). Everything is deterministic: fixed seeds, no timing.
#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <random>
#include <set>
#include <vector>

#include "compress/quant/observer.h"
#include "kernels/pack.h"
#include "compress/quant/quantizer.h"
#include "core/error.h"
#include "kernels/quantize_act.h"

using namespace vs;
using namespace vs::quant;

namespace {

std::vector<float> normal(int64_t n, unsigned seed, float stddev = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, stddev);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = nd(rng);
  return v;
}

std::vector<float> uniform(int64_t n, unsigned seed, float lo, float hi) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> ud(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = ud(rng);
  return v;
}

// Laplace(0, b) with a few large outliers: the case where clipping pays.
std::vector<float> heavy_tailed(int64_t n, unsigned seed, float b, int outliers, float mag) {
  std::mt19937 rng(seed);
  std::exponential_distribution<float> ed(1.f / b);
  std::vector<float> v(static_cast<size_t>(n));
  for (size_t i = 0; i < v.size(); ++i) v[i] = (rng() & 1 ? 1.f : -1.f) * ed(rng);
  for (int k = 0; k < outliers; ++k) v[size_t(rng() % uint64_t(n))] = (k % 2 ? mag : -mag);
  return v;
}

QParams tensor_params(float lo, float hi, int bits, bool symmetric) {
  QParams p;
  p.bits = bits;
  p.symmetric = symmetric;
  p.scale.resize(1);
  p.zero.resize(1);
  range_to_qparams(lo, hi, bits, symmetric, p.scale[0], p.zero[0]);
  return p;
}

std::vector<float> fq(const std::vector<float>& x, int64_t rows, int64_t cols, const QParams& p) {
  std::vector<float> y(x.size());
  fake_quantize(x.data(), y.data(), rows, cols, p);
  return y;
}

double sq_err(const std::vector<float>& a, const std::vector<float>& b) {
  double e = 0;
  for (size_t i = 0; i < a.size(); ++i) e += double(a[i] - b[i]) * double(a[i] - b[i]);
  return e;
}

// Dequantised output through the integer codes, for either signedness.
std::vector<float> through_codes(const std::vector<float>& x, int64_t rows, int64_t cols,
                                 const QParams& p) {
  std::vector<float> y(x.size());
  if (p.symmetric) {
    std::vector<int8_t> q(x.size());
    quantize(x.data(), rows, cols, p, q.data(), nullptr);
    dequantize(q.data(), nullptr, rows, cols, p, y.data());
  } else {
    std::vector<uint8_t> q(x.size());
    quantize(x.data(), rows, cols, p, nullptr, q.data());
    dequantize(nullptr, q.data(), rows, cols, p, y.data());
  }
  return y;
}

}  // namespace

// ---- uniform quantizer ------------------------------------------------------------------------

TEST(QuantizerUniform, QuantizeDequantizeEqualsFakeQuantize) {
  const int64_t rows = 24, cols = 64;
  std::vector<float> w = normal(rows * cols, 1);
  for (bool sym : {true, false})
    for (Granularity g : {Granularity::tensor, Granularity::channel, Granularity::group})
      for (int bits : {4, 8}) {
        QParams p = calibrate_weight(w.data(), rows, cols, bits, sym, g, 16, Observer::minmax);
        std::vector<float> a = fq(w, rows, cols, p), b = through_codes(w, rows, cols, p);
        EXPECT_EQ(a, b) << "sym " << sym << " gran " << int(g) << " bits " << bits;
        std::vector<float> again = fq(a, rows, cols, p);  // fake quantisation is idempotent
        EXPECT_EQ(again, a);
      }
}

TEST(QuantizerUniform, EveryRepresentableValueIsAFixedPoint) {
  for (bool sym : {true, false})
    for (int bits = 2; bits <= 8; ++bits) {
      QParams p = tensor_params(-0.73f, 1.41f, bits, sym);
      std::vector<float> grid;
      for (int q = p.qmin(); q <= p.qmax(); ++q) grid.push_back(float(q - p.zero[0]) * p.scale[0]);
      EXPECT_EQ(fq(grid, 1, int64_t(grid.size()), p), grid) << "sym " << sym << " bits " << bits;
    }
}

TEST(QuantizerUniform, RoundsHalfToEven) {
  QParams p = tensor_params(-127.f, 127.f, 8, true);  // scale exactly 1
  ASSERT_EQ(p.scale[0], 1.f);
  std::vector<float> x = {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 2.4999f, 2.5001f};
  std::vector<float> want = {0.f, 2.f, 2.f, -0.f, -2.f, -2.f, 2.f, 3.f};
  EXPECT_EQ(fq(x, 1, int64_t(x.size()), p), want);
}

TEST(QuantizerUniform, ClipsOutOfRangeValuesToTheGridEnds) {
  for (bool sym : {true, false}) {
    QParams p = tensor_params(-1.f, 2.f, 4, sym);
    std::vector<float> x = {-100.f, -1.9f, 5.f, 1e30f, -1e30f};
    if (sym) {
      std::vector<int8_t> q(x.size());
      quantize(x.data(), 1, int64_t(x.size()), p, q.data(), nullptr);
      EXPECT_EQ(q, (std::vector<int8_t>{-7, -7, 7, 7, -7}));
    } else {
      std::vector<uint8_t> q(x.size());
      quantize(x.data(), 1, int64_t(x.size()), p, nullptr, q.data());
      EXPECT_EQ(q, (std::vector<uint8_t>{0, 0, 15, 15, 0}));
    }
    float lo = float(p.qmin() - p.zero[0]) * p.scale[0];
    float hi = float(p.qmax() - p.zero[0]) * p.scale[0];
    std::vector<float> y = fq(x, 1, int64_t(x.size()), p);
    EXPECT_EQ(y, (std::vector<float>{lo, lo, hi, hi, lo}));
  }
}

TEST(QuantizerUniform, ZeroPointEdgeCases) {
  float s;
  int32_t z;
  range_to_qparams(0.5f, 3.f, 8, false, s, z);  // all positive: widened to [0, 3]
  EXPECT_EQ(z, 0);
  EXPECT_FLOAT_EQ(s, 3.f / 255.f);
  range_to_qparams(-3.f, -0.5f, 8, false, s, z);  // all negative: widened to [-3, 0]
  EXPECT_EQ(z, 255);
  range_to_qparams(-3.f, -0.5f, 4, false, s, z);
  EXPECT_EQ(z, 15);
  for (bool sym : {true, false}) {  // zero width
    range_to_qparams(0.f, 0.f, 8, sym, s, z);
    EXPECT_EQ(s, 1.f);
    EXPECT_EQ(z, 0);
  }
  range_to_qparams(2.f, 2.f, 8, false, s, z);  // a constant: [0, 2]
  EXPECT_FLOAT_EQ(s, 2.f / 255.f);
  EXPECT_EQ(z, 0);
  range_to_qparams(-0.3f, 2.f, 8, true, s, z);  // symmetric: absmax / 127, z = 0
  EXPECT_FLOAT_EQ(s, 2.f / 127.f);
  EXPECT_EQ(z, 0);
  // 0 is exact for every range, including ones that do not contain it.
  for (auto [lo, hi] : {std::pair{-0.37f, 1.91f}, {0.2f, 0.9f}, {-5.f, -1.f}, {-1e-3f, 7.f}})
    for (int bits = 2; bits <= 8; ++bits) {
      QParams p = tensor_params(lo, hi, bits, false);
      std::vector<float> zero = {0.f};
      EXPECT_EQ(fq(zero, 1, 1, p)[0], 0.f) << lo << " " << hi << " bits " << bits;
    }
  // A constant tensor of zeros stays zero under the scale-1 fallback.
  QParams p = tensor_params(0.f, 0.f, 8, false);
  std::vector<float> zeros(5, 0.f);
  EXPECT_EQ(fq(zeros, 1, 5, p), zeros);
}

TEST(QuantizerUniform, EveryBitWidthHasAtMostTwoToTheBLevelsAndHalfStepError) {
  std::vector<float> x = uniform(4096, 2, -1.3f, 2.1f);
  auto [mn, mx] = std::minmax_element(x.begin(), x.end());
  for (bool sym : {true, false})
    for (int bits = 2; bits <= 8; ++bits) {
      QParams p = tensor_params(*mn, *mx, bits, sym);
      std::vector<float> y = fq(x, 1, int64_t(x.size()), p);
      std::set<float> levels(y.begin(), y.end());
      EXPECT_LE(levels.size(), size_t(1) << bits);
      if (sym) EXPECT_LE(levels.size(), (size_t(1) << bits) - 1);  // narrow range
      float worst = 0;
      for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::abs(y[i] - x[i]));
      EXPECT_LE(worst, p.scale[0] / 2 * (1 + 1e-5f)) << "sym " << sym << " bits " << bits;
    }
}

TEST(QuantizerUniform, SixteenBitsIsIdentity) {
  std::vector<float> x = normal(300, 3, 5.f);
  x[0] = 1e-30f;
  x[1] = -65504.123f;
  QParams p;
  p.bits = 16;  // no scales needed
  for (Granularity g : {Granularity::tensor, Granularity::channel, Granularity::token}) {
    p.gran = g;
    EXPECT_EQ(fq(x, 3, 100, p), x);
  }
  std::vector<float> inplace = x;
  fake_quantize(inplace.data(), inplace.data(), 3, 100, p);
  EXPECT_EQ(inplace, x);
  float s;
  int32_t z;
  range_to_qparams(-4.f, 9.f, 16, false, s, z);
  EXPECT_EQ(s, 1.f);
  EXPECT_EQ(z, 0);
  std::vector<int8_t> q(x.size());
  EXPECT_THROW(quantize(x.data(), 3, 100, p, q.data(), nullptr), Error);
}

// ---- granularity ------------------------------------------------------------------------------

TEST(QuantizerGranularity, PerChannelAndPerGroupBeatPerTensorOnUnevenRows) {
  const int64_t rows = 32, cols = 128;
  std::vector<float> w = normal(rows * cols, 4);
  for (int64_t r = 0; r < rows; ++r)  // row magnitudes spread over three decades
    for (int64_t c = 0; c < cols; ++c) w[r * cols + c] *= std::pow(10.f, float(r % 4) - 2.f);
  for (int64_t c = 0; c < cols; c += 32) w[5 * cols + c] *= 8;  // uneven groups within a row
  for (bool sym : {true, false}) {
    auto calib = [&](Granularity g) {
      return calibrate_weight(w.data(), rows, cols, 4, sym, g, 32, Observer::minmax);
    };
    QParams pt = calib(Granularity::tensor), pc = calib(Granularity::channel),
            pg = calib(Granularity::group);
    EXPECT_EQ(pt.scale.size(), 1u);
    EXPECT_EQ(pc.scale.size(), size_t(rows));
    EXPECT_EQ(pg.scale.size(), size_t(rows * cols / 32));
    EXPECT_EQ(pg.group, 32);
    // Error relative to each row's energy, so the small rows count as much as the large ones.
    auto rel_err = [&](const QParams& p) {
      std::vector<float> y = fq(w, rows, cols, p);
      double e = 0;
      for (int64_t r = 0; r < rows; ++r) {
        double num = 0, den = 0;
        for (int64_t c = 0; c < cols; ++c) {
          double d = y[r * cols + c] - w[r * cols + c];
          num += d * d;
          den += double(w[r * cols + c]) * w[r * cols + c];
        }
        e += num / den;
      }
      return e;
    };
    double et = rel_err(pt), ec = rel_err(pc), eg = rel_err(pg);
    EXPECT_LT(ec, et / 10) << "sym " << sym;
    EXPECT_LT(eg, ec) << "sym " << sym;
  }
  // Each unit's scale comes from that unit alone (symmetric: absmax / 7 at 4 bits).
  QParams pg = calibrate_weight(w.data(), rows, cols, 4, true, Granularity::group, 32, Observer::minmax);
  for (int64_t r : {0, 5, 31})
    for (int64_t g = 0; g < 4; ++g) {
      float amax = 0;
      for (int64_t c = g * 32; c < (g + 1) * 32; ++c) amax = std::max(amax, std::abs(w[r * cols + c]));
      EXPECT_FLOAT_EQ(pg.scale[r * 4 + g], amax / 7) << r << " " << g;
    }
}

TEST(QuantizerGranularity, PerTokenUsesEachRowsOwnRangeAtCallTime) {
  const int64_t rows = 6, cols = 40;
  std::vector<float> x = normal(rows * cols, 5);
  for (int64_t c = 0; c < cols; ++c) {
    x[2 * cols + c] = std::abs(x[2 * cols + c]) * 50;  // an all-positive, large row
    x[4 * cols + c] = 0.f;                              // an all-zero row
  }
  for (bool sym : {true, false}) {
    QParams tok;
    tok.bits = 8;
    tok.symmetric = sym;
    tok.gran = Granularity::token;  // no scales: they are computed from x
    std::vector<float> y = fq(x, rows, cols, tok);
    // Same as per-channel params built by hand from each row's min/max.
    QParams pc = token_qparams(x.data(), rows, cols, 8, sym);
    ASSERT_EQ(pc.scale.size(), size_t(rows));
    for (int64_t r = 0; r < rows; ++r) {
      auto [mn, mx] = std::minmax_element(x.begin() + r * cols, x.begin() + (r + 1) * cols);
      float s;
      int32_t z;
      range_to_qparams(*mn, *mx, 8, sym, s, z);
      EXPECT_EQ(pc.scale[r], s);
      EXPECT_EQ(pc.zero[r], z);
    }
    EXPECT_EQ(through_codes(x, rows, cols, pc), y);
    pc.gran = Granularity::channel;
    EXPECT_EQ(fq(x, rows, cols, pc), y);
    // Changing one row changes only that row's output.
    std::vector<float> x2 = x;
    for (int64_t c = 0; c < cols; ++c) x2[cols + c] *= 3;
    std::vector<float> y2 = fq(x2, rows, cols, tok);
    EXPECT_TRUE(std::equal(y.begin() + 2 * cols, y.end(), y2.begin() + 2 * cols));
    EXPECT_TRUE(std::equal(y.begin(), y.begin() + cols, y2.begin()));
  }
}

TEST(QuantizerGranularity, LargeTensorsTakeTheParallelPathWithTheSameResult) {
  const int64_t rows = 256, cols = 512;  // above the OpenMP threshold
  std::vector<float> x = normal(rows * cols, 6);
  QParams p = calibrate_weight(x.data(), rows, cols, 8, false, Granularity::channel, 0, Observer::minmax);
  std::vector<float> whole = fq(x, rows, cols, p), by_row(x.size());
  for (int64_t r = 0; r < rows; ++r) {  // one row at a time stays serial
    QParams pr = p;
    pr.scale = {p.scale[r]};
    pr.zero = {p.zero[r]};
    fake_quantize(x.data() + r * cols, by_row.data() + r * cols, 1, cols, pr);
  }
  EXPECT_EQ(whole, by_row);
  EXPECT_EQ(through_codes(x, rows, cols, p), whole);
}

// ---- observers --------------------------------------------------------------------------------

TEST(QuantizerObserver, ParsesNamesAndRejectsOthers) {
  EXPECT_EQ(parse_observer("minmax"), Observer::minmax);
  EXPECT_EQ(parse_observer("percentile"), Observer::percentile);
  EXPECT_EQ(parse_observer("mse"), Observer::mse);
  for (Observer o : {Observer::minmax, Observer::percentile, Observer::mse})
    EXPECT_EQ(parse_observer(observer_name(o)), o);
  try {
    parse_observer("entropy");
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("entropy"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("minmax, percentile or mse"), std::string::npos);
  }
}

TEST(QuantizerObserver, WeightMseAndPercentileBeatMinmaxOnHeavyTails) {
  const int64_t rows = 16, cols = 512;
  std::vector<float> w = heavy_tailed(rows * cols, 7, 0.05f, 6, 3.f);
  for (bool sym : {true, false})
    for (Granularity g : {Granularity::tensor, Granularity::channel}) {
      auto err = [&](Observer o) {
        QParams p = calibrate_weight(w.data(), rows, cols, 4, sym, g, 0, o);
        return sq_err(fq(w, rows, cols, p), w);
      };
      double mm = err(Observer::minmax), ms = err(Observer::mse);
      EXPECT_LE(ms, mm) << "sym " << sym << " gran " << int(g);
      if (g == Granularity::tensor) EXPECT_LT(ms, mm * 0.95) << "sym " << sym;
    }
  // Percentile ignores the few outliers: its range is far below their magnitude.
  QParams pp = calibrate_weight(w.data(), rows, cols, 8, true, Granularity::tensor, 0,
                                Observer::percentile, 99.9);
  EXPECT_LT(pp.scale[0] * 127, 1.f);
  QParams pm = calibrate_weight(w.data(), rows, cols, 8, true, Granularity::tensor, 0, Observer::minmax);
  EXPECT_FLOAT_EQ(pm.scale[0] * 127, 3.f);
  // Percentile 100 is the plain range.
  QParams p100 = calibrate_weight(w.data(), rows, cols, 8, false, Granularity::tensor, 0,
                                  Observer::percentile, 100.0);
  QParams pmm = calibrate_weight(w.data(), rows, cols, 8, false, Granularity::tensor, 0, Observer::minmax);
  EXPECT_EQ(p100.scale, pmm.scale);
  EXPECT_EQ(p100.zero, pmm.zero);
}

TEST(QuantizerObserver, ActObserverTracksRangeAndKeepsABoundedDeterministicSample) {
  ActObserver a(1000), b(1000);
  std::vector<float> all;
  for (int batch = 0; batch < 10; ++batch) {  // values 0 .. 9999 in order
    std::vector<float> x(1000);
    for (int i = 0; i < 1000; ++i) x[i] = float(batch * 1000 + i);
    all.insert(all.end(), x.begin(), x.end());
    a.observe(x.data(), 10, 100);
    b.observe(x.data(), 10, 100);
  }
  EXPECT_EQ(a.count(), 10000);
  EXPECT_EQ(a.min(), 0.f);
  EXPECT_EQ(a.max(), 9999.f);
  EXPECT_EQ(a.absmax(), 9999.f);
  ASSERT_EQ(a.sample().size(), 1000u);
  EXPECT_EQ(a.sample(), b.sample());  // fixed seed
  // Uniform over the whole stream: about half the kept values come from the second half.
  int64_t late = std::count_if(a.sample().begin(), a.sample().end(), [](float v) { return v >= 5000; });
  EXPECT_GT(late, 420);
  EXPECT_LT(late, 580);
  std::set<float> distinct(a.sample().begin(), a.sample().end());
  EXPECT_EQ(distinct.size(), 1000u);  // no value is kept twice
  // Below capacity the sample is the data itself.
  ActObserver small(1 << 20);
  small.observe(all.data(), 1, 5000);
  EXPECT_EQ(small.sample(), std::vector<float>(all.begin(), all.begin() + 5000));
}

TEST(QuantizerObserver, ActObserverFinalize) {
  ActObserver obs(1 << 16);
  std::vector<float> x = heavy_tailed(200000, 8, 0.1f, 20, 8.f);
  for (int64_t i = 0; i < 4; ++i) obs.observe(x.data() + i * 50000, 50, 1000);
  auto [mn, mx] = std::minmax_element(x.begin(), x.end());
  EXPECT_EQ(obs.min(), *mn);
  EXPECT_EQ(obs.max(), *mx);
  for (bool sym : {true, false}) {
    QParams pm = obs.finalize(8, sym, Observer::minmax);
    QParams want = tensor_params(*mn, *mx, 8, sym);
    EXPECT_EQ(pm.scale, want.scale);
    EXPECT_EQ(pm.zero, want.zero);
    EXPECT_EQ(pm.gran, Granularity::tensor);
    QParams pp = obs.finalize(8, sym, Observer::percentile, 99.9);
    EXPECT_LT(pp.scale[0], pm.scale[0] / 4);  // outliers clipped
    QParams pe = obs.finalize(4, sym, Observer::mse);
    QParams pm4 = obs.finalize(4, sym, Observer::minmax);
    EXPECT_LT(sq_err(fq(x, 1, int64_t(x.size()), pe), x), sq_err(fq(x, 1, int64_t(x.size()), pm4), x));
  }
  EXPECT_TRUE(obs.finalize(16, true, Observer::mse).off());
  ActObserver empty;
  EXPECT_THROW(empty.finalize(8, true, Observer::minmax), Error);
  EXPECT_THROW(obs.finalize(8, true, Observer::percentile, 120.0), Error);
  std::vector<float> bad = {1.f, NAN};
  EXPECT_THROW(obs.observe(bad.data(), 1, 2), Error);
  EXPECT_THROW(ActObserver(0), Error);
}

// ---- log2 -------------------------------------------------------------------------------------

TEST(QuantizerLog2, PowersOfTheBaseTimesScaleRoundTripExactly) {
  for (int tau : {1, 2, 4})
    for (int bits = 2; bits <= 8; ++bits)
      for (float s : {1.f, 0.8f}) {
        Log2Params p{bits, tau, s};
        int cmax = (1 << bits) - 1;
        std::vector<float> x;  // levels below FLT_MIN are subnormal and take the zero code
        for (int c = 0; c < cmax && double(s) * std::exp2(-double(c) / tau) >= FLT_MIN; ++c)
          x.push_back(float(double(s) * std::exp2(-double(c) / tau)));
        std::vector<float> y(x.size());
        std::vector<uint8_t> codes(x.size());
        fake_quantize_log2(x.data(), y.data(), int64_t(x.size()), p);
        quantize_log2(x.data(), codes.data(), int64_t(x.size()), p);
        EXPECT_EQ(y, x) << "tau " << tau << " bits " << bits << " s " << s;
        for (size_t c = 0; c < x.size(); ++c) EXPECT_EQ(codes[c], c);
      }
}

TEST(QuantizerLog2, CodesMatchTheRealValuedDefinition) {
  std::vector<float> x = uniform(20000, 9, 0.f, 1.f);
  for (int tau : {1, 2, 4}) {
    Log2Params p{8, tau, 0.9f};
    std::vector<uint8_t> codes(x.size());
    quantize_log2(x.data(), codes.data(), int64_t(x.size()), p);
    for (size_t i = 0; i < x.size(); ++i) {
      double r = double(x[i] / p.scale);
      double c = r > 0 ? std::nearbyint(-tau * std::log2(r)) : 1e9;
      c = std::clamp(c, 0.0, 255.0);
      ASSERT_EQ(codes[i], int(c)) << "x " << x[i] << " tau " << tau;
    }
  }
}

TEST(QuantizerLog2, LargerTauHasFinerSteps) {
  std::vector<float> x = uniform(10000, 10, 0.01f, 1.f);
  double prev = 1e30;
  for (int tau : {1, 2, 4}) {
    Log2Params p{8, tau, 1.f};
    std::vector<float> y(x.size());
    fake_quantize_log2(x.data(), y.data(), int64_t(x.size()), p);
    double e = sq_err(x, y);
    EXPECT_LT(e, prev / 2) << "tau " << tau;
    prev = e;
    std::set<float> levels(y.begin(), y.end());
    EXPECT_GE(levels.size(), size_t(6 * tau + 1));  // 0.01 .. 1 spans ~6.6 octaves
  }
}

TEST(QuantizerLog2, ClampsCodesAndMapsZeroToZero) {
  Log2Params p{3, 1, 0.5f};  // codes 0..6 -> 0.5 .. 0.5 * 2^-6; code 7 -> 0
  std::vector<float> x = {0.f, -0.2f, 0.9f, 0.5f, 0.5f / 64, 0.5f / 128, 1e-30f, 1e-42f, INFINITY};
  std::vector<float> y(x.size());
  fake_quantize_log2(x.data(), y.data(), int64_t(x.size()), p);
  EXPECT_EQ(y, (std::vector<float>{0.f, 0.f, 0.5f, 0.5f, 0.5f / 64, 0.f, 0.f, 0.f, 0.5f}));
  std::vector<uint8_t> codes(x.size());
  quantize_log2(x.data(), codes.data(), int64_t(x.size()), p);
  EXPECT_EQ(codes, (std::vector<uint8_t>{7, 7, 0, 0, 6, 7, 7, 7, 0}));
  std::vector<float> same = x;  // in place, and 16 bits is a copy
  fake_quantize_log2(same.data(), same.data(), int64_t(same.size()), p);
  EXPECT_EQ(same, y);
  std::vector<float> id(x.size());
  fake_quantize_log2(x.data(), id.data(), int64_t(x.size()), Log2Params{16, 1, 1.f});
  EXPECT_EQ(id, x);
}

TEST(QuantizerLog2, CalibrationPicksAScaleWithinAnOctaveOfTheMaximum) {
  // Softmax rows of random logits: a realistic probability distribution.
  ActObserver obs;
  std::vector<float> logits = normal(64 * 197, 11, 2.f), probs(logits.size());
  for (int r = 0; r < 64; ++r) {
    float* l = logits.data() + r * 197;
    float m = *std::max_element(l, l + 197), sum = 0;
    for (int i = 0; i < 197; ++i) sum += probs[r * 197 + i] = std::exp(l[i] - m);
    for (int i = 0; i < 197; ++i) probs[r * 197 + i] /= sum;
  }
  obs.observe(probs.data(), 64, 197);
  for (int tau : {1, 2}) {
    Log2Params p = calibrate_log2(obs, 4, tau);
    EXPECT_EQ(p.bits, 4);
    EXPECT_EQ(p.tau, tau);
    EXPECT_LE(p.scale, obs.max());
    EXPECT_GE(p.scale, obs.max() * std::exp2(-7.f / 8) * 0.999f);
    std::vector<float> y(probs.size()), ymax(probs.size());
    fake_quantize_log2(probs.data(), y.data(), int64_t(y.size()), p);
    fake_quantize_log2(probs.data(), ymax.data(), int64_t(y.size()), Log2Params{4, tau, obs.max()});
    EXPECT_LE(sq_err(y, probs), sq_err(ymax, probs));
  }
  ActObserver none;
  EXPECT_THROW(calibrate_log2(none, 4, 1), Error);
  EXPECT_THROW(calibrate_log2(obs, 4, 3), Error);
}

// ---- int4 packing ------------------------------------------------------------------------------

TEST(QuantizerPack, FourBitLayoutIsTwoNibblesPerByte) {
  // The 4-bit layout of every earlier version's files: low nibble first, odd count pads with 0.
  std::vector<int8_t> two = {1, -1};
  EXPECT_EQ(pack_bits(two.data(), 2, 4), (std::vector<uint8_t>{0xf1}));
  std::vector<int8_t> three = {-8, 7, -3};
  EXPECT_EQ(pack_bits(three.data(), 3, 4), (std::vector<uint8_t>{0x78, 0x0d}));
  // Codes from a real 4-bit quantisation survive packing.
  std::vector<float> w = normal(99, 12);
  QParams p = tensor_params(-3.f, 3.f, 4, true);
  std::vector<int8_t> q(99), q2(99);
  quantize(w.data(), 1, 99, p, q.data(), nullptr);
  std::vector<uint8_t> pq = pack_bits(q.data(), 99, 4);
  EXPECT_EQ(int64_t(pq.size()), 50);
  unpack_bits(pq.data(), 99, 4, q2.data());
  EXPECT_EQ(q, q2);
  std::vector<int8_t> big = {8};
  EXPECT_THROW(pack_bits(big.data(), 1, 4), Error);
}

TEST(QuantizerPack, BitPackingRoundTripsEveryWidthAndMatchesInt4) {
  std::mt19937 rng(3);
  for (int bits = 2; bits <= 8; ++bits) {
    const int lo = -(1 << (bits - 1)), hi = (1 << (bits - 1)) - 1;
    for (int64_t n : {int64_t(0), int64_t(1), int64_t(7), int64_t(8), int64_t(33), int64_t(192)}) {
      std::vector<int8_t> q(static_cast<size_t>(n));
      for (size_t i = 0; i < q.size(); ++i) q[i] = int8_t(i < 2 ? (i == 0 ? lo : hi) : lo + int(rng() % uint32_t(hi - lo + 1)));
      std::vector<uint8_t> packed = pack_bits(q.data(), n, bits);
      EXPECT_EQ(int64_t(packed.size()), packed_bytes(n, bits));
      EXPECT_EQ(int64_t(packed.size()), (n * bits + 7) / 8);
      std::vector<int8_t> back(static_cast<size_t>(n), 99);
      unpack_bits(packed.data(), n, bits, back.data());
      EXPECT_EQ(back, q) << bits << " bits, n " << n;
      if (bits == 8) EXPECT_TRUE(std::equal(packed.begin(), packed.end(), reinterpret_cast<const uint8_t*>(q.data())));
    }
    std::vector<int8_t> out_of_range = {int8_t(hi + 1 <= 127 ? hi + 1 : 0), int8_t(lo - 1 >= -128 ? lo - 1 : 0)};
    if (bits < 8) EXPECT_THROW(pack_bits(out_of_range.data(), 1, bits), Error) << bits;
    if (bits < 8) EXPECT_THROW(pack_bits(out_of_range.data() + 1, 1, bits), Error) << bits;
  }
  // Layout, by hand: 5-bit {1, -1, 3} = stream 00001 11111 00011 (low bits first):
  // byte 0 = bits 0-7 = 1 | 31 << 5 (low 3 bits: 111) = 0xe1; byte 1 = 31 >> 3 (11) | 3 << 2 = 0x0f.
  std::vector<int8_t> three = {1, -1, 3};
  EXPECT_EQ(pack_bits(three.data(), 3, 5), (std::vector<uint8_t>{0xe1, 0x0f}));
  EXPECT_THROW(pack_bits(three.data(), 3, 1), Error);
  EXPECT_THROW(pack_bits(three.data(), 3, 9), Error);
}

// ---- validation -------------------------------------------------------------------------------

TEST(QuantizerErrors, BadParametersThrow) {
  float s;
  int32_t z;
  for (int bits : {0, 1, 9, 15, 17, 32}) {
    EXPECT_THROW(range_to_qparams(-1.f, 1.f, bits, true, s, z), Error) << bits;
    EXPECT_THROW(check_bits(bits), Error);
  }
  EXPECT_THROW(range_to_qparams(1.f, -1.f, 8, true, s, z), Error);
  EXPECT_THROW(range_to_qparams(NAN, 1.f, 8, true, s, z), Error);
  EXPECT_THROW(range_to_qparams(-1.f, INFINITY, 8, false, s, z), Error);
  EXPECT_THROW(range_to_qparams(-3e38f, 3e38f, 8, false, s, z), Error);

  std::vector<float> x(4 * 12, 0.5f), y(x.size());
  QParams p = tensor_params(-1.f, 1.f, 8, true);
  p.bits = 9;
  EXPECT_THROW(fake_quantize(x.data(), y.data(), 4, 12, p), Error);
  p = tensor_params(-1.f, 1.f, 8, true);
  p.gran = Granularity::channel;  // 1 scale for 4 rows
  EXPECT_THROW(fake_quantize(x.data(), y.data(), 4, 12, p), Error);
  p.gran = Granularity::group;
  p.group = 5;  // does not divide 12
  p.scale.assign(8, 1.f);
  p.zero.assign(8, 0);
  EXPECT_THROW(fake_quantize(x.data(), y.data(), 4, 12, p), Error);
  p.group = 0;
  EXPECT_THROW(fake_quantize(x.data(), y.data(), 4, 12, p), Error);
  p.group = 6;
  EXPECT_NO_THROW(fake_quantize(x.data(), y.data(), 4, 12, p));
  p.zero.assign(7, 0);  // zero count mismatch
  EXPECT_THROW(fake_quantize(x.data(), y.data(), 4, 12, p), Error);
  p.zero.clear();  // symmetric may omit zeros
  EXPECT_NO_THROW(fake_quantize(x.data(), y.data(), 4, 12, p));
  p.scale[3] = -1.f;
  EXPECT_THROW(fake_quantize(x.data(), y.data(), 4, 12, p), Error);
  p.scale[3] = 1.f;
  p.zero.assign(8, 3);  // symmetric with a nonzero zero point
  EXPECT_THROW(fake_quantize(x.data(), y.data(), 4, 12, p), Error);

  QParams a = tensor_params(-1.f, 1.f, 8, false);
  a.zero[0] = 256;
  EXPECT_THROW(fake_quantize(x.data(), y.data(), 4, 12, a), Error);
  a = tensor_params(-1.f, 1.f, 8, false);
  std::vector<int8_t> qs(x.size());
  std::vector<uint8_t> qu(x.size());
  EXPECT_THROW(quantize(x.data(), 4, 12, a, qs.data(), nullptr), Error);  // wrong signedness
  EXPECT_THROW(quantize(x.data(), 4, 12, a, nullptr, nullptr), Error);
  EXPECT_THROW(quantize(x.data(), 4, 12, a, qs.data(), qu.data()), Error);
  EXPECT_NO_THROW(quantize(x.data(), 4, 12, a, nullptr, qu.data()));
  QParams tok;
  tok.gran = Granularity::token;  // quantize needs the per-row scales spelled out
  EXPECT_THROW(quantize(x.data(), 4, 12, tok, qs.data(), nullptr), Error);
  std::vector<float> inf_row = x;
  inf_row[13] = INFINITY;
  EXPECT_THROW(fake_quantize(inf_row.data(), y.data(), 4, 12, tok), Error);

  EXPECT_THROW(fake_quantize_log2(x.data(), y.data(), 4, Log2Params{4, 3, 1.f}), Error);
  EXPECT_THROW(fake_quantize_log2(x.data(), y.data(), 4, Log2Params{4, 1, 0.f}), Error);
  EXPECT_THROW(fake_quantize_log2(x.data(), y.data(), 4, Log2Params{1, 1, 1.f}), Error);

  EXPECT_THROW(calibrate_weight(x.data(), 4, 12, 8, true, Granularity::token, 0, Observer::minmax), Error);
  EXPECT_THROW(calibrate_weight(x.data(), 4, 12, 8, true, Granularity::group, 5, Observer::mse), Error);
  EXPECT_THROW(calibrate_weight(x.data(), 4, 12, 1, true, Granularity::tensor, 0, Observer::mse), Error);
  EXPECT_THROW(calibrate_weight(x.data(), 4, 12, 8, true, Granularity::tensor, 0,
                                Observer::percentile, 10.0), Error);
  std::vector<float> nan_w = x;
  nan_w[7] = NAN;
  EXPECT_THROW(calibrate_weight(nan_w.data(), 4, 12, 8, true, Granularity::channel, 0, Observer::minmax), Error);
}

// The run-time activation quantisers (kernels/quantize_act.h) multiply by 1/s and fall back to
// the true division only near rounding boundaries; their codes must still be exactly
// clamp(round_half_even(x / s) + z): checked on values placed at, and a few ulps around, every
// half-integer quotient, for several scales and row lengths with and without a partial vector.
TEST(ActivationCodes, EqualTheTrueDivisionAtRoundingBoundaries) {
  std::vector<float> x;
  for (float s : {1.f / 255.f, 0.1f, 0.0371f, 3.f / 7.f}) {
    x.clear();
    for (int k = -140; k <= 140; ++k) {
      const float tie = (float(k) + 0.5f) * s;
      float lo = tie, hi = tie;
      x.push_back(tie);
      for (int u = 0; u < 4; ++u) {
        lo = std::nextafter(lo, -INFINITY);
        hi = std::nextafter(hi, INFINITY);
        x.push_back(lo);
        x.push_back(hi);
      }
    }
    for (int64_t n : {int64_t(x.size()), int64_t(197), int64_t(16), int64_t(5)}) {
      std::vector<uint8_t> q(static_cast<size_t>(n));
      std::vector<int8_t> q8(static_cast<size_t>(n));
      for (int bits : {8, 4}) {
        const int32_t qmax = (1 << bits) - 1, zero = qmax / 2, lim = (1 << (bits - 1)) - 1;
        vs::kernels::quantize_u8_row(x.data(), q.data(), n, s, zero, bits);
        vs::kernels::quantize_s8(x.data(), q8.data(), 1, n, n, s, bits);
        for (int64_t c = 0; c < n; ++c) {
          const int32_t k = int32_t(std::nearbyint(x[size_t(c)] / s));
          ASSERT_EQ(int32_t(q[size_t(c)]), std::clamp(k + zero, 0, qmax)) << "s " << s << " x " << x[size_t(c)];
          ASSERT_EQ(int32_t(q8[size_t(c)]), std::clamp(k, -lim, lim)) << "s " << s << " x " << x[size_t(c)];
        }
      }
    }
  }
}
