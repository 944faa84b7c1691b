// Structured pruning: the dependency graph never leaves a mismatched shape, pruning nothing
// changes nothing, removing q/k pairs, value channels and MLP units is exactly the same as zeroing
// their weights (so uneven heads run correctly), --target-flops reaches its budget, pruned model
// folders load and compose with quantisation, and bad options fail cleanly.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>
#include <tuple>

#include "compress/capture.h"
#include "compress/prune/graph.h"
#include "core/error.h"
#include "compress/prune/prune.h"
#include "compress/prune/scores.h"
#include "compress/prune/taylor.h"
#include "compress/quant/ptq.h"
#include "models/load.h"
#include "models/registry.h"
#include "test_util.h"

using namespace vs;

namespace {

struct Variant {
  bool distilled = false, avg_pool = false, layer_scale = false;
};

// A random small ViT (embed 48, 3 heads, depth 2, 32x32 images of 8x8 patches, 10 classes).
models::ViT random_vit(const Variant& v, unsigned seed) {
  models::ViTConfig c = models::vit_config_for_arch(v.distilled ? "deit_tiny_distilled_patch8_32" : "vit_tiny_patch8_32");
  c.embed_dim = 48;
  c.depth = 2;
  c.num_heads = 3;
  c.num_classes = 10;
  if (v.avg_pool) c.global_pool = "avg";
  const int64_t C = c.embed_dim, T = c.num_tokens(), H = 4 * C, P = c.patch_size;
  StateDict sd;
  unsigned s = seed;
  auto rnd = [&](Shape sh, float sd_, float mean = 0.f) {
    Tensor t = test::random_tensor(std::move(sh), s++, sd_);
    for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] += mean;
    return t;
  };
  sd["cls_token"] = rnd({1, 1, C}, 0.5f);
  if (v.distilled) sd["dist_token"] = rnd({1, 1, C}, 0.5f);
  sd["pos_embed"] = rnd({1, T, C}, 0.5f);
  sd["patch_embed.proj.weight"] = rnd({C, 3, P, P}, 0.05f);
  sd["patch_embed.proj.bias"] = rnd({C}, 0.1f);
  for (int b = 0; b < 2; ++b) {
    std::string p = "blocks." + std::to_string(b) + ".";
    for (auto n : {"norm1.", "norm2."}) {
      sd[p + n + "weight"] = rnd({C}, 0.1f, 1.f);
      sd[p + n + "bias"] = rnd({C}, 0.1f);
    }
    sd[p + "attn.qkv.weight"] = rnd({3 * C, C}, 0.3f);
    sd[p + "attn.qkv.bias"] = rnd({3 * C}, 0.1f);
    sd[p + "attn.proj.weight"] = rnd({C, C}, 0.15f);
    sd[p + "attn.proj.bias"] = rnd({C}, 0.1f);
    sd[p + "mlp.fc1.weight"] = rnd({H, C}, 0.15f);
    sd[p + "mlp.fc1.bias"] = rnd({H}, 0.1f);
    sd[p + "mlp.fc2.weight"] = rnd({C, H}, 0.08f);
    sd[p + "mlp.fc2.bias"] = rnd({C}, 0.1f);
    if (v.layer_scale) {
      sd[p + "ls1.gamma"] = rnd({C}, 0.1f, 0.5f);
      sd[p + "ls2.gamma"] = rnd({C}, 0.1f, 0.5f);
    }
  }
  std::string fin = v.avg_pool ? "fc_norm." : "norm.";
  sd[fin + "weight"] = rnd({C}, 0.1f, 1.f);
  sd[fin + "bias"] = rnd({C}, 0.1f);
  sd["head.weight"] = rnd({10, C}, 0.2f);
  sd["head.bias"] = rnd({10}, 0.1f);
  if (v.distilled) {
    sd["head_dist.weight"] = rnd({10, C}, 0.2f);
    sd["head_dist.bias"] = rnd({10}, 0.1f);
  }
  return models::ViT::from_state_dict(c, sd, "random model");
}

