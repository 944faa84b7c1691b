// GPTQ (compress/quant/gptq.h): exact codes on the given scales, the output error it reports is
// the one measured directly on the inputs, it beats round-to-nearest on correlated inputs, and
// with uncorrelated inputs there is nothing to compensate (it is round-to-nearest).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "compress/quant/gptq.h"
#include "compress/quant/ptq.h"
#include "core/error.h"
#include "io/preprocess.h"
#include "models/load.h"
#include "nn/exec_mode.h"
#include "test_util.h"

using namespace vs;

namespace {

struct Problem {
  Tensor w;                  // [out, in]
  std::vector<float> scale;  // [out]
  Eigen::MatrixXd X;         // [rows, in]
};

// Inputs with correlated channels (a random mixing of a few factors plus noise) and channels of
// very different energy, like a LayerNorm output; scales from each row's max |w| at `bits`.
Problem make_problem(int64_t out, int64_t in, int64_t rows, int bits, bool correlated, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> nd(0.0, 1.0);
  Problem p;
  p.w = Tensor::empty({out, in});
  for (int64_t i = 0; i < out * in; ++i) p.w.f32()[i] = float(nd(rng));
  const double lim = (1 << (bits - 1)) - 1;
  for (int64_t o = 0; o < out; ++o) {
    double mx = 0;
    for (int64_t i = 0; i < in; ++i) mx = std::max(mx, double(std::fabs(p.w.f32()[o * in + i])));
    p.scale.push_back(float(mx / lim));
  }
  p.X = Eigen::MatrixXd(rows, in);
  if (correlated) {
    const int64_t f = 4;
    Eigen::MatrixXd F(rows, f), Mix(f, in);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < f; ++j) F(r, j) = nd(rng);
    for (int64_t j = 0; j < f; ++j)
      for (int64_t i = 0; i < in; ++i) Mix(j, i) = nd(rng) * (1.0 + double(i % 5));
    p.X = F * Mix;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < in; ++i) p.X(r, i) += 0.1 * nd(rng);
  } else {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < in; ++i) p.X(r, i) = nd(rng);
  }
  return p;
}

// ||X W^T - X Q^T||^2 computed directly.
double direct_error(const Problem& p, const Tensor& q) {
  const int64_t out = p.w.dim(0), in = p.w.dim(1);
  Eigen::MatrixXd E(out, in);
  for (int64_t i = 0; i < out * in; ++i) E(i / in, i % in) = double(p.w.f32()[i]) - double(q.f32()[i]);
  return (p.X * E.transpose()).squaredNorm();
}

// Every weight is an integer code in range times its row's scale.
void expect_exact_codes(const Tensor& q, const std::vector<float>& scale, int bits) {
  const int64_t out = q.dim(0), in = q.dim(1);
  const double lim = (1 << (bits - 1)) - 1;
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i) {
      const double c = double(q.f32()[o * in + i]) / double(scale[size_t(o)]);
      ASSERT_NEAR(c, std::nearbyint(c), 1e-4) << o << "," << i;
      ASSERT_LE(std::fabs(std::nearbyint(c)), lim);
    }
}

}  // namespace

TEST(Gptq, BeatsRoundToNearestOnCorrelatedInputsAndReportsTheDirectError) {
  for (int bits : {3, 4}) {
    Problem p = make_problem(24, 48, 400, bits, true, 7);
    const Eigen::MatrixXd H = p.X.transpose() * p.X;
    quant::GptqResult r = quant::gptq_quantize(p.w, p.scale.data(), bits, H);
    expect_exact_codes(r.weight, p.scale, bits);
    // The reported errors are the measured ones (independently: on X, not through H).
    EXPECT_NEAR(r.error_gptq, direct_error(p, r.weight), 1e-6 * direct_error(p, r.weight));
    Tensor rtn = Tensor::empty({24, 48});
    for (int64_t i = 0; i < 24 * 48; ++i) {
      const float s = p.scale[size_t(i / 48)];
      const float lim = float((1 << (bits - 1)) - 1);
      rtn.f32()[i] = std::clamp(std::nearbyint(p.w.f32()[i] * (1.f / s)), -lim, lim) * s;
    }
    EXPECT_NEAR(r.error_rtn, direct_error(p, rtn), 1e-6 * direct_error(p, rtn));
    EXPECT_LT(r.error_gptq, 0.5 * r.error_rtn) << bits << " bits";
  }
}

TEST(Gptq, UncorrelatedInputsLeaveNothingToCompensate) {
  // A diagonal Gram: U is diagonal, no column's error reaches another - round to nearest.
  Problem p = make_problem(8, 16, 10, 4, false, 3);
  Eigen::MatrixXd H = Eigen::MatrixXd::Zero(16, 16);
  for (int64_t i = 0; i < 16; ++i) H(i, i) = 1.0 + double(i);
  quant::GptqResult r = quant::gptq_quantize(p.w, p.scale.data(), 4, H);
  EXPECT_DOUBLE_EQ(r.error_gptq, r.error_rtn);
  for (int64_t i = 0; i < 8 * 16; ++i) {
    const float s = p.scale[size_t(i / 16)];
    EXPECT_EQ(r.weight.f32()[i], std::clamp(std::nearbyint(p.w.f32()[i] * (1.f / s)), -7.f, 7.f) * s) << i;
  }
}

TEST(Gptq, RejectsAGramOfTheWrongSize) {
  Problem p = make_problem(4, 8, 10, 4, false, 1);
  EXPECT_THROW(quant::gptq_quantize(p.w, p.scale.data(), 4, Eigen::MatrixXd::Identity(6, 6)), Error);
}

// In quantize_model: every quantised Linear reports its GPTQ error below round to nearest, the
// model runs integer == simulated and reloads to the same logits.
TEST(Gptq, TinyModelQuantisesSavesAndRunsExactly) {
  test::TempDir tmp;
  models::ViT m = models::load_model(test::write_tiny_model(tmp));
  auto images = test::random_images(tmp, 6);
  quant::PtqSettings s;
  s.wbits = 4;
  s.abits = 8;
  s.gptq = true;
  auto section = quant::quantize_model(m, s, images, false);
  int n = 0;
  for (auto& [name, l] : section["layers"].items()) {
    ASSERT_TRUE(l.contains("gptq")) << name;
    EXPECT_LE(l["gptq"]["output_error"].get<double>(), l["gptq"]["output_error_rtn"].get<double>() * (1 + 1e-9)) << name;
    ++n;
  }
  EXPECT_GT(n, 0);
  models::save_model(tmp / "q", m, {{"quantization", section}});
  models::ViT back = models::load_model(tmp / "q");
  Tensor x = load_batch(images, m.cfg.pre);
  Tensor y = m.forward(x);
  EXPECT_EQ(test::max_abs_diff(y, back.forward(x)), 0.f);
  nn::set_exec_mode(nn::ExecMode::simulated);
  EXPECT_EQ(test::max_abs_diff(y, back.forward(x)), 0.f);
  nn::set_exec_mode(nn::ExecMode::integer);
}
