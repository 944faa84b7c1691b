// Calibration statistics for activation-aware pruning scores, gathered in one pass over the
// calibration images through compress::Capture (Linear inputs and outputs).
#pragma once
#include <string>
#include <vector>

#include "models/vit.h"

namespace vs::prune {

struct BlockStats {
  // Per head, d x d (d = the head's q/k width): M = sum over images of (Q^T Q) o (Kc^T Kc), with
  // Q, K the head's queries and keys [tokens, d] and Kc = K minus its mean over tokens. Removing
  // the q/k pairs R changes the attention logits Q K^T by sum_{i,j in R} M_ij in squared
  // Frobenius norm, up to a constant per query row (which softmax ignores).
  std::vector<std::vector<double>> qk_m;
  std::vector<double> ctx_gram;           // [v_total, v_total]: Gram of proj's input (attention outputs)
  std::vector<double> hidden_sq;          // [hidden]: sum of squares of fc2's input (post-GELU)
  std::vector<double> hidden_mean, ctx_mean;  // means of fc2's and proj's inputs over the tokens
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
