// Low-rank compression: exactness at full rank, activation-aware beats plain SVD on the
// activation-weighted error, rank-deficient inputs are safe, compensation refits to the
// compressed inputs, the allocators meet the budget, low-rank (and low-rank + quantised) layers
// and models save, load and run, and bad options are rejected.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>

#include "compress/lowrank/allocate.h"
#include "compress/lowrank/circuits.h"
#include "compress/lowrank/factorize.h"
#include "compress/lowrank/lowrank.h"
#include "compress/lowrank/mlp_units.h"
#include "compress/lowrank/sensitivity.h"
#include "core/error.h"
#include "nn/lowrank_linear.h"
#include "nn/quant_linear.h"
#include "test_util.h"
#include "train_util.h"

using namespace vs;
using compress::Mat;

namespace {

Mat random_mat(int64_t r, int64_t c, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> nd;
  Mat m(r, c);
  for (int64_t i = 0; i < r; ++i)
    for (int64_t j = 0; j < c; ++j) m(i, j) = nd(rng);
  return m;
}

// Rows with strongly correlated, unequal-variance features (like real activations).
Mat correlated_inputs(int64_t rows, int64_t in, unsigned seed) {
  Mat mix = random_mat(in, in, seed + 1);
  for (int64_t j = 0; j < in; ++j) mix.row(j) *= std::pow(0.8, double(j));
  return random_mat(rows, in, seed) * mix;
}

// Feeds row-major float copies of X' and X to `m`, `batch` rows at a time.
void add_in_batches(compress::PairedMoments& m, const Mat& Xc, const Mat& X, int64_t batch) {
  using RowF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const RowF fc = Xc.cast<float>(), fx = X.cast<float>();
  for (int64_t i = 0; i < Xc.rows(); i += batch) {
    const int64_t n = std::min(batch, Xc.rows() - i);
    m.add(fc.data() + i * fc.cols(), fx.data() + i * fx.cols(), n);
  }
}

double output_error(const Mat& X, const Mat& W, const compress::Factors& f) {
  return (X * W.transpose() - X * (f.A * f.B).transpose()).squaredNorm();
}

}  // namespace

TEST(LowRank, FullRankReproducesWeights) {
  const Mat W = random_mat(24, 16, 1), X = correlated_inputs(100, 16, 2);
  const Mat C = X.transpose() * X;
  for (const Mat* c : {static_cast<const Mat*>(nullptr), &C}) {
    auto s = compress::output_spectrum(W, c);
    ASSERT_EQ(s.basis.cols(), 16);
    auto f = compress::factorize(W, s, 16);
    EXPECT_LT((f.A * f.B - W).cwiseAbs().maxCoeff(), 1e-9);
    EXPECT_EQ(s.error_at(16), 0.0);
  }
}

TEST(LowRank, ActivationAwareBeatsPlainSvdOnOutputError) {
  const Mat W = random_mat(40, 32, 3), X = correlated_inputs(400, 32, 4);
  const Mat C = X.transpose() * X;
  for (int64_t r : {4, 8, 16}) {
    auto aware = compress::output_spectrum(W, &C), plain = compress::output_spectrum(W, nullptr);
    double e_aware = output_error(X, W, compress::factorize(W, aware, r));
    double e_svd = output_error(X, W, compress::factorize(W, plain, r));
    EXPECT_LT(e_aware, 0.9 * e_svd) << "rank " << r;
    EXPECT_NEAR(e_aware, aware.error_at(r), 1e-6 * e_aware) << "predicted error = measured error";
    // Plain SVD is optimal for the weights themselves: a sanity check of the baseline.
    EXPECT_LE((W - [&] { auto f = compress::factorize(W, plain, r); return Mat(f.A * f.B); }()).squaredNorm(),
              plain.error_at(r) * (1 + 1e-9));
  }
}

TEST(LowRank, RankDeficientInputsAreSafe) {
  const Mat W = random_mat(20, 32, 5), X = correlated_inputs(10, 32, 6);  // 10 rows < 32 inputs
  const Mat C = X.transpose() * X;
  auto s = compress::output_spectrum(W, &C);
  ASSERT_TRUE(s.basis.allFinite() && s.energy.allFinite());
  auto f = compress::factorize(W, s, 10);  // rank of X: the output is reproduced exactly
  ASSERT_TRUE(f.A.allFinite() && f.B.allFinite());
  EXPECT_LT(output_error(X, W, f), 1e-9 * (X * W.transpose()).squaredNorm());
}

// The compensation's target is the layer's own FP32 weights on the compressed inputs X' (moments
// of X' paired with itself): at full rank it gives W back (no shrinkage), at lower ranks it fits
// X' W^T + b at least as well as the factors fitted on the FP32 inputs. Fitting X' to the FP32
// outputs X W^T instead shrinks the weights (regression dilution) - why that target was dropped.
TEST(LowRank, CompensationTargetsTheLayerOnTheCompressedInputs) {
  const Mat W = random_mat(30, 24, 17), X = correlated_inputs(600, 24, 18);
  const Mat Xc = X + 0.3 * random_mat(600, 24, 19);
  const compress::Vec b = random_mat(30, 1, 20).col(0);
  compress::PairedMoments self(24), fp32(24);
  add_in_batches(self, Xc, Xc, 128);
  add_in_batches(fp32, Xc, X, 128);
  const Mat C = X.transpose() * X;
  const Mat Y = (Xc * W.transpose()).rowwise() + b.transpose();
  for (int64_t r : {6, 12, 24}) {
    auto plain = compress::factorize(W, compress::output_spectrum(W, &C), r);
    const double before = ((Xc * (plain.A * plain.B).transpose()).rowwise() + b.transpose() - Y).squaredNorm();
    auto fit = compress::refit_low_rank(W, b, self, r, 1e-9);
    const double after = ((Xc * (fit.f.A * fit.f.B).transpose()).rowwise() + fit.bias.transpose() - Y).squaredNorm();
    EXPECT_LE(after, before * (1 + 1e-9) + 1e-9) << "rank " << r;
  }
  const auto full = compress::refit_low_rank(W, b, self, 24, 1e-9), diluted = compress::refit_low_rank(W, b, fp32, 24, 1e-9);
  EXPECT_LT((full.f.A * full.f.B - W).norm(), 1e-4 * W.norm());
  EXPECT_GT((diluted.f.A * diluted.f.B - W).norm(), 0.05 * W.norm());
}

