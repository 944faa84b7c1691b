// Calibration: choosing the clipping range each quantizer maps onto its integer grid.
//
//   minmax     : the plain [min, max] (or [-absmax, absmax]) range; never clips.
//   percentile : the p-th percentile (default 99.99) of |x| for symmetric ranges, of the two
//                tails (100 - p, p) for asymmetric ones; clips rare outliers to resolve the bulk.
//   mse        : the range alpha * [min, max] (alpha on a 100-step grid from 1.0 down to 0.2)
//                whose fake-quantised values have the least squared error; trades clipping error
//                against rounding error directly.
//
// Weights are calibrated in one call per tensor; activations accumulate over calibration batches
// in an ActObserver (running min/max plus a bounded, deterministic reservoir sample that the
// percentile and mse choices are computed on).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "compress/quant/quantizer.h"

namespace vs::quant {

enum class Observer { minmax, percentile, mse };

// "minmax" | "percentile" | "mse"; anything else throws vs::Error naming the valid choices.
Observer parse_observer(const std::string& name);
std::string observer_name(Observer obs);

// Per-tensor / per-channel (row) / per-group params for a [rows, cols] weight. Granularity::token
// is rejected (it is a run-time activation scheme). bits 16 returns "off" params (scales 1).
QParams calibrate_weight(const float* w, int64_t rows, int64_t cols, int bits, bool symmetric,
                         Granularity g, int group, Observer obs, double percentile = 99.99);

// Accumulates activation statistics over calibration batches; finalize() gives per-tensor params.
// Not thread-safe: one observer per activation tensor, fed from one thread at a time.
class ActObserver {
 public:
  static constexpr int64_t kDefaultCapacity = int64_t(1) << 20;  // sample values kept (4 MiB)

  // The sample is a uniform reservoir over every value observed, drawn from a fixed seed so that
  // calibration is reproducible.
  explicit ActObserver(int64_t capacity = kDefaultCapacity, uint64_t seed = 0x9e3779b97f4a7c15ull);

  void observe(const float* x, int64_t rows, int64_t cols);

  // Throws if nothing was observed or percentile is outside [50, 100].
  QParams finalize(int bits, bool symmetric, Observer obs, double percentile = 99.99) const;

  float min() const { return min_; }
  float max() const { return max_; }
  float absmax() const;
  int64_t count() const { return count_; }                    // values observed so far
  const std::vector<float>& sample() const { return sample_; }  // <= capacity values

 private:
  void take(float v);   // reservoir insertion for the next selected value
  double uniform();     // in (0, 1)
  uint64_t next_u64();  // splitmix64: tiny, portable, deterministic
  void advance_skip();  // Algorithm L: how many values to pass over before the next insertion

  int64_t capacity_;
  uint64_t state_;
  int64_t count_ = 0;
  int64_t next_take_ = 0;  // global index of the next value that enters a full reservoir
  double w_ = 0;
  float min_ = 0, max_ = 0;
  std::vector<float> sample_;
};

// Log2 scale for attention probabilities. s is chosen among max(p) * 2^(-k/8), k = 0..7 (one
// octave, which covers every phase of the log2 grid relative to the data for tau in {1, 2, 4})
// by least squared error of fake_quantize_log2 over the kept sample; ties keep the larger s, so
// s = max(p) (usually ~1) unless shifting the grid measurably helps the bulk of the values.
// A distribution without positive values gets s = 1.
Log2Params calibrate_log2(const ActObserver& probs, int bits, int tau);

}  // namespace vs::quant
