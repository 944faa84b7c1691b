// Rank allocation: which rank every layer gets so that the model meets a global budget.
//
// Costs are counted in "units": parameters (weight entries) or multiply-accumulates per image
// (weight entries times the rows the layer sees per image). A layer of in x out at rank r costs
// weight * r * (in + out) instead of weight * in * out; a rank that saves nothing is never used
// (the layer stays dense: rank 0). Other items (an attention head's q/k or v/o circuit,
// lowrank/circuits.h) cost per_rank units per unit of rank up to their full rank.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

namespace vs::compress {

struct RankCandidate {
  double full_units = 0;    // cost as it is (rank 0 = unchanged)
  double per_rank = 0;      // cost of one unit of rank once cut
  int64_t max_rank = 0;     // largest rank that saves; 0: cannot be cut
  // Error at rank r (r = 1..max_rank); non-increasing in r, 0 when unchanged.
  std::function<double(int64_t)> error;

  // An in x out Linear layer; weight: cost units per weight entry, 1 (parameters) or rows per
  // image (MACs).
  static RankCandidate linear(int64_t in, int64_t out, double weight, std::function<double(int64_t)> error);
};

// Largest rank that still saves: r * (in + out) < in * out, capped at min(in, out); 0 if none.
int64_t max_saving_rank(int64_t in, int64_t out);
double saved_units(const RankCandidate& c, int64_t rank);  // 0 for rank 0 (unchanged)

// Greedy mixed ranks: starting from every layer dense, repeatedly takes the step (dense -> the
// largest saving rank, or rank r -> r - 1) with the smallest increase in error per unit saved
// until `to_save` units are saved. Returns the rank of every layer (0 = dense). Throws when even
// rank 1 everywhere cannot save that much.
std::vector<int64_t> allocate_greedy(const std::vector<RankCandidate>& layers, double to_save);

// Uniform: every layer keeps the same fraction rho of its cost, r = floor(rho * full_units /
// per_rank) (at least 1, at most max_rank), rho the largest that saves `to_save`.
std::vector<int64_t> allocate_uniform(const std::vector<RankCandidate>& layers, double to_save);

}  // namespace vs::compress