TEST(LowRank, RefitUsesTheCompressedInputs) {
  // X' = X + noise (what earlier compressed layers feed); target Y = X W^T + b.
  const Mat W = random_mat(30, 24, 7), X = correlated_inputs(600, 24, 8);
  const Mat Xc = X + 0.3 * random_mat(600, 24, 9);
  const compress::Vec b = random_mat(30, 1, 10).col(0);
  compress::PairedMoments m(24);
  add_in_batches(m, Xc, X, 128);
  const Mat Y = (X * W.transpose()).rowwise() + b.transpose();
  const Mat C = X.transpose() * X;
  for (int64_t r : {6, 12, 24}) {
    auto plain = compress::factorize(W, compress::output_spectrum(W, &C), r);
    double before = ((Xc * (plain.A * plain.B).transpose()).rowwise() + b.transpose() - Y).squaredNorm();
    auto fit = compress::refit_low_rank(W, b, m, r, 1e-6);
    double after = ((Xc * (fit.f.A * fit.f.B).transpose()).rowwise() + fit.bias.transpose() - Y).squaredNorm();
    EXPECT_LT(after, before) << "rank " << r;  // the optimum over rank r and bias: never worse
    if (r == 24) EXPECT_LT(after, 0.6 * before) << "full rank: plain least squares on X'";
  }
}

TEST(LowRank, PairedMomentsKeepPrecisionWhenTheMeanDwarfsTheSpread) {
  // ViT activations have channels whose mean is ~100x their spread. Summing raw float products
  // and centring at the end (the first version) lost the centred moments to cancellation; the
  // per-batch centring and Chan's update must match a float64 two-pass computation.
  const int64_t rows = 4000, in = 8;
  Mat X = 0.05 * random_mat(rows, in, 21), Xc = X + 0.01 * random_mat(rows, in, 22);
  for (int64_t j = 0; j < in; ++j) {
    X.col(j).array() += 30.0 * double(j + 1);  // mean 30 .. 240, spread 0.05
    Xc.col(j).array() += 30.0 * double(j + 1) + 0.5;
  }
  // The float32 values are what the model feeds; the reference uses exactly those values.
  const Mat Xf = X.cast<float>().cast<double>(), Xcf = Xc.cast<float>().cast<double>();
  const compress::Vec mc = Xcf.colwise().mean().transpose(), mx = Xf.colwise().mean().transpose();
  const Mat Zc = Xcf.rowwise() - mc.transpose(), Zx = Xf.rowwise() - mx.transpose();
  const Mat cc = Zc.transpose() * Zc, cx = Zc.transpose() * Zx;
  compress::PairedMoments m(in);
  add_in_batches(m, Xc, X, 333);  // uneven batches, the last one short
  EXPECT_EQ(m.rows, rows);
  EXPECT_LT((m.mean_c - mc).cwiseAbs().maxCoeff(), 1e-9 * mc.cwiseAbs().maxCoeff());
  EXPECT_LT((m.cc - cc).norm(), 1e-4 * cc.norm()) << "centred X'^T X'";
  EXPECT_LT((m.cx - cx).norm(), 1e-4 * cx.norm()) << "centred X'^T X";
}

TEST(LowRank, MeanKlOfLogits) {
  Tensor a({2, 3}), b({2, 3});
  const float va[] = {1, 2, 3, 0, 0, 0}, vb[] = {1, 2, 3, std::log(2.f), 0, 0};
  std::copy(va, va + 6, a.f32());
  std::copy(vb, vb + 6, b.f32());
  // Row 0 identical (KL 0); row 1: p uniform, q = (1/2, 1/4, 1/4): KL = sum 1/3 log((1/3)/q).
  const double row1 = (std::log((1.0 / 3) / 0.5) + 2 * std::log((1.0 / 3) / 0.25)) / 3;
  EXPECT_NEAR(compress::mean_kl(a, b), row1 / 2, 1e-7);
  EXPECT_NEAR(compress::mean_kl(a, a), 0.0, 1e-12);
  EXPECT_THROW(compress::mean_kl(a, Tensor({3, 2})), Error);
  const auto rows = compress::row_kl(a, b);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_NEAR(rows[0], 0.0, 1e-12);
  EXPECT_NEAR(rows[1], row1, 1e-7);
  EXPECT_THROW(compress::row_kl(a, Tensor({3, 2})), Error);
}

TEST(LowRank, PairedDifferenceOfPerImageLosses) {
  // b - a = {1, 2, 3, 6}: mean 3, sample variance (4 + 1 + 0 + 9) / 3, SE = sqrt(var / 4).
  const std::vector<double> a{1, 1, 2, 0}, b{2, 3, 5, 6};
  const auto d = compress::paired_difference(a, b);
  EXPECT_DOUBLE_EQ(d.mean, 3.0);
  EXPECT_NEAR(d.se, std::sqrt(14.0 / 3 / 4), 1e-12);
  EXPECT_NEAR(d.z(), 3.0 / std::sqrt(14.0 / 3 / 4), 1e-12);
  // The images' shared difficulty cancels: adding any per-image offset to both changes nothing.
  const auto shifted = compress::paired_difference({101, 11, 2002, 7}, {102, 13, 2005, 13});
  EXPECT_DOUBLE_EQ(shifted.mean, d.mean);
  EXPECT_NEAR(shifted.se, d.se, 1e-9);
  EXPECT_EQ(compress::paired_difference({1}, {2}).se, 0.0);
  EXPECT_EQ(compress::paired_difference({1}, {2}).z(), 0.0);
  EXPECT_THROW(compress::paired_difference({1, 2}, {1}), Error);
  EXPECT_THROW(compress::paired_difference({}, {}), Error);
}

