// AdamW (decoupled weight decay, Loshchilov & Hutter), a warmup + cosine learning-rate schedule
// and global gradient-norm clipping.
#pragma once
#include <cstdint>
#include <vector>

#include "io/state_dict.h"
#include "train/layers.h"

namespace vs::train {

struct AdamWSettings {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double weight_decay = 0.05;  // applied only to parameters with decay = true
};

class AdamW {
 public:
  AdamW(std::vector<Param*> params, AdamWSettings s);
  void step(double lr);  // one update from the current gradients
  int64_t steps() const { return t_; }
  // Moments and step count, for checkpoints ("adam.m.NAME", "adam.v.NAME", "adam.t").
  void save(StateDict& out) const;
  void load(const StateDict& in, const std::string& source);

 private:
  std::vector<Param*> params_;
  std::vector<Tensor> m_, v_;
  AdamWSettings s_;
  int64_t t_ = 0;
};

// Linear warmup over `warmup` steps, then cosine from base to base * min_ratio at `total`.
double cosine_lr(double base, int64_t step, int64_t total, int64_t warmup, double min_ratio = 0.0);

// Scales all gradients so that their global L2 norm is at most max_norm (if max_norm > 0);
// returns the norm before clipping.
double clip_grad_norm(const std::vector<Param*>& params, double max_norm);

}  // namespace vs::train