Tensor images(int64_t b, unsigned seed) { return test::random_tensor({b, 3, 32, 32}, seed); }

// A random subset of each group (at least one index), optionally leaving embed and heads whole.
prune::Plan random_plan(const prune::Graph& g, std::mt19937& rng, bool touch_embed) {
  prune::Plan p = prune::keep_all(g);
  for (size_t i = 0; i < g.groups.size(); ++i) {
    if (!touch_embed && g.groups[i].kind == prune::DimKind::embed) continue;
    auto& k = p.keep[i];
    if (k.empty()) continue;  // a head removed earlier
    std::vector<int64_t> kept;
    std::bernoulli_distribution coin(0.6);
    for (int64_t j : k)
      if (coin(rng)) kept.push_back(j);
    if (kept.empty() && g.groups[i].kind != prune::DimKind::qk) kept.push_back(k[size_t(rng() % k.size())]);
    k = kept;
  }
  return p;
}

// The original model with the weights of every index the plan removes set to zero (q/k, v and
// MLP dimensions only: zeroing those is exactly removing them).
models::ViT zeroed(const models::ViT& m, const prune::Graph& g, const prune::Plan& plan) {
  StateDict sd = m.state_dict();
  for (auto& [k, t] : sd) t = t.clone();
  for (size_t i = 0; i < g.groups.size(); ++i) {
    std::vector<char> keep(size_t(g.groups[i].size), 0);
    for (int64_t j : plan.keep[i]) keep[size_t(j)] = 1;
    for (auto& sl : g.groups[i].slots) {
      if (sl.tensor.find("proj.weight") != std::string::npos || sl.tensor.find("fc2.weight") != std::string::npos)
        continue;  // zeroing the producing rows is enough
      Tensor& t = sd.at(sl.tensor);
      const int64_t inner = t.numel() / t.dim(0);
      for (int64_t j = 0; j < g.groups[i].size; ++j)
        if (!keep[size_t(j)]) std::fill(t.f32() + (sl.offset + j) * inner, t.f32() + (sl.offset + j + 1) * inner, 0.f);
    }
  }
  return models::ViT::from_state_dict(m.cfg, sd, "zeroed model");
}

}  // namespace

TEST(Prune, NothingPrunedChangesNothing) {
  for (auto method : {prune::Method::l1, prune::Method::snp, prune::Method::taylor})
    for (auto comp : {prune::Compensation::none, prune::Compensation::mean, prune::Compensation::refit}) {
      auto m = random_vit({}, 1);
      Tensor x = images(2, 7);
      prune::PruneSettings s;
      s.method = method;
      s.compensation = comp;
      auto r = prune::prune_model(m, s, {images(4, 3)}, false);
      EXPECT_EQ(r.model.num_params(), m.num_params());
      EXPECT_EQ(r.model.macs_per_image(), m.macs_per_image());
      EXPECT_EQ(test::max_abs_diff(r.model.forward(x), m.forward(x)), 0.f)
          << prune::method_name(method) << " " << prune::compensation_name(comp);
    }
}

TEST(Prune, RemovingQkVMlpEqualsZeroingThem) {
  std::mt19937 rng(5);
  auto m = random_vit({}, 2);
  auto g = prune::build_graph(m);
  Tensor x = images(3, 8);
  for (int trial = 0; trial < 4; ++trial) {
    auto plan = random_plan(g, rng, false);
    prune::drop_dead_heads(g, plan);
    auto pruned = prune::apply_plan(m, g, plan);
    EXPECT_FALSE(pruned.blocks[0].attn.heads.uniform());
    EXPECT_LT(pruned.num_params(), m.num_params());
    EXPECT_EQ(prune::plan_macs(m, g, plan), pruned.macs_per_image());
    Tensor y = pruned.forward(x), ref = zeroed(m, g, plan).forward(x);
    EXPECT_LT(test::max_abs_diff(y, ref), 1e-4f) << "trial " << trial;
  }
}

