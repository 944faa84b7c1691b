// Importance of every index of the dependency graph, as removal orders: for each set of groups
// that compete for one budget, the (group, index) pairs from least to most important.
//
// l1  (magnitude baseline) score of an index = sum of |w| over every weight and bias slice the
//     index owns in the graph (all coupled tensors, e.g. q row + k row; v row + proj column).
//     A head: the sum over its q/k and v indices.
// snp (Structured Neuron-level Pruning, arXiv 2404.11630, as implemented here; see
//     docs/pruning.md for the derivations)
//     qk    greedy: repeatedly remove the pair whose removal adds least to the change of the
//           attention distributions on the calibration images, E(R) = sum_{i,j in R} M_ij
//           (twice the attention KL to second order, calib_stats.h) - the cross-term-aware form
//           of "keep the pairs that carry the attention scores", weighted where softmax puts its mass.
//     v, mlp greedy on the exact change of the next layer's output (proj for value channels,
//           fc2 for MLP units) over the calibration tokens, under the compensation that will be
//           applied: none / mean: E(R) = sum_{i,j in R} G_ij (w_i . w_j), G the raw / centred
//           Gram of the layer input, w_i its weight column; refit: the least-squares refit of
//           the kept columns absorbs whatever the removed inputs share with the kept ones, so a
//           channel goes when it is redundant - predictable from the kept channels of any head
//           (inter-head redundancy) - at the cost |w_j|^2 / [G^-1]_jj (Optimal Brain Surgeon),
//           with the kept columns updated after every removal.
//     embed activation-aware: sum over the layers that read the residual stream (qkv, fc1 of
//           every block, head) of |x_c| |W[:, c]| / sum_c' |x_c'| |W[:, c']|.
//     head  its share of the attention output: |A_h V_h W_proj,h^T|_F^2 over the calibration tokens.
// taylor first-order Taylor scores from gradients (taylor.h); every kind ordered by its score.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "compress/prune/calib_stats.h"
#include "compress/prune/graph.h"
#include "compress/prune/taylor.h"

namespace vs::prune {

using Order = std::vector<std::pair<int, int64_t>>;  // (group, index), least important first

// What replaces the removed MLP units and value channels of the model (prune.h, compensate):
//   none   nothing (their contribution to fc2's / proj's output is lost)
//   mean   their mean over the calibration tokens, folded into fc2's / proj's bias
//   refit  fc2 / proj are refitted by ridge least squares so that, on the calibration tokens,
//          the kept inputs reproduce the original layer's output as well as they can (bias
//          included; ridge term refit_damping x the mean diagonal of the centred Gram), from
//          the moments of the original model's inputs
enum class Compensation { none, mean, refit };
Compensation parse_compensation(const std::string& s);
const char* compensation_name(Compensation c);

struct Orders {
  std::vector<Order> qk, v, mlp;        // per block (qk and v across the block's heads)
  Order embed;
  std::vector<std::vector<int>> heads;  // per block, least important head first
};

Orders l1_orders(const models::ViT& model, const Graph& g);
Orders snp_orders(const models::ViT& model, const Graph& g, const CalibStats& st, Compensation c,
                  double damping);

// Removal order of the inputs (columns) of a layer with weight w [out, n] and input moments m:
// greedy on the exact change of its output under compensation c (see snp above). costs (refit
// only): costs[k] = what the k-th removal adds to the squared output error over the calibration
// rows (with the ridge term), so their prefix sums are the error at every width.
std::vector<int64_t> output_error_order(const Eigen::MatrixXd& w, const Moments& m, Compensation c, double damping,
                                        std::vector<double>* costs = nullptr);
Orders taylor_orders(const Graph& g, const TaylorScores& ts);

}  // namespace vs::prune