TEST(LowRank, AllocatorsMeetTheBudget) {
  // Four layers with different spectra; "error" is the tail of a geometric spectrum.
  std::vector<compress::RankCandidate> layers;
  const std::vector<std::pair<int64_t, int64_t>> shapes{{192, 576}, {192, 192}, {192, 768}, {768, 192}};
  for (size_t i = 0; i < shapes.size(); ++i) {
    const double decay = 0.9 + 0.02 * double(i);
    layers.push_back(compress::RankCandidate::linear(shapes[i].first, shapes[i].second, 1.0,
                                                     [decay](int64_t r) { return std::pow(decay, double(r)); }));
  }
  double total = 0;
  for (auto& l : layers) total += l.full_units;
  for (double keep : {0.9, 0.6, 0.3}) {
    const double to_save = (1 - keep) * total;
    for (bool greedy : {true, false}) {
      auto ranks = greedy ? compress::allocate_greedy(layers, to_save) : compress::allocate_uniform(layers, to_save);
      double saved = 0, err = 0;
      for (size_t i = 0; i < layers.size(); ++i) {
        EXPECT_LE(ranks[i], layers[i].max_rank);
        saved += compress::saved_units(layers[i], ranks[i]);
        err += ranks[i] ? layers[i].error(ranks[i]) : 0;
      }
      EXPECT_GE(saved, to_save) << "keep " << keep << (greedy ? " greedy" : " uniform");
      EXPECT_LE(saved, to_save + 2 * (192 + 768)) << "and not much more";
    }
  }
  // A square 192 x 192 layer saves nothing at rank >= 96; a 1 x N layer never saves.
  EXPECT_EQ(compress::max_saving_rank(192, 192), 95);
  EXPECT_EQ(compress::max_saving_rank(1, 50), 0);
  EXPECT_THROW(compress::allocate_greedy(layers, total), Error);  // cannot remove everything
  EXPECT_TRUE(compress::allocate_greedy(layers, 0) == std::vector<int64_t>(4, 0));
}

TEST(LowRank, GreedyPrefersTheLayerThatLosesLess) {
  // Same shapes; layer 0's spectrum decays fast (cheap to cut), layer 1's is flat.
  std::vector<compress::RankCandidate> layers{
      compress::RankCandidate::linear(64, 64, 1.0, [](int64_t r) { return std::pow(0.5, double(r)); }),
      compress::RankCandidate::linear(64, 64, 1.0, [](int64_t r) { return 1.0 - double(r) / 64.0; })};
  auto ranks = compress::allocate_greedy(layers, 0.3 * 2 * 64 * 64);
  EXPECT_GT(ranks[0], 0) << "the fast-decaying layer is cut";
  EXPECT_EQ(ranks[1], 0) << "the flat layer stays dense";
}

TEST(LowRank, LayerSaveLoadRoundTripDenseAndQuantisedFactors) {
  nn::set_exec_mode(nn::ExecMode::integer);
  Tensor B = test::random_tensor({5, 33}, 11, 0.2f), A = test::random_tensor({16, 5}, 12, 0.2f);
  Tensor bias = test::random_tensor({16}, 13);
  nn::LowRankLinear l(std::make_unique<nn::DenseLinear>(B, Tensor()), std::make_unique<nn::DenseLinear>(A, bias));
  EXPECT_EQ(l.rank(), 5);
  EXPECT_EQ(l.num_params(), 5 * 33 + 16 * 5 + 16);
  EXPECT_EQ(l.macs_per_row(), 5 * 33 + 16 * 5);
  Tensor x = test::random_tensor({7, 33}, 14);
  // Two GEMMs = one GEMM with the product A B.
  Tensor W({16, 33});
  for (int64_t o = 0; o < 16; ++o)
    for (int64_t i = 0; i < 33; ++i)
      for (int64_t k = 0; k < 5; ++k) W.f32()[o * 33 + i] += A.f32()[o * 5 + k] * B.f32()[k * 33 + i];
  nn::DenseLinear full(W, bias);
  for (auto ep : {nn::Epilogue::none, nn::Epilogue::gelu})
    EXPECT_LT(test::max_abs_diff(l.forward(x, ep), full.forward(x, ep)), 1e-5f);

  StateDict sd;
  l.save("blk.fc", sd);
  EXPECT_TRUE(sd.count("blk.fc.down.weight") && sd.count("blk.fc.up.weight") && sd.count("blk.fc.up.bias"));
  EXPECT_FALSE(sd.count("blk.fc.down.bias"));
  nn::ParamReader p(sd, "mem");
  p.linear_specs["blk.fc"].rank = 5;
  auto back = nn::load_layer(p, "blk.fc", 16, 33, true);
  p.check_all_used();
  EXPECT_EQ(back->kind(), "lowrank");
  EXPECT_EQ(test::max_abs_diff(back->forward(x), l.forward(x)), 0.f);

  // Quantised factors: each factor is a QuantLinear listed under its own name.
  auto* lr = dynamic_cast<nn::LowRankLinear*>(back.get());
  ASSERT_NE(lr, nullptr);
  for (auto* slot : {&lr->down, &lr->up}) {
    auto* d = dynamic_cast<nn::DenseLinear*>(slot->get());
    Tensor ws({d->out_features()});
    for (int64_t o = 0; o < ws.numel(); ++o) ws.f32()[o] = 0.01f;
    *slot = nn::QuantLinear::from_dense(*d, ws, 7, {8, true, 1.f, 0});
  }
  StateDict q;
  lr->save("blk.fc", q);
  nn::ParamReader pq(q, "mem");
  pq.linear_specs["blk.fc"].rank = 5;
  pq.linear_specs["blk.fc.down"] = {7, 8, true, 0};
  pq.linear_specs["blk.fc.up"] = {7, 8, true, 0};
  auto qback = nn::load_layer(pq, "blk.fc", 16, 33, true);
  pq.check_all_used();
  auto* qlr = dynamic_cast<nn::LowRankLinear*>(qback.get());
  ASSERT_NE(qlr, nullptr);
  EXPECT_EQ(qlr->down->kind(), lr->down->kind());
  EXPECT_EQ(test::max_abs_diff(qback->forward(x), lr->forward(x)), 0.f);

  // A rank larger than the layer allows is a clear error.
  nn::ParamReader bad(sd, "mem");
  bad.linear_specs["blk.fc"].rank = 40;
  EXPECT_THROW(nn::load_layer(bad, "blk.fc", 16, 33, true), Error);
}

