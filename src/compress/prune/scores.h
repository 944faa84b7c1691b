// Importance of every index of the dependency graph, as removal orders: for each set of groups
// that compete for one budget, the (group, index) pairs from least to most important.
//
// l1  (magnitude baseline) score of an index = sum of |w| over every weight and bias slice the
//     index owns in the graph (all coupled tensors, e.g. q row + k row; v row + proj column).
//     A head: the sum over its q/k and v indices.
// snp (Structured Neuron-level Pruning, arXiv 2404.11630, as implemented here; see
//     docs/pruning.md for the derivations)
//     qk    greedy: repeatedly remove the pair whose removal adds least to the change of the
//           attention logits on the calibration images, E(R) = sum_{i,j in R} M_ij (calib_stats.h)
//           - the exact cross-term-aware form of "keep the pairs that carry the attention scores".
//     v     inter-head redundancy, greedy: s_j = |a_j| |w_j| (1 - max_i |cos(a_i, a_j)|), a_j the
//           attention output of channel j over the calibration tokens, w_j its proj column, i over
//           kept channels of *other* heads; the lowest goes first, similarities are recomputed.
//     mlp   activation-aware: |h_i| |fc2[:, i]| (h_i the post-GELU unit over the calibration tokens).
//     embed activation-aware: sum over the layers that read the residual stream (qkv, fc1 of
//           every block, head) of |x_c| |W[:, c]| / sum_c' |x_c'| |W[:, c']|.
//     head  its share of the attention output: |A_h V_h W_proj,h^T|_F^2 over the calibration tokens.
// taylor first-order Taylor scores from gradients (taylor.h); every kind ordered by its score.
#pragma once
#include <utility>
#include <vector>

#include "compress/prune/calib_stats.h"
#include "compress/prune/graph.h"
#include "compress/prune/taylor.h"

namespace vs::prune {

using Order = std::vector<std::pair<int, int64_t>>;  // (group, index), least important first

struct Orders {
  std::vector<Order> qk, v, mlp;        // per block (qk and v across the block's heads)
  Order embed;
  std::vector<std::vector<int>> heads;  // per block, least important head first
};

Orders l1_orders(const models::ViT& model, const Graph& g);
Orders snp_orders(const models::ViT& model, const Graph& g, const CalibStats& st);
Orders taylor_orders(const Graph& g, const TaylorScores& ts);

}  // namespace vs::prune
