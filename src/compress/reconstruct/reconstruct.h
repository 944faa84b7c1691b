// PTQ block reconstruction (BRECQ, Li et al. 2021; QDrop, Wei et al. 2022), run after
// calibration-only PTQ (compress/quant/ptq.h). Block by block, in order, the quantised block is
// trained to reproduce the FP32 block's output on the calibration images:
//  - inputs: the output of the already-reconstructed quantised blocks before it (run on the
//    normal integer path), mixed element-wise with the FP32 input with probability drop_prob
//    during learning (QDrop); every quantiser of the block is active in every step;
//  - target: the FP32 model's block output for the FP32 input;
//  - learned: AdaRound weight rounding of every quantised Linear (rectified sigmoid offsets on
//    floor(w / s), regulariser weight reg_weight with beta annealed from beta_start to beta_end
//    after the first `warmup` fraction of steps; hard rounding at the end into the integer
//    codes the QuantLinear stores) and LSQ step sizes of every static input quantiser (the saved
//    activation scales), and of the attention operands q, k, v and the probabilities;
//  - loss: mean over tokens of the squared error summed over channels, + regulariser; Adam.
// Weight scales, zero points, LayerNorms and biases are kept. The result is an ordinary
// quantised model: the blocks are replaced in place.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "compress/quant/ptq.h"
#include "models/vit.h"

namespace vs::compress {

struct ReconstructSettings {
  int64_t iters = 100;        // optimisation steps per block
  int64_t batch = 16;         // images per step
  double lr_rounding = 1e-2;  // Adam, AdaRound logits (BRECQ: 1e-3 over 20k steps; here few steps)
  double lr_scale = 5e-3;     // Adam on log(step size): relative change per step
  double reg_weight = 0.01;   // AdaRound regulariser weight
  float beta_start = 20.f, beta_end = 2.f;
  double warmup = 0.2;        // fraction of steps without the regulariser
  double drop_prob = 0.5;     // QDrop: probability of taking an input element from the FP32 input
  bool learn_rounding = true, learn_scales = true;
  uint64_t seed = 0;
  bool progress = true;

  nlohmann::json to_json() const;
};

// quant: the model quantize_model produced from a float model; float_layers: the float layers it
// replaced (quantize_model's `replaced`); reference: the FP32 model (same architecture) whose
// block outputs are the targets; images: calibration image paths. Returns config.json's
// "reconstruction" section (settings, per-block output MSE before / after, seconds).
nlohmann::json reconstruct(models::ViT& quant, const quant::FloatLayers& float_layers,
                           const models::ViT& reference, const std::vector<std::string>& images,
                           const ReconstructSettings& s);

// Block reconstruction of a float model whose Linear layers were approximated (low rank:
// compress/lowrank), i.e. layer-wise error compensation by gradient steps on a block's output
// (Azizi et al.'s compensation uses each layer's output; a block's output also sees how the
// errors of its layers combine). Block by block, in order: inputs X' = the output of the
// already-refined blocks before it; target = the reference block on the same X' (not the FP32
// model's own activations: least squares towards those from perturbed inputs shrinks the
// weights, docs/lowrank.md); every parameter of the block (Linear factors and biases, LayerNorms)
// trained by Adam, learning rate `lr` cosine-decayed to 0 over `iters` steps of `batch` images;
// loss: mean squared error over the block's outputs. Returns config.json's "refinement" section.
struct RefineSettings {
  int64_t iters = 200;
  int64_t batch = 16;
  double lr = 1e-3;
  uint64_t seed = 0;
  bool progress = true;
  // Target the reference block's output on the reference's own inputs (BRECQ-style) instead.
  bool target_original_inputs = false;
  // Augmented views (random resized crop, area >= 35 %, and flip; train/augment.h) of every
  // calibration image added to the training set, drawn from `seed`: more distinct tokens for the
  // same number of steps. 0: the images only.
  int64_t augment_views = 0;
  // Loss per token relative to the target token's variance over channels, i.e. the error as the
  // next LayerNorm sees it: mean_t |y'_t - y_t|^2 / var(y_t). ViT-Ti's later blocks carry a few
  // tokens with massive activations (per-token std ~40 against ~1.1 for the rest), which
  // otherwise dominate the plain mean squared error.
  bool token_relative = false;
  // The last block's loss only on the tokens the head reads (with token pooling: the class token,
  // and the distillation token if any): its other outputs are never used, so fitting them spends
  // the block's parameters on nothing. Average pooling reads every token: no change.
  bool head_tokens_last = false;
  nlohmann::json to_json() const;
};
nlohmann::json refine_blocks(models::ViT& model, const models::ViT& reference, const std::vector<std::string>& images,
                             const RefineSettings& s);

}  // namespace vs::compress