TEST(LowRankCli, BadOptionsAreRejected) {
  test::TempDir tmp;
  const std::string m = test::have_shared() ? test::vit_tiny_dir() : tmp / "none";
  const std::string base = test::cli() + " lowrank " + m + " --calib " + tmp.path.string() + " --out " + (tmp / "o");
  for (std::string opts : {" --params 0", " --params 1.5", " --flops -0.2", " --params 0.8 --flops 0.8", "",
                           " --params 0.8 --allocation best", " --params 0.8 --factorization qr",
                           " --params 0.8 --qk-fit attention --no-circuits", " --params 0.8 --qk-fit softmax",
                           " --params 0.8 --qk-fit attention --factorization svd", " --params 0.8 --refine-last cls"}) {
    int st = 0;
    std::string out = test::run_output(base + opts, &st);
    EXPECT_NE(st, 0) << opts << ": " << out;
    EXPECT_NE(out.find("error"), std::string::npos) << opts << ": " << out;
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << "one line: " << out;
    EXPECT_FALSE(std::filesystem::exists(tmp / "o"));
  }
}

// End to end on ViT-Ti with 4 calibration images: lowrank -> info -> classify -> quantize -> info.
TEST(LowRankCli, LowRankThenQuantizeEndToEnd) {
  if (!test::have_shared()) GTEST_SKIP() << "../shared ViT-Ti checkpoint or imagenet-sample absent";
  test::TempDir tmp;
  const std::string d = test::imagenet_dir(), m = test::vit_tiny_dir();
  std::ofstream(tmp / "calib.txt") << "n01560419_bulbul.JPEG\nn01580077_jay.JPEG\nn01669191_box_turtle.JPEG\n"
                                      "n01440764_tench.JPEG\n";
  int st = 0;
  const std::string cmd = test::cli() + " lowrank " + m + " --params 0.9 --calib " + d + " --split " +
                          (tmp / "calib.txt") + " --calib-batch 4 --allocation greedy --rank-error kl --sensitivity-images 1 --compensation --refine-steps 20 --out ";
  std::string out = test::run_output(cmd + (tmp / "lr"), &st);
  ASSERT_EQ(st, 0) << out;
  out = test::run_output(cmd + (tmp / "lr2"), &st);  // determinism: byte-identical
  ASSERT_EQ(st, 0) << out;
  EXPECT_EQ(test::run("cmp -s " + (tmp / "lr/model.safetensors") + " " + (tmp / "lr2/model.safetensors")), 0);

  auto cfg = nlohmann::json::parse(std::ifstream(tmp / "lr/config.json"));
  ASSERT_TRUE(cfg.contains("lowrank"));
  const auto& attn = cfg["lowrank"]["attention_circuits"];
  ASSERT_EQ(attn.size(), 12u) << "every block's attention as circuits";
  const double before = cfg["lowrank"]["params"]["before"], after = cfg["lowrank"]["params"]["after"];
  EXPECT_LE(after, 0.9 * before);
  EXPECT_GE(after, 0.89 * before);
  EXPECT_EQ(cfg["lowrank"]["refinement"]["blocks"].size(), 12u) << "every block refined";
  // The head sees 4 pooled rows for 192 inputs: left dense (cut, it lost most of top-1).
  EXPECT_FALSE(cfg["lowrank"]["layers"].contains("head"));
  EXPECT_TRUE(cfg["lowrank"]["kept_dense"].contains("head"));
  const auto& mlps = cfg["lowrank"]["mlp_units"];
  ASSERT_EQ(mlps.size(), 12u) << "every block's MLP as hidden units";
  // KL probes for every candidate: patch_embed (qkv / proj are circuits, fc1 / fc2 MLP units),
  // 12 blocks x 3 heads x (q/k, v/o), and 12 MLPs.
  EXPECT_EQ(cfg["lowrank"]["sensitivity"].size(), 1u + 72u + 12u);
  for (auto& [name, probes] : cfg["lowrank"]["sensitivity"].items()) {
    const bool circuit = name.find(".head") != std::string::npos, mlp = name.find(".mlp.units") != std::string::npos;
    // Linear layers: 4 budgets, all reachable at 90 %; circuits: 6/8 .. 1/8 of the head width;
    // MLPs: 7/8 .. 2/8 of the hidden width.
    ASSERT_EQ(probes.size(), circuit ? 5u : mlp ? 6u : 4u) << name;
    int64_t lowest = probes[0]["rank"];
    for (auto& p : probes) {
      EXPECT_LE(p["rank"].get<int64_t>(), lowest) << name << ": probes by falling rank";
      lowest = p["rank"];
    }
    // Greedy never goes below the lowest probed rank (no extrapolation).
    if (cfg["lowrank"]["layers"].contains(name))
      EXPECT_GE(cfg["lowrank"]["layers"][name]["rank"].get<int64_t>(), lowest) << name;
    if (circuit) {  // blocks.N.attn.headH.qk / .ov
      const size_t dot = name.find(".head");
      const auto& widths = attn[name.substr(0, dot)][name.substr(dot + 7) == "qk" ? "qk_rank" : "v_rank"];
      const int64_t r = widths[size_t(name[dot + 5] - '0')];
      EXPECT_TRUE(r == 64 || r >= lowest) << name << " " << r;
    }
    if (mlp) {  // blocks.N.mlp.units
      const int64_t r = mlps[name.substr(0, name.size() - 6)]["hidden"];
      EXPECT_TRUE(r == 768 || r >= lowest) << name << " " << r;
    }
  }
  out = test::run_output(test::cli() + " info " + (tmp / "lr"), &st);
  ASSERT_EQ(st, 0) << out;
  EXPECT_NE(out.find("head widths"), std::string::npos) << out;  // the circuits' per-head ranks
  for (size_t b = 0; b < 12; ++b) {  // and the MLPs' widths, which the saved fc1 / fc2 have
    const int64_t hidden = mlps["blocks." + std::to_string(b) + ".mlp"]["hidden"];
    EXPECT_NE(out.find(fmt::format("block {:>2}   ", b)), std::string::npos) << out;
    EXPECT_NE(out.find(fmt::format("mlp hidden {}\n", hidden)), std::string::npos) << out;
    EXPECT_NE(out.find(fmt::format("{:<26} {:<8} {:>6}", "blocks." + std::to_string(b) + ".mlp.fc2", "dense", hidden)),
              std::string::npos)
        << out;
  }
  if (!cfg["lowrank"]["layers"].empty()) {
    EXPECT_NE(out.find("low-rank layer"), std::string::npos) << out;
    EXPECT_NE(out.find(".down"), std::string::npos) << out;
  }
  out = test::run_output(test::cli() + " classify " + (tmp / "lr") + " " + d + "/n01440764_tench.JPEG --top 1", &st);
  EXPECT_EQ(st, 0);
  EXPECT_NE(out.find(" 0  class 0"), std::string::npos) << out;

  // Low rank (uniform ranks, no compensation or refinement - compensated on 4 images, the factors
  // interpolate 788 rows for 768 inputs and the W8A8 model misclassifies), then W8A8: both factors
  // of every low-rank layer get quantised, and the attention operands too (ptq observes them on
  // the output of "...attn.qkv.up" in a low-rank model).
  // (A MAC budget here: the circuits' q k^T and P v products count too.)
  out = test::run_output(test::cli() + " lowrank " + m + " --flops 0.9 --calib " + d + " --split " + (tmp / "calib.txt") +
                             " --calib-batch 4 --allocation uniform --no-compensation --refine-steps 0 --keep-dense blocks.0.attn.qkv "
                             "blocks.1.mlp.fc2 --out " +
                             (tmp / "lrd"),
                         &st);
  ASSERT_EQ(st, 0) << out;
  cfg = nlohmann::json::parse(std::ifstream(tmp / "lrd/config.json"));
  const double macs0 = cfg["lowrank"]["macs_per_image"]["before"], macs1 = cfg["lowrank"]["macs_per_image"]["after"];
  EXPECT_LE(macs1, 0.9 * macs0);
  EXPECT_GE(macs1, 0.89 * macs0);
  // --keep-dense of block 0's qkv keeps its attention out of the circuits (its proj is a Linear).
  EXPECT_TRUE(cfg["lowrank"]["kept_dense"].contains("blocks.0.attn.qkv"));
  EXPECT_EQ(cfg["lowrank"]["attention_circuits"].size(), 11u);
  EXPECT_FALSE(cfg["lowrank"]["attention_circuits"].contains("blocks.0.attn"));
  // --keep-dense of block 1's fc2 keeps its MLP out of the MLP units (its fc1 is a Linear); the
  // other MLPs are narrower (uniform: each keeps the same fraction).
  EXPECT_TRUE(cfg["lowrank"]["kept_dense"].contains("blocks.1.mlp.fc2"));
  EXPECT_EQ(cfg["lowrank"]["mlp_units"].size(), 11u);
  EXPECT_FALSE(cfg["lowrank"]["mlp_units"].contains("blocks.1.mlp"));
  EXPECT_LT(cfg["lowrank"]["mlp_units"]["blocks.0.mlp"]["hidden"].get<int64_t>(), 768);
  out = test::run_output(test::cli() + " quantize " + (tmp / "lrd") + " --calib " + d + " --split " +
                             (tmp / "calib.txt") + " --out " + (tmp / "lrq"),
                         &st);
  ASSERT_EQ(st, 0) << out;
  auto qcfg = nlohmann::json::parse(std::ifstream(tmp / "lrq/config.json"));
  std::string some = cfg["lowrank"]["layers"].begin().key();
  EXPECT_TRUE(qcfg["quantization"]["layers"].contains(some + ".down"));
  EXPECT_TRUE(qcfg["quantization"]["layers"].contains(some + ".up"));
  EXPECT_EQ(qcfg["lowrank"]["layers"][some]["rank"], cfg["lowrank"]["layers"][some]["rank"]);
  ASSERT_TRUE(qcfg["quantization"]["attention"].contains("blocks.0.attn")) << qcfg["quantization"].dump();
  EXPECT_LT(qcfg["quantization"]["attention"]["blocks.0.attn"]["q_bits"].get<int>(), 16);
  out = test::run_output(test::cli() + " classify " + (tmp / "lrq") + " " + d + "/n01440764_tench.JPEG --top 1", &st);
  EXPECT_EQ(st, 0);
  EXPECT_NE(out.find(" 0  class 0"), std::string::npos) << out;
  // Low rank on an already low-rank or quantised model is refused.
  out = test::run_output(test::cli() + " lowrank " + (tmp / "lrq") + " --params 0.8 --calib " + d + " --split " +
                             (tmp / "calib.txt") + " --out " + (tmp / "again"),
                         &st);
  EXPECT_NE(st, 0);
  EXPECT_NE(out.find("not dense"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(tmp / "again"));
}

// Attention circuits (compress/lowrank/circuits.h), checked against a plain Eigen attention.
namespace {

// Row-wise softmax of scores s [queries, keys], in place.
void softmax_rows(Mat& s) {
  for (int64_t i = 0; i < s.rows(); ++i) {
    s.row(i) = (s.row(i).array() - s.row(i).maxCoeff()).exp();
    s.row(i) /= s.row(i).sum();
  }
}

struct AttnOut {
  Mat y, proj_in;  // output [B*N, out], proj's input [B*N, v_total]
};

AttnOut eigen_attention(const Mat& X, const Mat& qkv_w, const compress::Vec& qkv_b, const Mat& proj_w,
                        const compress::Vec& proj_b, const kernels::HeadLayout& l, double scale, int64_t B, int64_t N) {
  Mat qkv = X * qkv_w.transpose();
  if (qkv_b.size()) qkv.rowwise() += qkv_b.transpose();
  AttnOut o{Mat::Zero(X.rows(), proj_w.rows()), Mat::Zero(X.rows(), l.v_total())};
  for (int64_t b = 0; b < B; ++b) {
    int64_t qo = 0, vo = 0;
    for (size_t h = 0; h < l.qk_dim.size(); ++h) {
      const Mat q = qkv.block(b * N, qo, N, l.qk_dim[h]), k = qkv.block(b * N, l.qk_total() + qo, N, l.qk_dim[h]);
      Mat s = (q * k.transpose() * scale);
      softmax_rows(s);
      o.proj_in.block(b * N, vo, N, l.v_dim[h]) = s * qkv.block(b * N, 2 * l.qk_total() + vo, N, l.v_dim[h]);
      qo += l.qk_dim[h];
      vo += l.v_dim[h];
    }
  }
  o.y = o.proj_in * proj_w.transpose();
  o.y.rowwise() += proj_b.transpose();
  return o;
}

struct RandomAttention {
  int64_t C = 24, B = 3, N = 40;
  kernels::HeadLayout layout{{8, 8, 8}, {8, 8, 8}};
  Mat X, qkv_w, proj_w, xtx, yty;
  compress::Vec qkv_b, proj_b, xsum;
  explicit RandomAttention(unsigned seed) {
    X = correlated_inputs(B * N, C, seed);
    X.rowwise() += random_mat(1, C, seed + 7).row(0);  // a mean, like LayerNorm outputs with a bias
    qkv_w = random_mat(3 * C, C, seed + 2) * 0.3;
    qkv_b = random_mat(3 * C, 1, seed + 3).col(0) * 0.5;
    proj_w = random_mat(C, C, seed + 4) * 0.3;
    proj_b = random_mat(C, 1, seed + 5).col(0);
    xtx = X.transpose() * X;
    xsum = X.colwise().sum().transpose();
    const Mat y = eigen_attention(X, qkv_w, qkv_b, proj_w, proj_b, layout, 0.35, B, N).proj_in;
    yty = y.transpose() * y;
  }
  compress::AttentionCircuits circuits(bool aware = true) const {
    return compress::attention_circuits(qkv_w, qkv_b, proj_w, proj_b, layout, xtx, xsum, double(X.rows()), yty, aware);
  }
  AttnOut run(const compress::AttentionWeights& w) const {
    return eigen_attention(X, w.qkv_w, w.qkv_b, w.proj_w, w.proj_b, w.layout, 0.35, B, N);
  }
  // Summed squared error of head h's scores over all pairs of rows (what the q/k cut minimises).
  double score_error(const compress::AttentionWeights& w, size_t h) const {
    auto scores = [&](const Mat& qkv_w_, const compress::Vec& b, const kernels::HeadLayout& l) {
      Mat qkv = X * qkv_w_.transpose();
      qkv.rowwise() += b.transpose();
      int64_t qo = 0;
      for (size_t j = 0; j < h; ++j) qo += l.qk_dim[j];
      return Mat(qkv.middleCols(qo, l.qk_dim[h]) * qkv.middleCols(l.qk_total() + qo, l.qk_dim[h]).transpose());
    };
    return (scores(qkv_w, qkv_b, layout) - scores(w.qkv_w, w.qkv_b, w.layout)).squaredNorm();
  }
};

double tail(const compress::Vec& e, int64_t r) { return e.tail(e.size() - r).sum(); }

}  // namespace

TEST(LowRankCircuits, FullRankIsTheSameAttention) {
  RandomAttention a(3);
  const auto c = a.circuits();
  const Mat ref = a.run({a.qkv_w, a.proj_w, a.qkv_b, a.proj_b, a.layout}).y;
  for (bool pad : {true, false}) {
    const auto w = compress::attention_at(c, a.layout.qk_dim, a.layout.v_dim, pad);
    EXPECT_EQ(w.layout.qk_dim, a.layout.qk_dim);
    EXPECT_LT((a.run(w).y - ref).cwiseAbs().maxCoeff(), 1e-8 * ref.cwiseAbs().maxCoeff()) << "pad " << pad;
  }
}

TEST(LowRankCircuits, CutsAreTheBestFitsOfScoresAndOutputs) {
  RandomAttention a(5);
  const auto c = a.circuits(), plain = a.circuits(false);
  const std::vector<int64_t> full = a.layout.qk_dim;
  for (int64_t r : {2, 5}) {
    for (size_t h = 0; h < 3; ++h) {
      // q/k of head h cut to r: the summed squared score error is the tail of its spectrum, and
      // below plain SVD's (C = I) cut to the same rank.
      std::vector<int64_t> qk = full;
      qk[h] = r;
      const auto w = compress::attention_at(c, qk, full, false);
      EXPECT_EQ(w.layout.qk_dim[h], r);
      EXPECT_EQ(w.qkv_w.rows(), 3 * a.C - 2 * (8 - r));
      const double err = a.score_error(w, h);
      EXPECT_NEAR(err, tail(c.heads[h].qk_energy, r), 1e-6 * c.heads[h].qk_energy.sum()) << "head " << h << " r " << r;
      EXPECT_LT(err, a.score_error(compress::attention_at(plain, qk, full, false), h)) << "head " << h << " r " << r;
      // Padding with zero rows is the same attention as dropping them (what the KL probes run).
      const Mat y = a.run(w).y;
      EXPECT_LT((a.run(compress::attention_at(c, qk, full, true)).y - y).cwiseAbs().maxCoeff(), 1e-9);

      // v/o of head h cut to r: the output error is the tail of its spectrum.
      std::vector<int64_t> v = full;
      v[h] = r;
      const auto wv = compress::attention_at(c, full, v, false);
      EXPECT_EQ(wv.proj_w.cols(), a.C - (8 - r));
      const Mat ref = a.run({a.qkv_w, a.proj_w, a.qkv_b, a.proj_b, a.layout}).y;
      EXPECT_NEAR((a.run(wv).y - ref).squaredNorm(), tail(c.heads[h].ov_energy, r), 1e-6 * c.heads[h].ov_energy.sum());
    }
  }
  EXPECT_THROW(compress::attention_at(c, {9, 8, 8}, full, false), Error);
  EXPECT_THROW(compress::attention_at(c, {8, 8}, full, false), Error);
}

// The softmax-aware q/k fit (circuits.h, KeyWeights): its statistics are the attention every key
// receives, at full rank it is the same attention, and a cut is the best fit of the
// attention-weighted, per-query-centred score error (the tail of its spectrum, below the uniform
// fit's error in that metric).
TEST(LowRankCircuits, AttentionWeightedKeysFitWhatTheSoftmaxSees) {
  RandomAttention a(7);
  using RowF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  Mat qkv = a.X * a.qkv_w.transpose();
  qkv.rowwise() += a.qkv_b.transpose();
  const RowF xf = a.X.cast<float>(), qkvf = qkv.cast<float>();
  compress::KeyWeights keys;  // two batches: images 0-1, then image 2
  keys.add(xf.data(), qkvf.data(), 2, a.N, a.C, a.layout, 0.35f);
  keys.add(xf.data() + 2 * a.N * a.C, qkvf.data() + 2 * a.N * qkv.cols(), 1, a.N, a.C, a.layout, 0.35f);

  const auto c = compress::attention_circuits(a.qkv_w, a.qkv_b, a.proj_w, a.proj_b, a.layout, a.xtx, a.xsum,
                                              double(a.X.rows()), a.yty, true, &keys);
  const auto uniform = a.circuits();
  const std::vector<int64_t> full = a.layout.qk_dim;
  const Mat ref = a.run({a.qkv_w, a.proj_w, a.qkv_b, a.proj_b, a.layout}).y;
  EXPECT_LT((a.run(compress::attention_at(c, full, full, false)).y - ref).cwiseAbs().maxCoeff(),
            1e-8 * ref.cwiseAbs().maxCoeff());

  for (size_t h = 0; h < 3; ++h) {
    // a_j: the column sums of the head's softmax probabilities, image by image.
    const Mat q = qkv.middleCols(8 * int64_t(h), 8), k = qkv.middleCols(24 + 8 * int64_t(h), 8);
    compress::Vec att = compress::Vec::Zero(a.X.rows());
    for (int64_t b = 0; b < a.B; ++b) {
      Mat s = q.middleRows(b * a.N, a.N) * k.middleRows(b * a.N, a.N).transpose() * 0.35;
      softmax_rows(s);
      att.segment(b * a.N, a.N) = s.colwise().sum().transpose();
    }
    const compress::Vec mu = a.X.transpose() * att / att.sum();
    const Mat Xc = a.X.rowwise() - mu.transpose();
    const Mat Ck = Xc.transpose() * att.asDiagonal() * Xc;
    EXPECT_LT((keys.centred(h) - Ck).norm(), 1e-5 * Ck.norm()) << "head " << h;

    // The metric: sum over queries i and keys j of a_j (d_ij - sum_j' a_j' d_ij' / sum a)^2, d the
    // score error (all pairs of rows, as the uniform fit's).
    auto weighted_error = [&](const compress::AttentionCircuits& cc, int64_t r) {
      std::vector<int64_t> qk = full;
      qk[h] = r;
      const auto w = compress::attention_at(cc, qk, full, false);
      Mat qkv2 = a.X * w.qkv_w.transpose();
      qkv2.rowwise() += w.qkv_b.transpose();
      int64_t qo = 0;
      for (size_t j = 0; j < h; ++j) qo += w.layout.qk_dim[j];
      const Mat s2 = qkv2.middleCols(qo, r) * qkv2.middleCols(w.layout.qk_total() + qo, r).transpose();
      Mat d = q * k.transpose() - s2;
      const compress::Vec shift = d * att / att.sum();
      d.colwise() -= shift;
      return (d.array().square().rowwise() * att.transpose().array()).sum();
    };
    for (int64_t r : {2, 5}) {
      const double err = weighted_error(c, r);
      EXPECT_NEAR(err, tail(c.heads[h].qk_energy, r), 1e-4 * c.heads[h].qk_energy.sum()) << "head " << h << " r " << r;
      EXPECT_LT(err, weighted_error(uniform, r)) << "head " << h << " r " << r;
    }
  }
}

// MLP units (compress/lowrank/mlp_units.h), checked against the MLP computed directly.
namespace {

struct RandomMlp {
  int64_t in = 6, hidden = 16, out = 5, rows = 300;
  Mat X, w1, w2;
  compress::Vec b1, b2;
  explicit RandomMlp(unsigned seed) {
    X = correlated_inputs(rows, in, seed);
    w1 = random_mat(hidden, in, seed + 2) * 0.5;
    b1 = random_mat(hidden, 1, seed + 3).col(0) * 0.3;
    w2 = random_mat(out, hidden, seed + 4) * 0.4;
    b2 = random_mat(out, 1, seed + 5).col(0);
    w1.row(3) = w1.row(11);  // a duplicate unit: with fc2 refitted, losing one of the pair costs nothing
    b1(3) = b1(11);
  }
  Mat hidden_of(const Mat& w, const compress::Vec& b) const {  // GELU(X w^T + b)
    Mat h = X * w.transpose();
    h.rowwise() += b.transpose();
    return h.unaryExpr([](double v) { return 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0))); });
  }
  Mat run(const Mat& w1_, const compress::Vec& b1_, const Mat& w2_, const compress::Vec& b2_) const {
    Mat y = hidden_of(w1_, b1_) * w2_.transpose();
    y.rowwise() += b2_.transpose();
    return y;
  }
  Mat run(const compress::MlpWeights& w) const { return run(w.w1, w.b1, w.w2, w.b2); }
  compress::Moments moments() const {
    using RowF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    const RowF h = hidden_of(w1, b1).cast<float>();
    compress::Moments m;
    for (int64_t i = 0; i < rows; i += 64) m.add(h.data() + i * hidden, std::min<int64_t>(64, rows - i), hidden);
    return m;
  }
  // Squared error of the best least-squares fit (bias free) of the MLP's output from the units `kept`.
  double best_fit_error(const std::vector<int64_t>& kept) const {
    const Mat h = hidden_of(w1, b1), y = run(w1, b1, w2, b2);
    Mat A(rows, int64_t(kept.size()) + 1);
    for (size_t j = 0; j < kept.size(); ++j) A.col(int64_t(j)) = h.col(kept[j]);
    A.col(A.cols() - 1).setOnes();
    return (A * A.colPivHouseholderQr().solve(y) - y).squaredNorm();
  }
};

}  // namespace

