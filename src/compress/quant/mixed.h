// Greedy mixed precision (MPTQ-ViT, arXiv 2401.14895): every layer gets its own bit width from a
// candidate set (its weights and its input at the same width). All layers start at the highest
// candidate; each step lowers, by one candidate, the layer whose loss increase per bit saved
// (loss: the caller's, e.g. KL of the logits vs the FP32 model on calibration images) is
// smallest, until the average bit width over these layers, weighted by their weight counts (that
// is, the size of their weight codes), is at most the target.
// Items may come in groups (e.g. the layers' weight bits and their input bits, lowered
// separately): each group's own average must reach the target, and only items of groups still
// above it are lowered.
// Cost control: each layer's next step is measured once and cached; after a step only the
// lowered layer's next step is measured again. Cached increases of the other layers become stale
// as the model changes, so before committing, the best candidate is re-measured if its value is
// stale (lazy greedy, at most kMaxRefresh re-measurements per step), and the committed step's
// fresh measurement becomes the current loss.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

namespace vs::quant {

struct MixedStep {
  size_t layer = 0;
  int from = 0, to = 0;
  double loss_increase = 0;  // measured just before the step
  double avg_bits = 0;       // of the step's group, after the step
};

struct MixedResult {
  std::vector<int> bits;     // per layer
  double avg_bits = 0;       // the highest group average
  std::vector<double> group_avg_bits;
  double loss = 0;           // of the final assignment (measured)
  int64_t measurements = 0;  // calls of loss_with (and, knapsack, of loss_now)
  bool reached = true;       // false: every layer is at the lowest candidate and the target was not met
  std::vector<MixedStep> steps;
  // Isolated searches only: each item's isolated loss change at each candidate, the summed change of the
  // chosen assignment they predict, its measured loss, and whether it beat the baseline.
  std::vector<std::vector<std::pair<int, double>>> sensitivity;
  std::vector<int> chosen;  // the allocation, kept or not
  double predicted = 0, chosen_loss = 0, baseline_loss = 0;
  bool kept_chosen = false;
};

constexpr int kMaxRefresh = 4;

// weights: per layer weight count (> 0); candidates: allowed bit widths (any order, deduplicated
// here); start_loss: the loss with every layer at the highest candidate (the caller's current
// state). loss_with(l, b): the loss with layer l at b and every other layer as assigned so far;
// set(l, b) commits. progress(step) is called after every step. group: per layer its group
// 0..G-1 (empty: one group).
MixedResult greedy_mixed_precision(const std::vector<int64_t>& weights, std::vector<int> candidates,
                                   double target_avg, double start_loss,
                                   const std::function<double(size_t, int)>& loss_with,
                                   const std::function<void(size_t, int)>& set,
                                   const std::function<void(int64_t)>& progress = {},
                                   const std::vector<int>& group = {});

// Mixed precision on isolated sensitivities (HAWQ-style allocation).
// Why not measure around a quantised state (as greedy_mixed_precision does): the loss of a quantised
// model is about |sum of the layers' output errors|^2, so changing one layer's bits in an already
// quantised model moves the loss mostly through the cross terms with every other layer's error -
// noise of either sign, as large as the layer's own term (measured on ViT-Ti at 5 bits: raising one
// layer to 8 bits raised the KL about as often as it lowered it). Measured alone - the caller's
// state on entry should be the unquantised model - the cross terms vanish and the changes nearly
// add up. So: sensitivity[l][c] = loss_with(l, c) - start_loss for every item and candidate, made
// non-negative and non-increasing in the bit width (a guard against noise the allocation would
// otherwise exploit); then, per group (average <= target), the assignment comes from `allocation`:
// - knapsack: the candidates minimising the summed sensitivities under the budget, exactly, by
//   dynamic programming over the budget;
// - greedy: MPTQ-ViT's rule on these costs - every item at the highest candidate, then repeatedly
//   lower by one candidate the item whose sensitivity increase per bit saved (times its weight
//   count) is smallest, until the group's average is at most the target. On costs convex in the
//   bits this is close to the knapsack's optimum (measured on ViT-Ti: 1-7 of 48-96 items differ).
// `restore()` then brings the caller back to its quantised state; the assignment is applied (set)
// and measured (loss_now) and kept only if its loss is below that of the `baseline` assignment
// (e.g. uniform bits, which meet the same budget), else the items are set to the baseline.
// Result: loss is the kept assignment's measured loss; steps list the items that differ from the
// baseline (loss_increase: their sensitivity at the chosen width).
enum class IsolatedAllocation { knapsack, greedy };
MixedResult isolated_mixed_precision(IsolatedAllocation allocation, const std::vector<int64_t>& weights,
                                     std::vector<int> candidates, double target_avg, double start_loss,
                                     const std::function<double(size_t, int)>& loss_with,
                                     const std::function<void(size_t, int)>& set,
                                     const std::function<void()>& restore,
                                     const std::function<double()>& loss_now,
                                     const std::vector<int>& baseline,
                                     const std::function<void(int64_t)>& progress = {},
                                     const std::vector<int>& group = {});

// The weighted average bit width of an assignment (over the layers of group `g` when `group` is given).
double average_bits(const std::vector<int>& bits, const std::vector<int64_t>& weights,
                    const std::vector<int>& group = {}, int g = 0);

}  // namespace vs::quant
