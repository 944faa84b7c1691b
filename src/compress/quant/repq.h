// RepQ-ViT-style scale reparameterisation of post-LayerNorm activations (Li et al., ICCV 2023),
// the classic baseline next to SQ-b. Per input channel j of the layer after a LayerNorm, the
// per-channel asymmetric quantizer of its calibration range [lo_j, hi_j] at `abits` has scale s_j
// and zero point z_j. With the per-tensor targets s~ = mean_j s_j and z~ = round(mean_j z_j),
// r1_j = s_j / s~ and r2_j = z_j - z~, the channel is rewritten as X'_j = (X_j + s_j r2_j) / r1_j,
// folded into the LayerNorm and the next layer (smoothquant.h's fold_norm_linear with shift
// -s_j r2_j and scale r1_j): then round(X'_j / s~) + z~ = round(X_j / s_j) + z_j, i.e. one
// per-tensor quantizer of X' reproduces the per-channel quantizer of X. The float function is
// unchanged; the per-tensor range of X' is then calibrated as usual.
#pragma once
#include <memory>

#include "compress/quant/smoothquant.h"

namespace vs::quant {

struct RepqResult {
  double scale_spread = 1;  // max_j r1_j / min_j r1_j: how far the channels' scales were apart
  float tensor_scale = 1;   // s~
  int32_t tensor_zero = 0;  // z~
};

RepqResult repq_norm_linear(nn::LayerNorm& norm, std::unique_ptr<nn::Linear>& linear, const InputStats& st,
                            int abits);

}  // namespace vs::quant
