#include "compress/prune/graph.h"

#include <algorithm>
#include <cstring>
#include <map>

#include "core/error.h"

namespace vs::prune {

const char* kind_name(DimKind k) {
  switch (k) {
    case DimKind::embed: return "embed";
    case DimKind::qk: return "qk";
    case DimKind::v: return "v";
    case DimKind::mlp: return "mlp";
  }
  return "?";
}

int Graph::find(DimKind kind, int block, int head) const {
  for (size_t i = 0; i < groups.size(); ++i)
    if (groups[i].kind == kind && groups[i].block == block && groups[i].head == head) return int(i);
  return -1;
}

static void require_dense(const models::ViT& model) {
  for (auto& [name, slot] : const_cast<models::ViT&>(model).linears())
    check(dynamic_cast<const nn::DenseLinear*>(slot->get()) != nullptr,
          "layer '" + name + "' is " + (*slot)->kind() + "; structured pruning needs a float model (prune before quantising)");
}

Graph build_graph(const models::ViT& model) {
  require_dense(model);
  const StateDict sd = model.state_dict();
  Graph g;
  auto add = [&](Group& grp, const std::string& name, int axis, int64_t off = 0) {
    if (sd.count(name)) grp.slots.push_back({name, axis, off});
  };
  Group e{DimKind::embed, -1, -1, model.cfg.embed_dim, {}};
  add(e, "cls_token", 2);
  add(e, "dist_token", 2);
  add(e, "pos_embed", 2);
  add(e, "patch_embed.proj.weight", 0);
  add(e, "patch_embed.proj.bias", 0);
  for (size_t b = 0; b < model.blocks.size(); ++b) {
    const std::string p = "blocks." + std::to_string(b);
    for (auto* n : {".norm1.weight", ".norm1.bias", ".norm2.weight", ".norm2.bias", ".attn.proj.weight",
                    ".attn.proj.bias", ".mlp.fc2.weight", ".mlp.fc2.bias", ".ls1.gamma", ".ls2.gamma"})
      add(e, p + n, 0);
    add(e, p + ".attn.qkv.weight", 1);
    add(e, p + ".mlp.fc1.weight", 1);
  }
  for (auto* n : {"norm.weight", "norm.bias", "fc_norm.weight", "fc_norm.bias"}) add(e, n, 0);
  add(e, "head.weight", 1);
  add(e, "head_dist.weight", 1);
  g.groups.push_back(std::move(e));

  for (size_t b = 0; b < model.blocks.size(); ++b) {
    const std::string p = "blocks." + std::to_string(b);
    const auto& L = model.blocks[b].attn.heads;
    const int64_t qt = L.qk_total();
    int64_t qoff = 0, voff = 0;
    for (size_t h = 0; h < L.qk_dim.size(); ++h) {
      Group qk{DimKind::qk, int(b), int(h), L.qk_dim[h], {}};
      for (auto* n : {".attn.qkv.weight", ".attn.qkv.bias"}) {
        add(qk, p + n, 0, qoff);       // query rows
        add(qk, p + n, 0, qt + qoff);  // key rows
      }
      Group v{DimKind::v, int(b), int(h), L.v_dim[h], {}};
      add(v, p + ".attn.qkv.weight", 0, 2 * qt + voff);
      add(v, p + ".attn.qkv.bias", 0, 2 * qt + voff);
      add(v, p + ".attn.proj.weight", 1, voff);
      qoff += L.qk_dim[h];
      voff += L.v_dim[h];
      g.groups.push_back(std::move(qk));
      g.groups.push_back(std::move(v));
    }
    Group m{DimKind::mlp, int(b), -1, model.blocks[b].mlp.fc1->out_features(), {}};
    add(m, p + ".mlp.fc1.weight", 0);
    add(m, p + ".mlp.fc1.bias", 0);
    add(m, p + ".mlp.fc2.weight", 1);
    g.groups.push_back(std::move(m));
  }
  return g;
}

Plan keep_all(const Graph& g) {
  Plan p;
  for (auto& grp : g.groups) {
    std::vector<int64_t> all(size_t(grp.size));
    for (int64_t i = 0; i < grp.size; ++i) all[size_t(i)] = i;
    p.keep.push_back(std::move(all));
  }
  return p;
}

void drop_dead_heads(const Graph& g, Plan& plan) {
  for (size_t i = 0; i < g.groups.size(); ++i)
    if (g.groups[i].kind == DimKind::v && plan.keep[i].empty())
      plan.keep[size_t(g.find(DimKind::qk, g.groups[i].block, g.groups[i].head))].clear();
}

// Keeps the indices `keep` along `axis` of t.
static Tensor take(const Tensor& t, int axis, const std::vector<int64_t>& keep) {
  Shape s = t.shape();
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < axis; ++d) outer *= s[size_t(d)];
  for (int d = axis + 1; d < t.ndim(); ++d) inner *= s[size_t(d)];
  const int64_t n = s[size_t(axis)];
  s[size_t(axis)] = int64_t(keep.size());
  Tensor out(s);
  const float* src = t.f32();
  float* dst = out.f32();
  for (int64_t o = 0; o < outer; ++o)
    for (size_t k = 0; k < keep.size(); ++k)
      std::memcpy(dst + (o * int64_t(keep.size()) + int64_t(k)) * inner, src + (o * n + keep[k]) * inner,
                  size_t(inner) * 4);
  return out;
}

