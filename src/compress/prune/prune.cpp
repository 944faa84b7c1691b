#include "compress/prune/prune.h"

#include <algorithm>
#include <cmath>

#include "compress/moments.h"
#include "compress/prune/calib_stats.h"
#include "compress/prune/graph.h"
#include "compress/prune/scores.h"
#include "compress/prune/taylor.h"
#include "core/error.h"

namespace vs::prune {

Method parse_method(const std::string& s) {
  if (s == "snp") return Method::snp;
  if (s == "l1") return Method::l1;
  if (s == "taylor") return Method::taylor;
  throw Error("unknown pruning method '" + s + "' (snp, l1 or taylor)");
}

const char* method_name(Method m) { return m == Method::snp ? "snp" : m == Method::l1 ? "l1" : "taylor"; }

namespace {

struct Ratios {
  double qk = 1, v = 1, mlp = 1, embed = 1;
};

int64_t kept_count(double r, int64_t n) {
  return std::clamp(int64_t(std::llround(r * double(n))), int64_t(std::min<int64_t>(n, 1)), n);
}

// Removes the first entries of `order` (skipping indices already gone) until `keep` of the
// `n` live ones remain.
void remove_along(const Order& order, std::vector<std::vector<char>>& gone, double r) {
  int64_t live = 0;
  for (auto& [gi, j] : order) live += !gone[size_t(gi)][size_t(j)];
  int64_t drop = live - kept_count(r, live);
  for (auto& [gi, j] : order) {
    if (drop <= 0) break;
    if (gone[size_t(gi)][size_t(j)]) continue;
    gone[size_t(gi)][size_t(j)] = 1;
    --drop;
  }
}

Plan make_plan(const models::ViT& model, const Graph& g, const Orders& o, int heads, const Ratios& r) {
  Plan plan = keep_all(g);
  std::vector<std::vector<char>> gone;
  for (auto& grp : g.groups) gone.emplace_back(size_t(grp.size), 0);
  for (int b = 0; b < int(model.blocks.size()); ++b) {
    const auto& hs = o.heads[size_t(b)];
    for (size_t i = 0; heads > 0 && i + size_t(heads) < hs.size(); ++i)
      for (DimKind k : {DimKind::qk, DimKind::v})
        std::fill(gone[size_t(g.find(k, b, hs[i]))].begin(), gone[size_t(g.find(k, b, hs[i]))].end(), 1);
    remove_along(o.qk[size_t(b)], gone, r.qk);
    remove_along(o.v[size_t(b)], gone, r.v);
    remove_along(o.mlp[size_t(b)], gone, r.mlp);
  }
  remove_along(o.embed, gone, r.embed);
  for (size_t i = 0; i < g.groups.size(); ++i) {
    plan.keep[i].clear();
    for (int64_t j = 0; j < g.groups[i].size; ++j)
      if (!gone[i][size_t(j)]) plan.keep[i].push_back(j);
  }
  drop_dead_heads(g, plan);
  return plan;
}

// The rows kept_out of a dense layer's weight [out, in] and bias, in float64.
std::pair<Eigen::MatrixXd, Eigen::VectorXd> kept_rows(const nn::Linear& l, const std::vector<int64_t>& kept_out) {
  const auto& d = dynamic_cast<const nn::DenseLinear&>(l);
  const int64_t in = d.weight().dim(1), O = int64_t(kept_out.size());
  Eigen::MatrixXd W(O, in);
  Eigen::VectorXd b = Eigen::VectorXd::Zero(O);
  for (int64_t k = 0; k < O; ++k) {
    for (int64_t i = 0; i < in; ++i) W(k, i) = d.weight().f32()[kept_out[size_t(k)] * in + i];
    if (d.bias().defined()) b[k] = d.bias().f32()[kept_out[size_t(k)]];
  }
  return {W, b};
}

std::unique_ptr<nn::Linear> dense_layer(const Eigen::MatrixXd& W, const Eigen::VectorXd& b) {
  Tensor weight = Tensor::empty({W.rows(), W.cols()}), bias = Tensor::empty({W.rows()});
  for (int64_t r = 0; r < W.rows(); ++r) {
    bias.f32()[r] = float(b[r]);
    for (int64_t c = 0; c < W.cols(); ++c) weight.f32()[r * W.cols() + c] = float(W(r, c));
  }
  return std::make_unique<nn::DenseLinear>(weight, bias);
}

// Compensates the removed inputs of `orig` in its pruned copy (rows kept_out, columns the kept
// inputs K), from the calibration moments of its input in the original model:
//   mean   bias[c] += sum over the removed inputs i of W[c, i] mean_i;
//   refit  weight and bias from ridge_refit with X' = X[:, K] (moments.h): the best linear
//          predictor of the original output from the kept inputs.
// Refitting instead on the inputs the pruned model gives each layer (forward order, errors of
// earlier layers included, as low-rank compensation does) was measured worse: 33.94 against
// 52.52 top-1 for SNP at 70 % MACs (docs/pruning.md). Those inputs are a noisy version of the
// original ones, and least squares on noisy inputs shrinks the weights (regression dilution).
void compensate_layer(const nn::Linear& orig, std::unique_ptr<nn::Linear>& pruned, const std::vector<char>& kept_in,
                      const Moments& m, const std::vector<int64_t>& kept_out, Compensation c, double damping) {
  auto [W, b] = kept_rows(orig, kept_out);
  check(m.mean.size() == W.cols() && int64_t(kept_in.size()) == W.cols(), "pruning: calibration statistics do not match a layer");
  std::vector<int64_t> K;
  for (int64_t i = 0; i < W.cols(); ++i)
    if (kept_in[size_t(i)]) K.push_back(i);
  if (int64_t(K.size()) == W.cols()) return;  // nothing removed: nothing to compensate (a refit would still move W)
  if (c == Compensation::refit && !K.empty()) {
    const compress::LinearFit f = compress::ridge_refit(W, b, compress::PairedMoments::of_columns(m, K), damping);
    pruned = dense_layer(f.W, f.b);
    return;
  }
  pruned = dense_layer(W(Eigen::all, K), b + W * m.mean - W(Eigen::all, K) * m.mean(K));
}

void check_ratio(const std::optional<double>& r, const char* what) {
  check(!r || (*r > 0 && *r <= 1), std::string("--keep-") + what + " must be in (0, 1]");
}

}  // namespace

void compensate(const models::ViT& model, const Graph& g, const Plan& plan, const CalibStats& st,
                Compensation c, double damping, models::ViT& pruned) {
  if (c == Compensation::none) return;
  const auto& embed_keep = plan.keep[size_t(g.find(DimKind::embed))];
  for (int b = 0; b < int(model.blocks.size()); ++b) {
    std::vector<char> kept_v;
    for (int h = 0; h < int(model.blocks[size_t(b)].attn.heads.v_dim.size()); ++h) {
      const int gi = g.find(DimKind::v, b, h);
      std::vector<char> k(size_t(g.groups[size_t(gi)].size), 0);
      for (int64_t j : plan.keep[size_t(gi)]) k[size_t(j)] = 1;
      kept_v.insert(kept_v.end(), k.begin(), k.end());
    }
    const int mi = g.find(DimKind::mlp, b);
    std::vector<char> kept_h(size_t(g.groups[size_t(mi)].size), 0);
    for (int64_t j : plan.keep[size_t(mi)]) kept_h[size_t(j)] = 1;
    const auto& s = st.blocks[size_t(b)];
    compensate_layer(*model.blocks[size_t(b)].attn.proj, pruned.blocks[size_t(b)].attn.proj, kept_v, s.ctx, embed_keep,
                     c, damping);
    compensate_layer(*model.blocks[size_t(b)].mlp.fc2, pruned.blocks[size_t(b)].mlp.fc2, kept_h, s.hidden, embed_keep,
                     c, damping);
  }
}

PruneResult prune_model(models::ViT& model, const PruneSettings& s,
                        const std::vector<Tensor>& calib, bool progress) {
  check_ratio(s.keep_qk, "qk");
  check_ratio(s.keep_v, "v");
  check_ratio(s.keep_mlp, "mlp");
  check_ratio(s.keep_embed, "embed");
  check(s.target_flops >= 0 && s.target_flops <= 1, "--target-flops must be in (0, 1]");
  check(s.heads >= 0 && s.heads <= model.cfg.num_heads,
        "--heads must be between 1 and num_heads=" + std::to_string(model.cfg.num_heads));
  const Graph g = build_graph(model);
  check(s.compensation == Compensation::none || !calib.empty(), "compensation needs calibration images (--calib)");
  check(s.refit_damping > 0 && s.refit_damping < 1e3, "the refit damping must be in (0, 1000)");
  CalibStats st;
  if (s.method == Method::snp || s.compensation != Compensation::none) st = collect_stats(model, calib, progress);
  check(s.method != Method::taylor || !calib.empty(), "--method taylor needs calibration images (--calib)");
  Orders o = s.method == Method::l1       ? l1_orders(model, g)
             : s.method == Method::snp    ? snp_orders(model, g, st, s.compensation, s.refit_damping)
                                          : taylor_orders(g, taylor_scores(model, g, calib, progress));

  auto ratios = [&](double shared) {
    double d = s.target_flops > 0 ? shared : 1.0;
    return Ratios{s.keep_qk.value_or(d), s.keep_v.value_or(d), s.keep_mlp.value_or(d), s.keep_embed.value_or(d)};
  };
  const int64_t macs0 = plan_macs(model, g, keep_all(g));
  double shared = 1.0;
  if (s.target_flops > 0) {
    check(!s.keep_qk || !s.keep_v || !s.keep_mlp || !s.keep_embed,
          "--target-flops needs at least one --keep-* left unset (those share the ratio it finds)");
    // The largest shared ratio whose model fits the budget (MACs grow with the ratio).
    const double budget = s.target_flops * double(macs0);
    double lo = 0.0, hi = 1.0;
    if (double(plan_macs(model, g, make_plan(model, g, o, s.heads, ratios(1.0)))) > budget) {
      for (int it = 0; it < 40; ++it) {
        double mid = 0.5 * (lo + hi);
        (double(plan_macs(model, g, make_plan(model, g, o, s.heads, ratios(mid)))) <= budget ? lo : hi) = mid;
      }
      shared = lo;
    }
  }
  const Ratios r = ratios(shared);
  Plan plan = make_plan(model, g, o, s.heads, r);
  PruneResult res{apply_plan(model, g, plan), {}};
  compensate(model, g, plan, st, s.compensation, s.refit_damping, res.model);
  const int64_t macs1 = res.model.macs_per_image();
  int64_t calib_images = 0;  // used by the scores or the compensation
  if (s.method != Method::l1 || s.compensation != Compensation::none)
    for (const Tensor& b : calib) calib_images += b.dim(0);
  res.record = {{"method", method_name(s.method)},
                {"keep", {{"qk", r.qk}, {"v", r.v}, {"mlp", r.mlp}, {"embed", r.embed}}},
                {"heads_kept", s.heads > 0 ? s.heads : model.cfg.num_heads},
                {"target_flops", s.target_flops},
                {"macs_before", macs0},
                {"macs_after", macs1},
                {"flops_ratio", double(macs1) / double(macs0)},
                {"compensation", compensation_name(s.compensation)},
                {"calibration_images", calib_images}};
  if (s.compensation == Compensation::refit) res.record["refit_damping"] = s.refit_damping;
  res.model.cfg.pruning_record = res.record;
  return res;
}

}  // namespace vs::prune
