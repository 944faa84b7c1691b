// timm architecture names -> configs, and config.json (Hugging Face / timm layout) <-> ViTConfig.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "models/vit.h"

namespace vs::models {

// "vit_tiny_patch16_224", "deit_small_distilled_patch16_224", "vit_base_patch32_384" ... (a
// ".tag" suffix such as ".augreg_in21k_ft_in1k" is ignored). Throws vs::Error if unknown.
ViTConfig vit_config_for_arch(const std::string& arch);
std::vector<std::string> known_archs();

// Reads {"architecture", "num_classes", "global_pool", "model_args", "pretrained_cfg"}.
ViTConfig vit_config_from_json(const nlohmann::json& j, const std::string& source);
nlohmann::json vit_config_to_json(const ViTConfig& cfg);

}  // namespace vs::models
