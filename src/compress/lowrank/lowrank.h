// Low-rank compression of a ViT's Linear layers (Azizi, Nazemi and Pedram, arXiv 2402.06004,
// "Memory-Efficient Vision Transformers: An Activation-Aware Mixed-Rank Compression Strategy"):
//
//  1. statistics: X^T X (float64) of every Linear's input over the calibration images;
//  2. factorisation: activation-aware (best rank-r fit of the layer's output on those inputs,
//     see factorize.h) or plain SVD of W;
//  2b. attention as per-head circuits (circuits.h, default): each head's q k^T score form and its
//     v -> proj map cut to their own ranks, narrower heads instead of factorised qkv / proj;
//  2c. MLPs as hidden units (mlp_units.h, default): an interpolative decomposition of each MLP's
//     hidden activations keeps r of its units (fc2 refitted), narrower MLPs instead of factorised
//     fc1 / fc2;
//  3. ranks: greedy mixed ranks meeting a global parameter or MAC budget, trading the smallest
//     increase in relative output error per unit saved (allocate.h), or one uniform fraction;
//  4. error compensation, layer by layer in forward order: each factorised layer is refitted
//     (factors and bias) on the inputs X' it really gets in the already-compressed model, so
//     errors of earlier layers are seen by later ones, against its own FP32 weights on those
//     inputs (X' W^T + b; targeting the FP32 model's outputs X W^T + b instead shrinks the
//     weights, see lowrank.cpp). The loss is quadratic, so we solve it exactly (reduced-rank
//     regression, factorize.h) instead of taking gradient steps towards the same minimum;
//  5. block refinement: gradient steps on each block's output against the original block on the
//     same inputs, every parameter of the block (compress/reconstruct/reconstruct.h).
//
// Layers become LowRankLinear (down = B, up = A with the bias); a layer whose factorisation
// would not save anything stays dense. Cut attention keeps dense qkv / proj of the heads' new
// widths (ViTConfig::head_layouts, saved like structured pruning's).
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "models/vit.h"

namespace vs::compress {

struct LowRankSettings {
  enum class Budget { params, flops };
  Budget budget = Budget::params;  // what `fraction` is a fraction of
  double fraction = 0.8;           // keep this fraction of the model's parameters / MACs, (0, 1]
  bool activation_aware = true;    // false: plain SVD of W
  // Defaults: the best measured combination on ViT-Ti (docs/lowrank.md): greedy mixed ranks with
  // compensation (best at 90 / 80 / 70 % of the parameters).
  bool mixed = true;               // greedy mixed ranks; false: one uniform fraction per layer
  // What the greedy allocation compares across layers (squared, summed over layers): the mean
  // over output channels of each channel's relative error (channel), or the layer's total
  // relative output error (total: dominated by the few huge channels ViTs have).
  // kl: the KL divergence of the model's logits from FP32 measured with that layer alone cut to
  // each of 4 probe ranks (its uniform ranks at budgets saving 1/2, 1, 3/2, 2 times the target's
  // saving), interpolated in the rank; ranks below the lowest probe are not used.
  enum class RankError { channel, total, kl };
  RankError rank_error = RankError::kl;
  int sensitivity_images = 16;     // calibration images the KL probes run on
  // Attention as per-head circuits (lowrank/circuits.h): each head's q k^T score form and its
  // v -> proj map cut to their own ranks (narrower heads, no extra GEMM) instead of factorising
  // qkv and proj as Linears; they join the same allocation.
  bool circuits = true;
  // The q/k circuits' fit weighs score errors as the softmax sees them (circuits.h, KeyWeights)
  // instead of every query-key pair alike.
  bool qk_attention_weighted = false;
  // MLPs as hidden units (lowrank/mlp_units.h): an interpolative decomposition of the hidden
  // activations keeps r units (fc2 refitted), a narrower MLP instead of factorising fc1 and fc2
  // as Linears; the MLPs join the same allocation.
  bool mlp_units = true;
  bool compensate = true;          // closed-form error compensation
  double damping = 1e-4;           // ridge of the compensation least squares, x mean(diag X'^T X')
  int batch = 16;                  // calibration batch size
  // Layers left dense (exact names, e.g. "head"). Layers with fewer calibration rows than inputs
  // are always left dense (their statistics cannot support an activation-aware fit).
  std::vector<std::string> keep_dense;
  // 5. Block refinement after compensation (compress/reconstruct/reconstruct.h, refine_blocks):
  // Adam steps per block on its output against the original block on the same inputs; 0: off.
  // On by default since the ninth session: +10 points at 80 % of ViT-Ti's parameters
  // (docs/lowrank.md; 200 steps at 1e-3 measured as good as 500 at 1e-4); with 3 augmented views
  // of each calibration image (tenth session) +1.15 more and a 5 % lower KL at 80 %.
  int64_t refine_iters = 200;
  int64_t refine_batch = 16;
  double refine_lr = 1e-3;
  bool refine_to_original = false;  // RefineSettings::target_original_inputs
  int64_t refine_views = 3;         // RefineSettings::augment_views (docs/lowrank.md: 3 measured best)
  bool refine_token_relative = false;  // RefineSettings::token_relative
  bool refine_head_tokens_last = false;  // RefineSettings::head_tokens_last
};

// Compresses `model` in place (its Linear layers must all be dense). calib_images: paths,
// preprocessed by the model's own pipeline. Returns the "lowrank" section for config.json.
nlohmann::json lowrank_model(models::ViT& model, const LowRankSettings& s,
                             const std::vector<std::string>& calib_images, bool progress = true);

}  // namespace vs::compress
