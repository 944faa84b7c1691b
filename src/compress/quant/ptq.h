// Post-training quantisation of a ViT's Linear layers (calibrated static, or dynamic per token),
// producing QuantLinear layers that run as integer GEMMs.
//
// Quantisation points covered here: the input (activation) and weight of every Linear -
// patch_embed.proj, blocks.N.attn.qkv / attn.proj / mlp.fc1 / mlp.fc2, head (and head_dist).
// Weights: symmetric, per output channel. Activations: asymmetric u8, per tensor (static,
// calibrated on the calibration images only) or per token (dynamic).
// Static mode also quantises the attention operands of every block (nn::Attention::quant): q
// (u8), k and v (s8) per tensor at qk_bits, and the softmax probabilities (u8, zero point 0) at
// prob_bits; 16 leaves them float. Dynamic mode leaves attention float.
#pragma once
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "compress/quant/agq.h"
#include "compress/quant/observer.h"
#include "models/vit.h"

namespace vs::quant {

struct PtqSettings {
  int wbits = 8, abits = 8;
  int edge_bits = 8;           // patch_embed.proj and head: 8 bit, as customary
  int qk_bits = 8;             // attention q, k, v (16 = float)
  int prob_bits = 8;           // attention probabilities (16 = float)
  ProbQuantizer prob_quantizer = ProbQuantizer::uniform;  // compress/quant/agq.h
  bool smoothquant = false;    // SQ-b of MPTQ-ViT (compress/quant/smoothquant.h)
  bool big = false;            // PTQ4SAM's bimodal integration of the keys (compress/quant/big.h)
  bool repq = false;           // RepQ-ViT's reparameterisation of post-LayerNorm scales (compress/quant/repq.h)
  bool opt_m = false;          // OPT-m: twin-uniform mlp.fc2 inputs, ratio searched (compress/quant/optm.h)
  // GPTQ weight rounding (compress/quant/gptq.h) of every quantised Linear, on the Gram of its
  // calibration inputs (after BIG / SQ-b / RepQ; each token scaled to unit RMS, so that a few
  // massive-activation tokens do not decide it); per-channel scales stay the weight observer's.
  bool gptq = false;
  double gptq_damping = 0.01;
  // QuaRot-style random rotation of every Linear input quantised per token (--dynamic, or the
  // layers of dynamic_for): weights stored as W R, inputs quantised as x R (compress/quant/rotate.h).
  bool rotate = false;
  // Greedy mixed precision (compress/quant/mixed.h) over the blocks' Linear layers when > 0:
  // each gets W = A = one of mp_candidates, lowered greedily (loss: KL of the logits vs FP32 on
  // the first mp_images calibration images) until their weight-weighted average is <= avg_bits.
  double avg_bits = 0;
  std::vector<int> mp_candidates{4, 5, 6, 8};
  // 64: per-layer costs measured on 16 images differ from image set to image set by ~40 %, and on
  // ViT-Ti every allocation measured on 64 was closer to FP32 (eval KL) than its 16-image twin.
  int mp_images = 64;
  // What the candidates set: tied (W = A), weights (the weight bits; every input stays at abits),
  // separate (weight bits and input bits greedily lowered as items of their own, each of the two
  // averages, both weighted by the layers' weight counts, brought to <= avg_bits).
  enum class MixedBits { tied, weights, separate };
  MixedBits mp_bits = MixedBits::tied;
  // How the bits are chosen (compress/quant/mixed.h): greedy (MPTQ-ViT: from the highest candidate,
  // lower step by step, each step's KL measured in the model quantised so far); greedy_isolated
  // (MPTQ-ViT's greedy rule on each item's KL measured alone in the float model at every candidate)
  // or knapsack (the exact best allocation of those isolated costs under the budget). The isolated
  // searches keep their allocation only when its measured KL is below uniform bits'.
  enum class MixedSearch { greedy, greedy_isolated, knapsack };
  MixedSearch mp_search = MixedSearch::greedy_isolated;
  // Check of the search's result: the KL of its assignment and of uniform bits (every item at the
  // largest candidate <= avg_bits) on up to mp_check_images calibration images the search did not
  // see (those after the first mp_images); uniform bits are kept when they do better (a fit to a
  // few images' KL can be worse than uniform, and uniform meets the same budget).
  // 0: no check.
  int mp_check_images = 64;
  bool dynamic = false;        // per-token activation scales at run time, no calibration
  Observer weight_observer = Observer::mse;
  Observer act_observer = Observer::minmax;
  double percentile = 99.99;
  std::vector<std::string> keep_float;  // layer prefixes left dense, e.g. "head"
  // Layers whose name ends with one of these get per-token (dynamic) activation scales even in
  // static mode, e.g. "mlp.fc2": post-GELU inputs are the one place per-tensor 8 bit loses
  // accuracy on ViT-Ti (measured: fc2 kept float -> 83.37 top-1, all static -> 80.85).
  std::vector<std::string> dynamic_for;
  int batch = 16;                       // calibration batch size
};

// The float layers quantize_model replaced, by name (their weights after SQ-b / BIG, before
// rounding): what block reconstruction (compress/reconstruct) learns the rounding of.
using FloatLayers = std::map<std::string, std::unique_ptr<nn::Linear>>;

// --mp-search's names: greedy, greedy-isolated, knapsack (parse throws naming the choices).
PtqSettings::MixedSearch parse_mixed_search(const std::string& name);
std::string mixed_search_name(PtqSettings::MixedSearch search);

// Quantises `model` in place. calib_images: preprocessed by the model's own pipeline.
// Returns the "quantization" section for config.json (method, observers, bits per layer).
// `replaced`, when given, receives the float layers that were quantised.
nlohmann::json quantize_model(models::ViT& model, const PtqSettings& s,
                              const std::vector<std::string>& calib_images, bool progress = true,
                              FloatLayers* replaced = nullptr);

}  // namespace vs::quant
