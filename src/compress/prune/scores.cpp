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

// Greedy removal for an error E(R) = sum_{i,j in R} M_ij with M block-diagonal per head
// (M[h] is d_h x d_h): each step removes the pair with the smallest increase of E.
Order greedy_qk(const Graph& g, int block, const BlockStats& s) {
  auto items = items_of(g, DimKind::qk, block);
  std::vector<double> inc(items.size());
  std::vector<char> gone(items.size(), 0);
  auto m = [&](size_t a, size_t b) {  // M entry between two items of the same head
    const Group& grp = g.groups[size_t(items[a].first)];
    return s.qk_m[size_t(grp.head)][size_t(items[a].second * grp.size + items[b].second)];
  };
  for (size_t a = 0; a < items.size(); ++a) inc[a] = m(a, a);
  Order o;
  for (size_t step = 0; step < items.size(); ++step) {
    size_t best = items.size();
    for (size_t a = 0; a < items.size(); ++a)
      if (!gone[a] && (best == items.size() || inc[a] < inc[best])) best = a;
    gone[best] = 1;
    o.push_back(items[best]);
    for (size_t a = 0; a < items.size(); ++a)
      if (!gone[a] && items[a].first == items[best].first) inc[a] += 2 * m(a, best);
  }
  return o;
}

// Value channels: magnitude of the contribution times (1 - its strongest similarity to a kept
// channel of another head), recomputed after every removal.
Order greedy_v(const models::ViT& model, const Graph& g, int block, const BlockStats& s) {
  auto items = items_of(g, DimKind::v, block);
  const size_t n = items.size();
  check(s.ctx_gram.size() == n * n, "pruning: calibration statistics do not match block " + std::to_string(block));
  std::vector<int> head(n);
  for (size_t a = 0; a < n; ++a) head[a] = g.groups[size_t(items[a].first)].head;  // items are in proj-column order
  const auto wn = col_norms(*model.blocks[size_t(block)].attn.proj);
  std::vector<double> mag(n), norm(n);
  for (size_t a = 0; a < n; ++a) {
    norm[a] = std::sqrt(std::max(s.ctx_gram[a * n + a], 1e-30));
    mag[a] = norm[a] * wn[a];
  }
  std::vector<char> gone(n, 0);
  Order o;
  for (size_t step = 0; step < n; ++step) {
    size_t best = n;
    double best_s = 0;
    for (size_t a = 0; a < n; ++a) {
      if (gone[a]) continue;
      double rho = 0;
      for (size_t b = 0; b < n; ++b)
        if (!gone[b] && head[b] != head[a]) rho = std::max(rho, std::abs(s.ctx_gram[a * n + b]) / (norm[a] * norm[b]));
      double sc = mag[a] * (1.0 - std::min(rho, 1.0));
      if (best == n || sc < best_s) best = a, best_s = sc;
    }
    gone[best] = 1;
    o.push_back(items[best]);
  }
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

Orders snp_orders(const models::ViT& model, const Graph& g, const CalibStats& st) {
  check(st.blocks.size() == model.blocks.size(), "pruning: calibration statistics do not match the model");
  Orders o;
  const int64_t C = model.cfg.embed_dim;
  std::vector<double> embed(size_t(C), 0.0);
  // Adds one residual-reading layer's normalised per-channel input contribution.
  auto add_reader = [&](const std::vector<double>& in_sq, const nn::Linear& l) {
    auto wn = col_norms(l);
    std::vector<double> c(static_cast<size_t>(C), 0.0);
    for (size_t i = 0; i < c.size(); ++i) c[i] = std::sqrt(in_sq[i]) * wn[i];
    double total = std::accumulate(c.begin(), c.end(), 0.0);
    for (size_t i = 0; i < c.size(); ++i) embed[i] += c[i] / std::max(total, 1e-30);
  };
  for (int b = 0; b < int(model.blocks.size()); ++b) {
    const auto& blk = model.blocks[size_t(b)];
    const BlockStats& s = st.blocks[size_t(b)];
    o.qk.push_back(greedy_qk(g, b, s));
    o.v.push_back(greedy_v(model, g, b, s));
    auto items = items_of(g, DimKind::mlp, b);
    auto wn = col_norms(*blk.mlp.fc2);
    std::vector<double> ms;
    for (auto& [gi, j] : items) ms.push_back(std::sqrt(s.hidden_sq[size_t(j)]) * wn[size_t(j)]);
    o.mlp.push_back(by_score(items, ms));
    add_reader(s.qkv_in_sq, *blk.attn.qkv);
    add_reader(s.fc1_in_sq, *blk.mlp.fc1);
    // Head h's share of proj's output energy: sum_{i,j in h} G_ij (w_i . w_j).
    const Tensor& w = dynamic_cast<const nn::DenseLinear&>(*blk.attn.proj).weight();
    const int64_t vt = w.dim(1);
    std::vector<double> hs;
    int64_t off = 0;
    for (int64_t d : blk.attn.heads.v_dim) {
      double e = 0;
      for (int64_t i = off; i < off + d; ++i)
        for (int64_t j = off; j < off + d; ++j) {
          double wij = 0;
          for (int64_t r = 0; r < w.dim(0); ++r) wij += double(w.f32()[r * vt + i]) * w.f32()[r * vt + j];
          e += s.ctx_gram[size_t(i * vt + j)] * wij;
        }
      hs.push_back(e);
      off += d;
    }
    o.heads.push_back(heads_by_score(hs));
  }
  add_reader(st.head_in_sq, *model.head);
  o.embed = by_score(items_of(g, DimKind::embed, -1), embed);
  return o;
}

}  // namespace vs::prune
