// PTQ4SAM-style post-training quantisation of a SAM model (models/sam.h), encoder and decoder:
//   - every nn::Linear (TinyViT's 1x1 convs, attention and MLP layers, the neck's 1x1 conv; the
//     mask decoder's q/k/v/out projections, MLPs, hypernetwork MLPs and IoU head): weights per
//     output channel (symmetric), inputs u8 per tensor, calibrated;
//   - every attention module (TinyViT's windows, the decoder's self, token-to-image and
//     image-to-token attention): q, k, v and the softmax probabilities per tensor, q k^T and P v
//     as integer GEMMs (kernels/mha_quant.h); probabilities uniform, log2 or AGQ per module;
//   - BIG (compress/quant/big.h) on the key projections of every module whose keys are bimodal.
// Convolutions (stem, MBConv / patch-merging / local depthwise convs, the neck's 3x3 conv, the
// decoder's transposed upscaling convs, the mask-input downscaling), LayerNorm, GELU, softmax
// and the final hypernetwork x upscaled-embedding product stay float.
// Calibration: the images listed, each with its prompts (the decoder sees them all).
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "compress/quant/ptq.h"
#include "models/sam.h"

namespace vs::quant {

struct SamCalibItem {
  std::string image;                      // path
  std::vector<models::SamPrompt> prompts;  // original-image coordinates
};

// Settings: PtqSettings' wbits, abits, qk_bits, prob_bits, prob_quantizer, big,
// weight_observer, act_observer, percentile, keep_float, dynamic_for. edge_bits, smoothquant and
// dynamic do not apply (rejected when set away from their defaults).
// Returns the "quantization" section for config.json.
nlohmann::json quantize_sam(models::SamModel& model, const PtqSettings& s, const std::vector<SamCalibItem>& calib,
                            bool progress = true);

}  // namespace vs::quant
