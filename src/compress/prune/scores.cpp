#include "compress/prune/scores.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"

namespace vs::prune {
namespace {

// Ascending by score; ties by (group, index) so the order is deterministic.
Order by_score(std::vector<std::pair<int, int64_t>> items, const std::vector<double>& score) {
  std::vector<size_t> idx(items.size());
  std::iota(idx.begin(), idx.end(), size_t(0));
  std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return score[a] < score[b]; });
  Order o;
  for (size_t i : idx) o.push_back(items[i]);
  return o;
}

// Every (group, index) of the groups of `kind` in `block`, and the head they belong to.
std::vector<std::pair<int, int64_t>> items_of(const Graph& g, DimKind kind, int block) {
  std::vector<std::pair<int, int64_t>> out;
  for (size_t i = 0; i < g.groups.size(); ++i)
    if (g.groups[i].kind == kind && g.groups[i].block == block)
      for (int64_t j = 0; j < g.groups[i].size; ++j) out.emplace_back(int(i), j);
  return out;
}

// L1 of everything index j of group `grp` owns.
double l1_of(const StateDict& sd, const Group& grp, int64_t j) {
  double s = 0;
  for (const Slot& sl : grp.slots) {
    const Tensor& t = sd.at(sl.tensor);
    for_each_run(t, sl, j, [&](int64_t at, int64_t n) {
      for (int64_t i = 0; i < n; ++i) s += std::abs(t.f32()[at + i]);
    });
  }
  return s;
}

Order l1_order(const StateDict& sd, const Graph& g, DimKind kind, int block) {
  auto items = items_of(g, kind, block);
  std::vector<double> score;
  for (auto& [gi, j] : items) score.push_back(l1_of(sd, g.groups[size_t(gi)], j));
  return by_score(items, score);
}

std::vector<int> heads_by_score(const std::vector<double>& score) {
  std::vector<int> h(score.size());
  std::iota(h.begin(), h.end(), 0);
  std::stable_sort(h.begin(), h.end(), [&](int a, int b) { return score[size_t(a)] < score[size_t(b)]; });
  return h;
}

// Column norms |W[:, c]| of a dense weight [out, in].
std::vector<double> col_norms(const nn::Linear& l) {
  const Tensor& w = dynamic_cast<const nn::DenseLinear&>(l).weight();
  std::vector<double> n(size_t(w.dim(1)), 0.0);
  for (int64_t r = 0; r < w.dim(0); ++r)
    for (int64_t c = 0; c < w.dim(1); ++c) n[size_t(c)] += double(w.f32()[r * w.dim(1) + c]) * w.f32()[r * w.dim(1) + c];
  for (auto& v : n) v = std::sqrt(v);
  return n;
}

// Greedy removal for an error E(R) = sum_{i,j in R} M_ij (M symmetric): each step removes the
// index with the smallest increase M_jj + 2 sum_{i in R} M_ij. Returns indices of M.
std::vector<int64_t> greedy_quadratic(const Eigen::MatrixXd& M) {
  const int64_t n = M.rows();
  Eigen::VectorXd inc = M.diagonal();
  std::vector<char> gone(size_t(n), 0);
  std::vector<int64_t> o;
  for (int64_t step = 0; step < n; ++step) {
    int64_t best = -1;
    for (int64_t a = 0; a < n; ++a)
      if (!gone[size_t(a)] && (best < 0 || inc[a] < inc[best])) best = a;
    gone[size_t(best)] = 1;
    o.push_back(best);
    inc += 2 * M.col(best);
  }
  return o;
}

