#include "compress/quant/mixed.h"

#include <algorithm>
#include <limits>

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

}  // namespace vs::quant