TEST(LowRankMlpUnits, NarrowerMlpsAreLeastSquaresFitsOfTheOriginal) {
  const RandomMlp a(11);
  const auto u = compress::mlp_units(a.w1, a.b1, a.w2, a.b2, a.moments(), 1e-9);
  const Mat ref = a.run(a.w1, a.b1, a.w2, a.b2);
  const double energy = (ref.rowwise() - ref.colwise().mean()).squaredNorm();
  EXPECT_NEAR(u.energy, energy, 1e-4 * energy);
  ASSERT_EQ(u.order.size(), 16u);
  // At full width the MLP is unchanged; the duplicate unit goes first, at no cost.
  EXPECT_LT((a.run(compress::mlp_at(u, 16, false)) - ref).cwiseAbs().maxCoeff(), 1e-4 * ref.cwiseAbs().maxCoeff());
  EXPECT_TRUE(u.order[0] == 3 || u.order[0] == 11) << u.order[0];
  EXPECT_LT(u.error(1), 1e-5 * energy);
  for (int64_t r : {12, 8, 4}) {
    const auto w = compress::mlp_at(u, r, false);
    ASSERT_EQ(w.w1.rows(), r);
    ASSERT_EQ(w.w2.cols(), r);
    // fc1 keeps original rows (in their order): the kept units.
    std::vector<int64_t> kept;
    for (int64_t j = 0; j < r; ++j)
      for (int64_t i = 0; i < 16; ++i)
        if (w.w1.row(j) == a.w1.row(i) && w.b1(j) == a.b1(i) && (kept.empty() || i > kept.back())) {
          kept.push_back(i);
          break;
        }
    ASSERT_EQ(int64_t(kept.size()), r) << "fc1's rows are the kept units' rows";
    // The output error is the removal order's error, and that of the least-squares fit from the
    // kept units (fc2 refitted, bias included) ...
    const double err = (a.run(w) - ref).squaredNorm();
    EXPECT_NEAR(err, u.error(16 - r), 1e-4 * energy) << r;
    EXPECT_NEAR(err, a.best_fit_error(kept), 1e-4 * energy) << r;
    EXPECT_GT(err, 1e-3 * energy) << r;
    // ... well below the same units with fc2's original columns, and below random sets of r units.
    Mat w2_kept(a.out, r);
    for (int64_t j = 0; j < r; ++j) w2_kept.col(j) = a.w2.col(kept[size_t(j)]);
    EXPECT_LT(err, 0.5 * (a.run(w.w1, w.b1, w2_kept, a.b2) - ref).squaredNorm()) << r;
    std::mt19937 rng(r);
    double random_mean = 0;
    for (int t = 0; t < 20; ++t) {
      std::vector<int64_t> all(16);
      std::iota(all.begin(), all.end(), 0);
      std::shuffle(all.begin(), all.end(), rng);
      all.resize(size_t(r));
      random_mean += a.best_fit_error(all) / 20;
    }
    EXPECT_LT(err, random_mean) << r;
    // Padding (all units, zero fc2 columns for the removed ones) is the same MLP (the KL probes).
    const auto p = compress::mlp_at(u, r, true);
    EXPECT_EQ(p.w2.cols(), 16);
    EXPECT_LT((a.run(p) - a.run(w)).cwiseAbs().maxCoeff(), 1e-9);
  }
  for (int64_t k = 1; k <= 16; ++k) EXPECT_GE(u.error(k), u.error(k - 1));
  EXPECT_THROW(compress::mlp_at(u, 0, false), Error);
  EXPECT_THROW(compress::mlp_at(u, 17, false), Error);
  EXPECT_THROW(compress::mlp_units(a.w1, a.b1, a.w2.leftCols(15), a.b2, a.moments(), 1e-9), Error);
}