// Optimal Brain Surgeon order for removing columns of w with a least-squares refit of the rest:
// removing j costs |w_j|^2 / Hinv_jj (H = damped centred Gram), after which the kept columns
// absorb what j shared with them (w -= w_j Hinv_j. / Hinv_jj) and Hinv is downdated.
std::vector<int64_t> obs_order(Eigen::MatrixXd w, const Moments& m, double damping, std::vector<double>* costs) {
  const int64_t n = w.cols();
  Eigen::MatrixXd H = m.cgram;
  H.diagonal().array() += damping * std::max(H.diagonal().mean(), 1e-30);
  Eigen::MatrixXd Hinv = H.ldlt().solve(Eigen::MatrixXd::Identity(n, n));
  std::vector<char> gone(size_t(n), 0);
  std::vector<int64_t> o;
  for (int64_t step = 0; step < n; ++step) {
    int64_t best = -1;
    double best_cost = 0;
    for (int64_t j = 0; j < n; ++j) {
      if (gone[size_t(j)]) continue;
      const double cost = w.col(j).squaredNorm() / std::max(Hinv(j, j), 1e-300);
      if (best < 0 || cost < best_cost) best = j, best_cost = cost;
    }
    gone[size_t(best)] = 1;
    o.push_back(best);
    if (costs) costs->push_back(best_cost);
    const double d = std::max(Hinv(best, best), 1e-300);
    const Eigen::VectorXd h = Hinv.col(best);  // = row, Hinv symmetric
    w -= (w.col(best) / d) * h.transpose();
    Hinv -= (h / d) * h.transpose();
    w.col(best).setZero();  // exact zero (round-off leaves ~1e-17)
  }
  return o;
}

Eigen::MatrixXd weight_of(const nn::Linear& l) {
  const Tensor& w = dynamic_cast<const nn::DenseLinear&>(l).weight();
  Eigen::MatrixXd m(w.dim(0), w.dim(1));
  for (int64_t r = 0; r < w.dim(0); ++r)
    for (int64_t c = 0; c < w.dim(1); ++c) m(r, c) = w.f32()[r * w.dim(1) + c];
  return m;
}

// Query/key pairs of a block: greedy_quadratic on the block-diagonal of the heads' M matrices.
Order greedy_qk(const Graph& g, int block, const BlockStats& s) {
  auto items = items_of(g, DimKind::qk, block);  // head by head, pairs in order
  const int64_t n = int64_t(items.size());
  Eigen::MatrixXd M = Eigen::MatrixXd::Zero(n, n);
  for (int64_t a = 0, off = 0; a < n;) {
    const Group& grp = g.groups[size_t(items[size_t(a)].first)];
    const auto& m = s.qk_m[size_t(grp.head)];
    for (int64_t i = 0; i < grp.size; ++i)
      for (int64_t j = 0; j < grp.size; ++j) M(off + i, off + j) = m[size_t(i * grp.size + j)];
    off += grp.size;
    a += grp.size;
  }
  Order o;
  for (int64_t i : greedy_quadratic(M)) o.push_back(items[size_t(i)]);
  return o;
}

// Items whose position in items_of order is their input column of `next` (value channels of proj,
// MLP units of fc2), ordered by output_error_order.
Order by_output_error(const Graph& g, DimKind kind, int block, const nn::Linear& next, const Moments& m,
                      Compensation c, double damping) {
  auto items = items_of(g, kind, block);
  check(m.rows > 0 && m.mean.size() == int64_t(items.size()),
        "pruning: calibration statistics do not match block " + std::to_string(block));
  Order o;
  for (int64_t i : output_error_order(weight_of(next), m, c, damping)) o.push_back(items[size_t(i)]);
  return o;
}

}  // namespace

Orders l1_orders(const models::ViT& model, const Graph& g) {
  const StateDict sd = model.state_dict();
  Orders o;
  for (int b = 0; b < int(model.blocks.size()); ++b) {
    o.qk.push_back(l1_order(sd, g, DimKind::qk, b));
    o.v.push_back(l1_order(sd, g, DimKind::v, b));
    o.mlp.push_back(l1_order(sd, g, DimKind::mlp, b));
    std::vector<double> hs;
    for (int h = 0; h < int(model.blocks[size_t(b)].attn.heads.qk_dim.size()); ++h) {
      double s = 0;
      for (DimKind k : {DimKind::qk, DimKind::v}) {
        const Group& grp = g.groups[size_t(g.find(k, b, h))];
        for (int64_t j = 0; j < grp.size; ++j) s += l1_of(sd, grp, j);
      }
      hs.push_back(s);
    }
    o.heads.push_back(heads_by_score(hs));
  }
  o.embed = l1_order(sd, g, DimKind::embed, -1);
  return o;
}

