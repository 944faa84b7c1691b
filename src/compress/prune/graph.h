// The dependency graph of a ViT's prunable dimensions. Each Group is one coupled dimension: an
// index of it lives at the same position in several tensors (the Slots), and removing the index
// removes it from all of them at once, so a pruned model can never have mismatched shapes.
//   embed   the residual width shared by every block, LayerNorms, patch embedding, tokens,
//           positions and head(s)
//   qk      per block and head: one query/key pair (q row and k row of qkv together)
//   v       per block and head: one value channel (v row of qkv, column of proj)
//   mlp     per block: one hidden unit (fc1 row, fc2 column)
// A whole head is its qk group plus its v group.
#pragma once
#include <string>
#include <vector>

#include "models/vit.h"

namespace vs::prune {

enum class DimKind { embed, qk, v, mlp };

struct Slot {
  std::string tensor;  // timm name in the state dict
  int axis;
  int64_t offset;      // index i of the group is index offset + i along `axis`
};

struct Group {
  DimKind kind;
  int block = -1, head = -1;  // -1 where not applicable
  int64_t size = 0;
  std::vector<Slot> slots;
};

struct Graph {
  std::vector<Group> groups;
  // Index of the group of this kind / block / head (-1 if none).
  int find(DimKind kind, int block = -1, int head = -1) const;
};

// Calls f(start, count) for every contiguous run of elements of `t` that index j of slot `sl`
// owns (t is the slot's tensor; the runs are [start, start + count) in its flat data).
template <class F>
void for_each_run(const Tensor& t, const Slot& sl, int64_t j, F&& f) {
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < sl.axis; ++d) outer *= t.dim(d);
  for (int d = sl.axis + 1; d < t.ndim(); ++d) inner *= t.dim(d);
  for (int64_t o = 0; o < outer; ++o) f((o * t.dim(sl.axis) + sl.offset + j) * inner, inner);
}

// keep[g]: the sorted indices of group g that stay. Parallel to Graph::groups.
struct Plan {
  std::vector<std::vector<int64_t>> keep;
};

// The graph of `model` as it is now (also of an already pruned model). Needs dense layers.
Graph build_graph(const models::ViT& model);
Plan keep_all(const Graph& g);
// Removing a head's last value channel removes the head: its query/key pairs go too.
void drop_dead_heads(const Graph& g, Plan& plan);
// The pruned model: every tensor sliced as the plan says, loaded back through the normal loader
// (which checks every shape), head layouts and the original attention scale recorded in cfg.
models::ViT apply_plan(const models::ViT& model, const Graph& g, const Plan& plan);
// Multiply-accumulates per image of the model apply_plan would build (same count as
// ViT::macs_per_image of a dense model), without building it.
int64_t plan_macs(const models::ViT& model, const Graph& g, const Plan& plan);

const char* kind_name(DimKind k);

}  // namespace vs::prune
