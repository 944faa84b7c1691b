// SQ-b - SmoothQuant with a bias term (MPTQ-ViT, arXiv 2401.14895), for the activations that a
// LayerNorm hands to a Linear layer (norm1 -> attn.qkv, norm2 -> mlp.fc1). Per input channel j:
//   z_j = (max_j + min_j) / 2        (centre of its calibration range: removes the offset)
//   s_j = max|X_j - z_j|^a / max|W_:,j|^(1-a)   (migrates outliers from activations to weights)
// and the layer computes  X W^T + b = ((X - z) / s) (W diag(s))^T + (b + W z),  with (X - z) / s
// produced by the LayerNorm itself (gamma' = gamma / s, beta' = (beta - z) / s). The float
// function is unchanged (up to rounding). a is searched on {0, 0.1, ..., 1} per layer: the one
// whose quantised layer output (activations per tensor, weights per channel, the configured
// observers and bits) is closest to the float output on a calibration sample; a = "off" (no
// smoothing) competes too, so a layer is smoothed only where it helps.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "compress/quant/observer.h"
#include "nn/layernorm.h"
#include "nn/linear.h"

namespace vs::quant {

// Calibration statistics of one Linear layer's input: per-channel range over every calibration
// token, and a sample of rows for the search.
struct InputStats {
  std::vector<float> lo, hi;
  std::vector<float> sample;  // [rows, in]
  int64_t sample_rows = 0;
  void observe(const float* x, int64_t rows, int64_t cols, int64_t max_sample_rows);
};

struct SmoothResult {
  double alpha = -1;  // -1: not smoothed
  double error_before = 0, error_after = 0;  // ||Q(X) Q(W)^T - X W^T||^2 / elements, on the sample
};

// Folds X' = (X - z) / s (per input channel) into the LayerNorm (gamma' = gamma / s,
// beta' = (beta - z) / s) and the layer after it (W' = W diag(s), b' = b + W z): the float
// function is unchanged. Shared by SQ-b and the RepQ-ViT reparameterisation (repq.h).
void fold_norm_linear(nn::LayerNorm& norm, std::unique_ptr<nn::Linear>& linear, const std::vector<float>& z,
                      const std::vector<float>& s);

SmoothResult smooth_norm_linear(nn::LayerNorm& norm, std::unique_ptr<nn::Linear>& linear, const InputStats& st,
                                int wbits, int abits, Observer wobs, Observer aobs);

}  // namespace vs::quant
