// Finding and reading a model on disk, and writing one back:
//   DIR/ with config.json + model.safetensors (Hugging Face / timm layout; also what vitshrink
//        writes) or + pytorch_model.bin / *.pth,
//   FILE.safetensors | FILE.pth | FILE.pt | FILE.bin with --arch NAME (or config.json beside it).
#pragma once
#include <nlohmann/json.hpp>
#include <map>
#include <string>

#include "models/vit.h"
#include "nn/params.h"

namespace vs::models {

// config.json's "quantization" section as the loaders need it (layers and attention modules by
// name prefix); empty when there is none. Throws naming `path` on a malformed section.
struct QuantSpecs {
  std::map<std::string, nn::LinearSpec> layers;
  std::map<std::string, nn::AttnSpec> attention;
};
QuantSpecs read_quant_specs(const nlohmann::json& config, const std::string& path);

ViT load_model(const std::string& path, const std::string& arch = "");

// Writes DIR/config.json + DIR/model.safetensors through a temporary folder renamed into place,
// so an interrupted save leaves no half-written model. `extra` is merged into config.json
// (e.g. a "quantization" section).
void save_model(const std::string& dir, const ViT& model, const nlohmann::json& extra = {});

// The same for any model: writes `config` and `weights` as DIR/config.json + DIR/model.safetensors.
void save_model_folder(const std::string& dir, const StateDict& weights, const nlohmann::json& config);

}  // namespace vs::models