// Every kind of dimension (embedding included), every model variant: the pruned model loads
// through the normal shape-checking loader, runs, round-trips through a model folder and can be
// pruned again.
TEST(Prune, GraphNeverLeavesMismatchedShapes) {
  std::mt19937 rng(11);
  test::TempDir tmp;
  for (Variant v : {Variant{}, Variant{true, false, false}, Variant{false, true, true}}) {
    auto m = random_vit(v, 3);
    auto g = prune::build_graph(m);
    auto plan = random_plan(g, rng, true);
    plan.keep[size_t(g.find(prune::DimKind::v, 1, 0))].clear();  // a whole head goes
    prune::drop_dead_heads(g, plan);
    EXPECT_TRUE(plan.keep[size_t(g.find(prune::DimKind::qk, 1, 0))].empty());
    models::ViT pruned = prune::apply_plan(m, g, plan);
    EXPECT_EQ(pruned.cfg.embed_dim, int64_t(plan.keep[size_t(g.find(prune::DimKind::embed))].size()));
    EXPECT_EQ(pruned.blocks[1].attn.heads.v_dim[0], 0);
    EXPECT_EQ(prune::plan_macs(m, g, plan), pruned.macs_per_image());
    Tensor x = images(2, 9), y = pruned.forward(x);
    models::save_model(tmp / "p", pruned, nlohmann::json::object());
    auto back = models::load_model(tmp / "p");
    EXPECT_EQ(test::max_abs_diff(back.forward(x), y), 0.f);
    auto g2 = prune::build_graph(back);  // prune the pruned model again
    auto again = prune::apply_plan(back, g2, random_plan(g2, rng, true));
    EXPECT_LT(again.num_params(), back.num_params());
  }
}

// A hidden unit or value channel that is constant over the tokens is removed exactly when its
// mean is folded into the next bias (mean), and also by the least-squares refit (refit).
TEST(Prune, CompensationIsExactForConstantUnits) {
  auto m = random_vit({}, 8);
  StateDict sd = m.state_dict();
  for (auto& [k, t] : sd) t = t.clone();
  const int64_t C = 48;
  for (int64_t c = 0; c < C; ++c) {
    sd["blocks.0.mlp.fc1.weight"].f32()[5 * C + c] = 0.f;          // hidden unit 5: gelu(bias)
    sd["blocks.1.attn.qkv.weight"].f32()[(2 * C + 20) * C + c] = 0.f;  // v channel 20: bias
  }
  auto z = models::ViT::from_state_dict(m.cfg, sd, "constant units");
  auto g = prune::build_graph(z);
  auto plan = prune::keep_all(g);
  auto drop = [&](int gi, int64_t j) { std::erase(plan.keep[size_t(gi)], j); };
  drop(g.find(prune::DimKind::mlp, 0), 5);
  drop(g.find(prune::DimKind::v, 1, 1), 20 - 16);
  Tensor x = images(16, 3);  // 272 token rows: a unique refit of the 192 MLP units
  auto st = prune::collect_stats(z, {x}, false);
  Tensor y0 = z.forward(x);
  EXPECT_GT(test::max_abs_diff(y0, prune::apply_plan(z, g, plan).forward(x)), 1e-3f);  // removal alone changes it
  for (auto c : {prune::Compensation::mean, prune::Compensation::refit}) {
    auto pruned = prune::apply_plan(z, g, plan);
    prune::compensate(z, g, plan, st, c, 1e-7, pruned);
    EXPECT_LT(test::max_abs_diff(y0, pruned.forward(x)), 1e-4f) << prune::compensation_name(c);
  }
}

