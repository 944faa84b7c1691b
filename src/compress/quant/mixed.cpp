#include "compress/quant/mixed.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/error.h"

namespace vs::quant {

double average_bits(const std::vector<int>& bits, const std::vector<int64_t>& weights,
                    const std::vector<int>& group, int g) {
  double num = 0, den = 0;
  for (size_t l = 0; l < bits.size(); ++l) {
    if (!group.empty() && group[l] != g) continue;
    num += double(bits[l]) * double(weights[l]);
    den += double(weights[l]);
  }
  return den > 0 ? num / den : 0;
}

MixedResult greedy_mixed_precision(const std::vector<int64_t>& weights, std::vector<int> candidates,
                                   double target_avg, double start_loss,
                                   const std::function<double(size_t, int)>& loss_with,
                                   const std::function<void(size_t, int)>& set,
                                   const std::function<void(int64_t)>& progress,
                                   const std::vector<int>& group) {
  check(!candidates.empty(), "mixed precision: no candidate bit widths");
  std::sort(candidates.begin(), candidates.end());
  candidates.erase(std::unique(candidates.begin(), candidates.end()), candidates.end());
  for (int64_t w : weights) check(w > 0, "mixed precision: every layer needs a positive weight count");
  const size_t L = weights.size();
  check(group.empty() || group.size() == L, "mixed precision: one group per layer");
  const int G = group.empty() ? 1 : *std::max_element(group.begin(), group.end()) + 1;
  auto group_of = [&](size_t l) { return group.empty() ? 0 : group[l]; };
  MixedResult r;
  r.bits.assign(L, candidates.back());
  r.loss = start_loss;
  auto lower = [&](int b) {  // the next candidate below b, or 0
    auto it = std::lower_bound(candidates.begin(), candidates.end(), b);
    return it == candidates.begin() ? 0 : *(it - 1);
  };
  // Cached next step of each layer: the loss with it lowered, and the step (version) it was measured at.
  struct Next {
    int bits = 0;
    double loss = 0;
    int64_t version = -1;
  };
  std::vector<Next> next(L);
  int64_t version = 0;
  auto measure = [&](size_t l) {
    next[l].bits = lower(r.bits[l]);
    if (next[l].bits == 0) return;
    next[l].loss = loss_with(l, next[l].bits);
    next[l].version = version;
    ++r.measurements;
  };
  auto score = [&](size_t l) {  // loss increase per bit saved (over the weights)
    return (next[l].loss - r.loss) / (double(r.bits[l] - next[l].bits) * double(weights[l]));
  };
  auto update_averages = [&] {
    r.group_avg_bits.resize(size_t(G));
    for (int g = 0; g < G; ++g) r.group_avg_bits[size_t(g)] = average_bits(r.bits, weights, group, g);
    r.avg_bits = *std::max_element(r.group_avg_bits.begin(), r.group_avg_bits.end());
  };
  update_averages();
  if (r.avg_bits <= target_avg) return r;
  for (size_t l = 0; l < L; ++l) measure(l);
  while (r.avg_bits > target_avg) {
    auto pick = [&](bool fresh_only) {
      size_t b = L;
      for (size_t l = 0; l < L; ++l)
        if (next[l].bits > 0 && r.group_avg_bits[size_t(group_of(l))] > target_avg && (!fresh_only || next[l].version == version) && (b == L || score(l) < score(b))) b = l;
      return b;
    };
    size_t best = pick(false);
    for (int refresh = 0; best != L && next[best].version != version; ++refresh) {
      if (refresh >= kMaxRefresh) {  // enough re-measuring: the best fresh one, else this one re-measured
        if (size_t f = pick(true); f != L) {
          best = f;
          break;
        }
      }
      measure(best);  // stale: measure it against the current model and choose again
      best = pick(false);
    }
    if (best == L) {
      r.reached = false;
      break;
    }
    MixedStep st{best, r.bits[best], next[best].bits, next[best].loss - r.loss, 0};
    set(best, next[best].bits);
    r.bits[best] = next[best].bits;
    r.loss = next[best].loss;
    update_averages();
    st.avg_bits = r.group_avg_bits[size_t(group_of(best))];
    r.steps.push_back(st);
    ++version;
    if (st.avg_bits > target_avg) measure(best);  // (a group at its target lowers nothing more)
    else next[best].bits = 0;
    if (progress) progress(int64_t(r.steps.size()));
  }
  return r;
}

namespace {

// Per item the index into `options[i]` minimising the summed cost under sum(units * bits) <= cap;
// options[i][k] = {bits, cost}. Units are small integers (the budget is at most a few thousand
// units, see below), so the table is small. Ties go to the first option (deterministic).
std::vector<size_t> knapsack(const std::vector<int64_t>& units, const std::vector<std::vector<std::pair<int, double>>>& options,
                             int64_t cap) {
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> best(size_t(cap) + 1, inf), next;
  best[0] = 0;  // best[c]: least cost of the items so far using exactly c units
  std::vector<std::vector<int16_t>> choice(units.size(), std::vector<int16_t>(size_t(cap) + 1, -1));
  for (size_t i = 0; i < units.size(); ++i) {
    next.assign(size_t(cap) + 1, inf);
    for (int64_t c = 0; c <= cap; ++c) {
      if (best[size_t(c)] == inf) continue;
      for (size_t k = 0; k < options[i].size(); ++k) {
        const int64_t to = c + units[i] * options[i][k].first;
        if (to > cap) continue;
        const double v = best[size_t(c)] + options[i][k].second;
        if (v < next[size_t(to)]) next[size_t(to)] = v, choice[i][size_t(to)] = int16_t(k);
      }
    }
    best.swap(next);
  }
  int64_t at = -1;
  for (int64_t c = 0; c <= cap; ++c)
    if (best[size_t(c)] < inf && (at < 0 || best[size_t(c)] < best[size_t(at)])) at = c;
  check(at >= 0, "mixed precision: no assignment meets the target");
  std::vector<size_t> pick(units.size());
  for (size_t i = units.size(); i-- > 0;) {
    pick[i] = size_t(choice[i][size_t(at)]);
    at -= units[i] * options[i][pick[i]].first;
  }
  return pick;
}

// MPTQ-ViT's greedy on a cost table: per item the index into `options[i]` (options[i][k] = {bits,
// cost}, bits ascending) after starting every item at its last option and lowering, one option at
// a time, the item with the least cost increase per unit saved (units * bits dropped) while
// sum(units * bits) > cap. Ties go to the first item (deterministic).
std::vector<size_t> greedy_on_costs(const std::vector<int64_t>& units,
                                    const std::vector<std::vector<std::pair<int, double>>>& options, int64_t cap) {
  std::vector<size_t> pick(units.size());
  int64_t used = 0;
  for (size_t i = 0; i < units.size(); ++i) pick[i] = options[i].size() - 1, used += units[i] * options[i].back().first;
  while (used > cap) {
    size_t best = units.size();
    double best_score = 0;
    for (size_t i = 0; i < units.size(); ++i) {
      if (pick[i] == 0) continue;
      const auto& [b_hi, c_hi] = options[i][pick[i]];
      const auto& [b_lo, c_lo] = options[i][pick[i] - 1];
      const double score = (c_lo - c_hi) / (double(units[i]) * double(b_hi - b_lo));
      if (best == units.size() || score < best_score) best = i, best_score = score;
    }
    check(best < units.size(), "mixed precision: no assignment meets the target");
    used -= units[best] * (options[best][pick[best]].first - options[best][pick[best] - 1].first);
    --pick[best];
  }
  return pick;
}

}  // namespace

MixedResult isolated_mixed_precision(IsolatedAllocation allocation, const std::vector<int64_t>& weights,
                                     std::vector<int> candidates, double target_avg, double start_loss,
                                     const std::function<double(size_t, int)>& loss_with,
                                     const std::function<void(size_t, int)>& set,
                                     const std::function<void()>& restore,
                                     const std::function<double()>& loss_now,
                                     const std::vector<int>& baseline,
                                     const std::function<void(int64_t)>& progress, const std::vector<int>& group) {
  check(!candidates.empty(), "mixed precision: no candidate bit widths");
  std::sort(candidates.begin(), candidates.end());
  candidates.erase(std::unique(candidates.begin(), candidates.end()), candidates.end());
  const size_t L = weights.size();
  check(baseline.size() == L && (group.empty() || group.size() == L), "mixed precision: one baseline width and group per item");
  for (int64_t w : weights) check(w > 0, "mixed precision: every layer needs a positive weight count");
  const int G = group.empty() ? 1 : *std::max_element(group.begin(), group.end()) + 1;
  auto group_of = [&](size_t l) { return group.empty() ? 0 : group[l]; };
  MixedResult r;
  // Isolated sensitivities (every other item as on entry), then the noise guard: >= 0 and no
  // larger at more bits.
  r.sensitivity.resize(L);
  int64_t done = 0;
  for (size_t l = 0; l < L; ++l) {
    for (int c : candidates) {
      r.sensitivity[l].push_back({c, std::max(0.0, loss_with(l, c) - start_loss)});
      ++r.measurements;
      if (progress) progress(++done);
    }
    for (size_t k = candidates.size() - 1; k-- > 0;)
      r.sensitivity[l][k].second = std::max(r.sensitivity[l][k].second, r.sensitivity[l][k + 1].second);
  }
  restore();
  // One allocation per group. Budget units: the weights over their common divisor, or (when that
  // leaves too many units) rounded up to 1/4096 of the group's total, so the table stays small and
  // the rounded budget never admits an assignment over the real one.
  std::vector<int> chosen(L);
  for (int g = 0; g < G; ++g) {
    std::vector<size_t> items;
    int64_t gcd = 0, total = 0;
    for (size_t l = 0; l < L; ++l)
      if (group_of(l) == g) items.push_back(l), gcd = std::gcd(gcd, weights[l]), total += weights[l];
    const int64_t unit = total / gcd > 4096 ? (total + 4095) / 4096 : gcd;
    std::vector<int64_t> units;
    std::vector<std::vector<std::pair<int, double>>> opts;
    for (size_t l : items) units.push_back((weights[l] + unit - 1) / unit), opts.push_back(r.sensitivity[l]);
    const auto cap = int64_t(std::floor(target_avg * double(total) / double(unit) + 1e-9));
    const std::vector<size_t> pick =
        allocation == IsolatedAllocation::knapsack ? knapsack(units, opts, cap) : greedy_on_costs(units, opts, cap);
    for (size_t k = 0; k < items.size(); ++k) chosen[items[k]] = opts[k][pick[k]].first, r.predicted += opts[k][pick[k]].second;
  }
  for (size_t l = 0; l < L; ++l) set(l, baseline[l]);
  r.baseline_loss = loss_now();
  for (size_t l = 0; l < L; ++l) set(l, chosen[l]);
  r.chosen_loss = loss_now();
  r.measurements += 2;
  r.kept_chosen = r.chosen_loss < r.baseline_loss;
  r.chosen = chosen;
  if (r.kept_chosen) {
    r.bits = chosen;
    r.loss = r.chosen_loss;
  } else {  // not better than the baseline on the measured images
    for (size_t l = 0; l < L; ++l) set(l, baseline[l]);
    r.bits = baseline;
    r.loss = r.baseline_loss;
  }
  r.group_avg_bits.resize(size_t(G));
  for (int g = 0; g < G; ++g) r.group_avg_bits[size_t(g)] = average_bits(r.bits, weights, group, g);
  r.avg_bits = *std::max_element(r.group_avg_bits.begin(), r.group_avg_bits.end());
  r.reached = r.avg_bits <= target_avg + 1e-9;
  for (size_t l = 0; l < L; ++l)
    if (r.bits[l] != baseline[l])
      for (auto& [c, d] : r.sensitivity[l])
        if (c == r.bits[l]) r.steps.push_back({l, baseline[l], c, d, r.group_avg_bits[size_t(group_of(l))]});
  return r;
}

}  // namespace vs::quant