// --factorization svd (the ablation's data-free column) with MLP units: the units are chosen by the
// norm of their fc2 column alone and the kept columns are not refitted (only the ridge's shrink).
TEST(LowRankMlpUnits, PlainSvdKeepsTheUnitsWithTheLargestFc2Columns) {
  test::TempDir tmp;
  const auto images = test::random_images(tmp, 8);
  const models::ViT fp = test::tiny_vit(5);
  models::ViT m = models::ViT::from_state_dict(fp.cfg, fp.state_dict(), "copy");
  compress::LowRankSettings s;
  s.fraction = 0.85;
  s.activation_aware = false;
  s.mixed = false;
  s.circuits = false;
  s.compensate = false;
  s.refine_iters = 0;
  s.batch = 4;
  compress::lowrank_model(m, s, images, false);
  auto weight = [](const std::unique_ptr<nn::Linear>& l) {
    auto* d = dynamic_cast<const nn::DenseLinear*>(l.get());
    EXPECT_NE(d, nullptr);
    return d->weight();
  };
  int narrowed = 0;
  for (size_t b = 0; b < m.blocks.size(); ++b) {
    const Tensor w1 = weight(fp.blocks[b].mlp.fc1), w2 = weight(fp.blocks[b].mlp.fc2);
    const Tensor n1 = weight(m.blocks[b].mlp.fc1), n2 = weight(m.blocks[b].mlp.fc2);
    const int64_t hidden = w1.dim(0), in = w1.dim(1), out = w2.dim(0), r = n1.dim(0);
    if (r == hidden) continue;
    ++narrowed;
    std::vector<double> norm(size_t(hidden), 0.0);
    for (int64_t o = 0; o < out; ++o)
      for (int64_t j = 0; j < hidden; ++j) norm[size_t(j)] += std::pow(w2.f32()[o * hidden + j], 2);
    std::vector<int64_t> by_norm(static_cast<size_t>(hidden));
    std::iota(by_norm.begin(), by_norm.end(), 0);
    std::sort(by_norm.begin(), by_norm.end(), [&](int64_t x, int64_t y) { return norm[size_t(x)] > norm[size_t(y)]; });
    std::vector<int64_t> kept(by_norm.begin(), by_norm.begin() + r);
    std::sort(kept.begin(), kept.end());
    for (int64_t j = 0; j < r; ++j) {
      const int64_t u = kept[size_t(j)];
      for (int64_t c = 0; c < in; ++c) EXPECT_EQ(n1.f32()[j * in + c], w1.f32()[u * in + c]) << "block " << b << " unit " << u;
      for (int64_t o = 0; o < out; ++o) EXPECT_NEAR(n2.f32()[o * r + j], w2.f32()[o * hidden + u], 1e-3f);
    }
  }
  EXPECT_EQ(narrowed, int(m.blocks.size()));
}
