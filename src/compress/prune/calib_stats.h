// Calibration statistics for activation-aware pruning scores, gathered in one pass over the
// calibration images through compress::Capture (Linear inputs and outputs).
#pragma once
#include <string>
#include <vector>

#include "compress/moments.h"
#include "models/vit.h"

namespace vs::prune {

using compress::Moments;

struct BlockStats {
  // Per head, d x d (d = the head's q/k width), summed over images and query tokens t:
  //   M = scale^2 sum_t (q_t q_t^T) o Cov_{P_t}(k),
  // Cov_{P_t}(k) the covariance of the keys under the query's attention distribution P_t. Removing
  // the q/k pairs R changes query t's logits by delta_s = -scale sum_{j in R} q_tj k_sj, and
  // KL(P_t || P'_t) = 1/2 Var_{P_t}(delta) + O(delta^3), so sum_{i,j in R} M_ij is twice the
  // attention KL summed over the calibration queries, to second order: "preserve the attention
  // scores", measured where softmax puts its mass.
  std::vector<std::vector<double>> qk_m;
  Moments ctx;     // proj's input (attention outputs, [v_total])
  Moments hidden;  // fc2's input (post-GELU, [hidden])
  std::vector<double> qkv_in_sq, fc1_in_sq;  // [C]: sum of squares of the LayerNorm outputs
};

struct CalibStats {
  std::vector<BlockStats> blocks;
  std::vector<double> head_in_sq;  // [C]: the classifier's input features
  int64_t images = 0;
};

// calib: batches of preprocessed images [B, 3, S, S].
CalibStats collect_stats(models::ViT& model, const std::vector<Tensor>& calib, bool progress = true);

}  // namespace vs::prune