// Inter-head redundancy, made exact: head 2 attends like head 0 (same q/k rows) and its value
// channel 40 duplicates channel 8 of head 0; MLP unit 9 duplicates unit 100. Under refit, SNP removes a copy first (its cost is zero: the
// other copy takes over its proj / fc2 column) and the refitted model equals the original;
// without refit, removing a copy changes the output.
TEST(Prune, RefitRemovesDuplicatedChannelsFirstAndExactly) {
  auto m = random_vit({}, 9);
  StateDict sd = m.state_dict();
  for (auto& [k, t] : sd) t = t.clone();
  const int64_t C = 48;
  auto copy_row = [&](const std::string& name, int64_t from, int64_t to, int64_t width) {
    Tensor& t = sd[name];
    std::copy_n(t.f32() + from * width, width, t.f32() + to * width);
  };
  for (int64_t i = 0; i < 16; ++i)
    for (int64_t base : {int64_t(0), C}) {  // queries and keys of head 0 -> head 2
      copy_row("blocks.0.attn.qkv.weight", base + i, base + 32 + i, C);
      copy_row("blocks.0.attn.qkv.bias", base + i, base + 32 + i, 1);
    }
  copy_row("blocks.0.attn.qkv.weight", 2 * C + 8, 2 * C + 40, C);
  copy_row("blocks.0.attn.qkv.bias", 2 * C + 8, 2 * C + 40, 1);
  copy_row("blocks.1.mlp.fc1.weight", 100, 9, C);
  copy_row("blocks.1.mlp.fc1.bias", 100, 9, 1);
  auto z = models::ViT::from_state_dict(m.cfg, sd, "duplicated channels");
  auto g = prune::build_graph(z);
  Tensor x = images(16, 5);  // 272 token rows: full-rank Grams of the 192 MLP units, unique fit
  auto st = prune::collect_stats(z, {x}, false);
  const auto o = prune::snp_orders(z, g, st, prune::Compensation::refit, 1e-9);
  auto first_index = [&](const prune::Order& ord) { return std::pair(g.groups[size_t(ord[0].first)].head, ord[0].second); };
  const auto v0 = first_index(o.v[0]);
  EXPECT_TRUE(v0 == std::pair(0, int64_t(8)) || v0 == std::pair(2, int64_t(8)));
  EXPECT_TRUE(o.mlp[1][0].second == 9 || o.mlp[1][0].second == 100);

  auto plan = prune::keep_all(g);
  std::erase(plan.keep[size_t(o.v[0][0].first)], o.v[0][0].second);
  std::erase(plan.keep[size_t(o.mlp[1][0].first)], o.mlp[1][0].second);
  Tensor y0 = z.forward(x);
  auto plain = prune::apply_plan(z, g, plan), refit = prune::apply_plan(z, g, plan);
  prune::compensate(z, g, plan, st, prune::Compensation::refit, 1e-9, refit);
  EXPECT_GT(test::max_abs_diff(y0, plain.forward(x)), 1e-3f);
  EXPECT_LT(test::max_abs_diff(y0, refit.forward(x)), 1e-3f);
  Tensor other = images(2, 6);  // exact on any input, not only the calibration images
  EXPECT_LT(test::max_abs_diff(z.forward(other), refit.forward(other)), 1e-3f);
}

