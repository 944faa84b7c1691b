#include "compress/lowrank/allocate.h"

#include <algorithm>
#include <queue>
#include <tuple>
#include <utility>

#include "core/error.h"

namespace vs::compress {
namespace {

void check_reachable(const std::vector<RankCandidate>& layers, double to_save) {
  double most = 0;
  for (auto& c : layers) most += saved_units(c, c.max_rank > 0 ? 1 : 0);
  check(to_save <= most, "low-rank: budget unreachable - rank 1 in every layer saves only " +
                             std::to_string(int64_t(most)) + " of the " + std::to_string(int64_t(to_save)) +
                             " units needed");
}

}  // namespace

int64_t max_saving_rank(int64_t in, int64_t out) {
  if (in <= 0 || out <= 0) return 0;
  return std::min((in * out - 1) / (in + out), std::min(in, out));
}

RankCandidate RankCandidate::linear(int64_t in, int64_t out, double weight, std::function<double(int64_t)> error) {
  return {weight * double(in * out), weight * double(in + out), max_saving_rank(in, out), std::move(error)};
}

double saved_units(const RankCandidate& c, int64_t rank) {
  return rank <= 0 ? 0.0 : c.full_units - double(rank) * c.per_rank;
}

std::vector<int64_t> allocate_greedy(const std::vector<RankCandidate>& layers, double to_save) {
  std::vector<int64_t> rank(layers.size(), 0);
  if (to_save <= 0) return rank;
  check_reachable(layers, to_save);
  // The next step of layer i: its error increase per unit saved (ties: lower index first).
  using Step = std::tuple<double, size_t, int64_t>;  // (cost per unit, layer, rank after the step)
  std::priority_queue<Step, std::vector<Step>, std::greater<>> steps;
  auto push_next = [&](size_t i) {
    const RankCandidate& c = layers[i];
    const int64_t from = rank[i], to = from == 0 ? c.max_rank : from - 1;
    if (to < 1) return;
    const double gain = saved_units(c, to) - saved_units(c, from);
    const double loss = c.error(to) - (from == 0 ? 0.0 : c.error(from));
    steps.emplace(std::max(loss, 0.0) / gain, i, to);
  };
  for (size_t i = 0; i < layers.size(); ++i) push_next(i);
  double saved = 0;
  while (saved < to_save && !steps.empty()) {
    auto [cost, i, to] = steps.top();
    steps.pop();
    saved += saved_units(layers[i], to) - saved_units(layers[i], rank[i]);
    rank[i] = to;
    push_next(i);
  }
  return rank;
}

std::vector<int64_t> allocate_uniform(const std::vector<RankCandidate>& layers, double to_save) {
  std::vector<int64_t> rank(layers.size(), 0);
  if (to_save <= 0) return rank;
  check_reachable(layers, to_save);
  auto ranks_at = [&](double rho) {
    std::vector<int64_t> r(layers.size(), 0);
    for (size_t i = 0; i < layers.size(); ++i) {
      const auto& c = layers[i];
      if (c.max_rank >= 1) r[i] = std::clamp(int64_t(rho * c.full_units / c.per_rank), int64_t(1), c.max_rank);
    }
    return r;
  };
  auto saved_at = [&](const std::vector<int64_t>& r) {
    double s = 0;
    for (size_t i = 0; i < layers.size(); ++i) s += saved_units(layers[i], r[i]);
    return s;
  };
  double lo = 0, hi = 1;  // saved_at(ranks_at(lo)) >= to_save always holds (rank 1 everywhere)
  for (int it = 0; it < 60; ++it) {
    double mid = 0.5 * (lo + hi);
    (saved_at(ranks_at(mid)) >= to_save ? lo : hi) = mid;
  }
  return ranks_at(lo);
}

}  // namespace vs::compress