Orders taylor_orders(const Graph& g, const TaylorScores& ts) {
  check(ts.index.size() == g.groups.size(), "pruning: Taylor scores do not match the model");
  // Scores of the items of one kind in one block, in items_of's order.
  auto order = [&](DimKind kind, int block) {
    auto items = items_of(g, kind, block);
    std::vector<double> score;
    for (auto& [gi, j] : items) score.push_back(ts.index[size_t(gi)][size_t(j)]);
    return by_score(items, score);
  };
  Orders o;
  for (int b = 0; b < int(ts.head.size()); ++b) {
    o.qk.push_back(order(DimKind::qk, b));
    o.v.push_back(order(DimKind::v, b));
    o.mlp.push_back(order(DimKind::mlp, b));
    o.heads.push_back(heads_by_score(ts.head[size_t(b)]));
  }
  o.embed = order(DimKind::embed, -1);
  return o;
}

Compensation parse_compensation(const std::string& s) {
  if (s == "none") return Compensation::none;
  if (s == "mean") return Compensation::mean;
  if (s == "refit") return Compensation::refit;
  throw Error("unknown compensation '" + s + "' (none, mean or refit)");
}

const char* compensation_name(Compensation c) {
  return c == Compensation::none ? "none" : c == Compensation::mean ? "mean" : "refit";
}

std::vector<int64_t> output_error_order(const Eigen::MatrixXd& w, const Moments& m, Compensation c, double damping,
                                        std::vector<double>* costs) {
  check(w.cols() == m.mean.size(), "pruning: a layer's input statistics do not match its weight");
  check(!costs || c == Compensation::refit, "pruning: removal costs are only given for the refit order");
  if (c == Compensation::refit) return obs_order(w, m, damping, costs);
  const Eigen::MatrixXd G = c == Compensation::mean ? m.cgram : m.gram();
  return greedy_quadratic(G.cwiseProduct(w.transpose() * w));
}

Orders snp_orders(const models::ViT& model, const Graph& g, const CalibStats& st, Compensation c,
                  double damping) {
  check(st.blocks.size() == model.blocks.size(), "pruning: calibration statistics do not match the model");
  Orders o;
  const int64_t C = model.cfg.embed_dim;
  std::vector<double> embed(size_t(C), 0.0);
  // Adds one residual-reading layer's normalised per-channel input contribution.
  auto add_reader = [&](const std::vector<double>& in_sq, const nn::Linear& l) {
    auto wn = col_norms(l);
    std::vector<double> contrib(static_cast<size_t>(C), 0.0);
    for (size_t i = 0; i < contrib.size(); ++i) contrib[i] = std::sqrt(in_sq[i]) * wn[i];
    double total = std::accumulate(contrib.begin(), contrib.end(), 0.0);
    for (size_t i = 0; i < contrib.size(); ++i) embed[i] += contrib[i] / std::max(total, 1e-30);
  };
  for (int b = 0; b < int(model.blocks.size()); ++b) {
    const auto& blk = model.blocks[size_t(b)];
    const BlockStats& s = st.blocks[size_t(b)];
    o.qk.push_back(greedy_qk(g, b, s));
    o.v.push_back(by_output_error(g, DimKind::v, b, *blk.attn.proj, s.ctx, c, damping));
    o.mlp.push_back(by_output_error(g, DimKind::mlp, b, *blk.mlp.fc2, s.hidden, c, damping));
    add_reader(s.qkv_in_sq, *blk.attn.qkv);
    add_reader(s.fc1_in_sq, *blk.mlp.fc1);
    // Head h's share of proj's output energy: sum_{i,j in h} G_ij (w_i . w_j).
    const Eigen::MatrixXd w = weight_of(*blk.attn.proj), G = s.ctx.gram();
    std::vector<double> hs;
    int64_t off = 0;
    for (int64_t d : blk.attn.heads.v_dim) {
      const auto wh = w.middleCols(off, d);
      hs.push_back(G.block(off, off, d, d).cwiseProduct(wh.transpose() * wh).sum());
      off += d;
    }
    o.heads.push_back(heads_by_score(hs));
  }
  add_reader(st.head_in_sq, *model.head);
  o.embed = by_score(items_of(g, DimKind::embed, -1), embed);
  return o;
}

}  // namespace vs::prune