// SNP's q/k statistic is the attention KL to second order: shrinking the query/key pairs R of a
// head by (1 - eps) changes every query's attention distribution by
// sum_t KL(P_t || P'_t) = eps^2 / 2 sum_{i,j in R} M_ij + O(eps^3) (checked in double precision).
TEST(Prune, QkStatisticIsTheAttentionKl) {
  auto m = random_vit({}, 12);
  Tensor x = images(3, 13);
  const auto st = prune::collect_stats(m, {x}, false);
  std::vector<float> qkv;
  int64_t rows = 0;
  {
    compress::Capture cap(m, [&](const compress::Captured& c) { qkv.assign(c.y, c.y + c.rows * c.out), rows = c.rows; },
                          [](const std::string& n) { return n == "blocks.1.attn.qkv"; });
    m.forward(x);
  }
  const int64_t C = 48, d = 16, h = 1, T = rows / 3;
  const double scale = m.blocks[1].attn.scale, eps = 1e-2;
  const std::vector<int64_t> R = {1, 4, 9};
  double kl = 0;
  for (int64_t b = 0; b < 3; ++b)
    for (int64_t t = 0; t < T; ++t) {
      std::vector<double> s0(static_cast<size_t>(T), 0.0), s1(static_cast<size_t>(T), 0.0);
      for (int64_t u = 0; u < T; ++u)
        for (int64_t j = 0; j < d; ++j) {
          const double q = qkv[size_t((b * T + t) * 3 * C + h * d + j)], k = qkv[size_t((b * T + u) * 3 * C + C + h * d + j)];
          s0[size_t(u)] += scale * q * k;
          s1[size_t(u)] += scale * q * k * (std::count(R.begin(), R.end(), j) ? 1 - eps : 1.0);
        }
      auto logsoftmax = [](std::vector<double> v) {
        const double mx = *std::max_element(v.begin(), v.end());
        double z = 0;
        for (double a : v) z += std::exp(a - mx);
        for (double& a : v) a -= mx + std::log(z);
        return v;
      };
      const auto l0 = logsoftmax(s0), l1 = logsoftmax(s1);
      for (int64_t u = 0; u < T; ++u) kl += std::exp(l0[size_t(u)]) * (l0[size_t(u)] - l1[size_t(u)]);
    }
  double pred = 0;
  for (int64_t i : R)
    for (int64_t j : R) pred += st.blocks[1].qk_m[size_t(h)][size_t(i * d + j)];
  pred *= eps * eps / 2;
  ASSERT_GT(kl, 0);
  EXPECT_NEAR(pred / kl, 1.0, 0.05) << "predicted " << pred << " measured " << kl;
}

// Without refit, SNP's value / MLP order is the greedy order of the exact output change
// E(R) = sum_{i,j in R} G_ij (w_i . w_j): the first index removed has the smallest |X_j w_j^T|^2.
TEST(Prune, OutputErrorOrderStartsWithTheSmallestContribution) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  const int64_t rows = 200, n = 12, out = 5;
  std::vector<float> x(size_t(rows * n));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < n; ++j) x[size_t(r * n + j)] = nd(rng) * float(1 + j % 4) + (j == 7 ? 3.f : 0.f);
  prune::Moments mo;
  mo.add(x.data(), 120, n);  // two batches: the Chan merge must equal one pass
  mo.add(x.data() + 120 * n, rows - 120, n);
  Eigen::MatrixXd w(out, n);
  for (int64_t i = 0; i < out * n; ++i) w.data()[i] = nd(rng);
  for (auto c : {prune::Compensation::none, prune::Compensation::mean}) {
    std::vector<double> e(static_cast<size_t>(n), 0.0);
    for (int64_t j = 0; j < n; ++j) {
      double mean = 0;
      for (int64_t r = 0; r < rows; ++r) mean += x[size_t(r * n + j)] / double(rows);
      for (int64_t r = 0; r < rows; ++r) {
        const double xj = x[size_t(r * n + j)] - (c == prune::Compensation::mean ? mean : 0.0);
        e[size_t(j)] += xj * xj * w.col(j).squaredNorm();
      }
    }
    const auto o = prune::output_error_order(w, mo, c, 0.01);
    ASSERT_EQ(o.size(), size_t(n));
    EXPECT_EQ(o[0], std::min_element(e.begin(), e.end()) - e.begin()) << prune::compensation_name(c);
  }
}

TEST(Prune, TargetFlopsIsReachedAndDeterministic) {
  auto m = random_vit({}, 4);
  for (auto method : {prune::Method::l1, prune::Method::snp, prune::Method::taylor})
    for (double target : {0.7, 0.5}) {
      prune::PruneSettings s;
      s.method = method;
      s.target_flops = target;
      auto a = prune::prune_model(m, s, {images(4, 3)}, false);
      double ratio = double(a.model.macs_per_image()) / double(m.macs_per_image());
      EXPECT_LE(ratio, target);
      EXPECT_GT(ratio, target - 0.05);
      auto b = prune::prune_model(m, s, {images(4, 3)}, false);
      Tensor x = images(1, 2);
      EXPECT_EQ(test::max_abs_diff(a.model.forward(x), b.model.forward(x)), 0.f);
    }
}