static void check_plan(const Graph& g, const Plan& plan) {
  check(plan.keep.size() == g.groups.size(), "pruning plan does not match the dependency graph");
  for (size_t i = 0; i < g.groups.size(); ++i) {
    const auto& k = plan.keep[i];
    for (size_t j = 0; j < k.size(); ++j)
      check(k[j] >= 0 && k[j] < g.groups[i].size && (j == 0 || k[j] > k[j - 1]),
            "pruning plan: indices of a group must be sorted, unique and in range");
  }
}

models::ViT apply_plan(const models::ViT& model, const Graph& g, const Plan& plan) {
  check_plan(g, plan);
  // Per tensor and axis: which indices stay (start with all, strike the removed ones).
  StateDict sd = model.state_dict();
  std::map<std::pair<std::string, int>, std::vector<char>> stays;
  for (size_t i = 0; i < g.groups.size(); ++i) {
    const Group& grp = g.groups[i];
    std::vector<char> kept(size_t(grp.size), 0);
    for (int64_t k : plan.keep[i]) kept[size_t(k)] = 1;
    for (const Slot& s : grp.slots) {
      auto& mask = stays[{s.tensor, s.axis}];
      if (mask.empty()) mask.assign(size_t(sd.at(s.tensor).dim(s.axis)), 1);
      for (int64_t j = 0; j < grp.size; ++j)
        if (!kept[size_t(j)]) mask[size_t(s.offset + j)] = 0;
    }
  }
  for (auto& [key, mask] : stays) {
    std::vector<int64_t> idx;
    for (size_t j = 0; j < mask.size(); ++j)
      if (mask[j]) idx.push_back(int64_t(j));
    Tensor& t = sd.at(key.first);
    if (int64_t(idx.size()) != t.dim(key.second)) t = take(t, key.second, idx);
  }
  models::ViTConfig cfg = model.cfg;
  cfg.embed_dim = int64_t(plan.keep[size_t(g.find(DimKind::embed))].size());
  cfg.attn_scale = model.blocks.empty() ? 0.f : model.blocks[0].attn.scale;
  cfg.head_layouts.clear();
  for (size_t b = 0; b < model.blocks.size(); ++b) {
    kernels::HeadLayout l;
    for (size_t h = 0; h < model.blocks[b].attn.heads.qk_dim.size(); ++h) {
      l.qk_dim.push_back(int64_t(plan.keep[size_t(g.find(DimKind::qk, int(b), int(h)))].size()));
      l.v_dim.push_back(int64_t(plan.keep[size_t(g.find(DimKind::v, int(b), int(h)))].size()));
    }
    check(l.v_total() > 0, "pruning plan removes every value channel of block " + std::to_string(b));
    check(int64_t(plan.keep[size_t(g.find(DimKind::mlp, int(b)))].size()) > 0,
          "pruning plan removes every MLP unit of block " + std::to_string(b));
    cfg.head_layouts.push_back(std::move(l));
  }
  check(cfg.embed_dim > 0, "pruning plan removes the whole embedding");
  return models::ViT::from_state_dict(cfg, sd, "pruned model");
}

int64_t plan_macs(const models::ViT& model, const Graph& g, const Plan& plan) {
  const auto& c = model.cfg;
  const int64_t T = c.num_tokens(), C = int64_t(plan.keep[size_t(g.find(DimKind::embed))].size());
  int64_t macs = c.num_patches() * C * c.in_chans * c.patch_size * c.patch_size;
  for (size_t b = 0; b < model.blocks.size(); ++b) {
    int64_t qk = 0, v = 0;
    for (size_t h = 0; h < model.blocks[b].attn.heads.qk_dim.size(); ++h) {
      qk += int64_t(plan.keep[size_t(g.find(DimKind::qk, int(b), int(h)))].size());
      v += int64_t(plan.keep[size_t(g.find(DimKind::v, int(b), int(h)))].size());
    }
    const int64_t hid = int64_t(plan.keep[size_t(g.find(DimKind::mlp, int(b)))].size());
    macs += T * (C * (2 * qk + v) + v * C + 2 * C * hid) + T * T * (qk + v);
  }
  return macs + (c.distilled ? 2 : 1) * C * c.num_classes;
}

}  // namespace vs::prune