// Multiplies every parameter slice index j of the group owns by f.
static void scale_index(StateDict& sd, const prune::Group& grp, int64_t j, float f) {
  for (const auto& sl : grp.slots) {
    Tensor& t = sd.at(sl.tensor);
    prune::for_each_run(t, sl, j, [&](int64_t at, int64_t n) {
      for (int64_t i = 0; i < n; ++i) t.f32()[at + i] *= f;
    });
  }
}

// The Taylor score of an index (and of a head) on one image is |dL/dm| for a mask m scaling
// everything the index owns, L = cross-entropy against the unscaled model's top-1 class: checked
// against central differences of the inference forward, for every kind of dimension.
TEST(Prune, TaylorScoreIsTheMaskDerivative) {
  auto m = random_vit({false, false, true}, 8);
  auto g = prune::build_graph(m);
  Tensor x = images(1, 11);
  auto ts = prune::taylor_scores(m, g, {x}, false);
  ASSERT_EQ(ts.images, 1);
  Tensor z0 = m.forward(x);
  const int64_t top = std::max_element(z0.f32(), z0.f32() + z0.numel()) - z0.f32();
  auto loss = [&](const models::ViT& mm) {
    Tensor z = mm.forward(x);
    double mx = *std::max_element(z.f32(), z.f32() + z.numel()), se = 0;
    for (int64_t i = 0; i < z.numel(); ++i) se += std::exp(double(z.f32()[i]) - mx);
    return mx + std::log(se) - z.f32()[top];
  };
  // |dL/dm| by central differences, m scaling the given (group, index) pairs together.
  auto numeric = [&](const std::vector<std::pair<int, int64_t>>& items) {
    const float eps = 1e-2f;
    double l[2];
    for (int s = 0; s < 2; ++s) {
      StateDict sd = m.state_dict();
      for (auto& [k, t] : sd) t = t.clone();
      for (auto& [gi, j] : items) scale_index(sd, g.groups[size_t(gi)], j, s == 0 ? 1 + eps : 1 - eps);
      l[s] = loss(models::ViT::from_state_dict(m.cfg, sd, "scaled"));
    }
    return std::abs(l[0] - l[1]) / (2 * eps);
  };
  auto near = [](double a, double n) { return std::abs(a - n) <= 1e-4 + 2e-2 * n; };
  double total = 0;
  using Where = std::tuple<prune::DimKind, int, int>;  // kind, block, head
  for (auto [kind, block, head] : std::vector<Where>{{prune::DimKind::qk, 0, 1}, {prune::DimKind::v, 1, 2},
                                                     {prune::DimKind::mlp, 0, -1}, {prune::DimKind::mlp, 1, -1},
                                                     {prune::DimKind::embed, -1, -1}}) {
    const int gi = g.find(kind, block, head);
    for (int64_t j : {int64_t(0), int64_t(5), g.groups[size_t(gi)].size - 1}) {
      const double a = ts.index[size_t(gi)][size_t(j)], n = numeric({{gi, j}});
      EXPECT_TRUE(near(a, n)) << prune::kind_name(kind) << " block " << block << " index " << j << ": " << a << " vs " << n;
      total += a;
    }
  }
  for (int h = 0; h < 3; ++h) {
    std::vector<std::pair<int, int64_t>> items;
    for (auto kind : {prune::DimKind::qk, prune::DimKind::v}) {
      const int gi = g.find(kind, 1, h);
      for (int64_t j = 0; j < g.groups[size_t(gi)].size; ++j) items.emplace_back(gi, j);
    }
    const double a = ts.head[1][size_t(h)], n = numeric(items);
    EXPECT_TRUE(near(a, n)) << "head " << h << ": " << a << " vs " << n;
  }
  EXPECT_GT(total, 1e-3);  // the check is not vacuous
}

TEST(Prune, HeadPruningRemovesWholeHeads) {
  auto m = random_vit({}, 5);
  prune::PruneSettings s;
  s.heads = 2;
  auto r = prune::prune_model(m, s, {images(4, 3)}, false);
  for (auto& b : r.model.blocks) {
    int zero = 0;
    for (size_t h = 0; h < 3; ++h) zero += b.attn.heads.qk_dim[h] == 0 && b.attn.heads.v_dim[h] == 0;
    EXPECT_EQ(zero, 1);
    EXPECT_EQ(b.attn.heads.v_total(), 32);
  }
}

TEST(Prune, PrunedModelQuantizesAndRunsInt8) {
  auto m = random_vit({}, 6);
  prune::PruneSettings s;
  s.target_flops = 0.6;
  auto r = prune::prune_model(m, s, {images(4, 3)}, false);
  Tensor x = images(2, 4), yf = r.model.forward(x);
  quant::PtqSettings q;
  q.dynamic = true;
  quant::quantize_model(r.model, q, {}, false);
  for (auto& [name, l] : r.model.linears()) EXPECT_NE((*l)->kind(), "dense") << name;
  Tensor yq = r.model.forward(x);
  float scale = 0;
  for (int64_t i = 0; i < yf.numel(); ++i) scale = std::max(scale, std::abs(yf.f32()[i]));
  EXPECT_LT(test::max_abs_diff(yf, yq), 0.1f * scale);
  EXPECT_GT(test::max_abs_diff(yf, yq), 0.f);  // really quantised
  EXPECT_THROW(prune::build_graph(r.model), vs::Error);  // and pruning comes first
}

// The CLI end to end on a random model folder: prune (l1, no calibration needed), info shows the
// shapes, quantize loads the pruned folder and keeps its layout; bad options fail with one line.
TEST(Prune, CliWritesLoadableFoldersAndRejectsBadInput) {
  test::TempDir tmp;
  models::save_model(tmp / "m", random_vit({}, 7), nlohmann::json::object());
  const std::string cli = test::cli() + " ";
  int st = 0;
  std::string out = test::run_output(cli + "prune " + (tmp / "m") + " --method l1 --keep-qk 0.5 --keep-mlp 0.5 --out " + (tmp / "p"), &st);
  ASSERT_EQ(st, 0) << out;
  out = test::run_output(cli + "info " + (tmp / "p"), &st);
  ASSERT_EQ(st, 0) << out;
  EXPECT_NE(out.find("q/k per head"), std::string::npos) << out;
  EXPECT_NE(out.find("mlp hidden 96"), std::string::npos) << out;
  ASSERT_EQ(test::run(cli + "quantize " + (tmp / "p") + " --dynamic --out " + (tmp / "q") + " >/dev/null 2>&1"), 0);
  auto q = models::load_model(tmp / "q");
  EXPECT_EQ(q.cfg.head_layouts.size(), 2u);
  EXPECT_EQ(q.cfg.pruning_record.value("method", ""), "l1");

  out = test::run_output(cli + "prune " + (tmp / "m") + " --method l1 --keep-qk 0 --out " + (tmp / "bad"), &st);
  EXPECT_NE(st, 0);
  for (std::string method : {"snp", "taylor"}) {
    out = test::run_output(cli + "prune " + (tmp / "m") + " --method " + method + " --keep-qk 0.5 --out " + (tmp / "bad"), &st);
    EXPECT_NE(st, 0);
    EXPECT_NE(out.find("--calib"), std::string::npos) << out;
  }
  out = test::run_output(cli + "prune " + (tmp / "q") + " --method l1 --keep-qk 0.5 --out " + (tmp / "bad"), &st);
  EXPECT_NE(st, 0);
  EXPECT_NE(out.find("prune before quantising"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(tmp / "bad"));
  // A config whose pruning section does not match the weights.
  {
    std::ifstream f(tmp / "p/config.json");
    auto j = nlohmann::json::parse(f);
    j["pruning"]["blocks"][0]["qk_dim"].push_back(1);
    std::ofstream(tmp / "p/config.json") << j.dump();
  }
  out = test::run_output(cli + "info " + (tmp / "p"), &st);
  EXPECT_NE(st, 0);
  EXPECT_NE(out.find("config.json"), std::string::npos) << out;
}
