// Options shared by the subcommands.
#pragma once
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "models/vit.h"

namespace vs::cli {

struct ModelArgs {
  std::string path, arch;
  int threads = 0;
  bool simulate = false;
};

// Adds MODEL (positional), --arch, --threads and --simulate.
void add_model_args(CLI::App* cmd, ModelArgs& a);
// Applies --threads and loads the model.
models::ViT open_model(const ModelArgs& a);
// Writes JSON atomically (temporary file + rename).
void write_json(const std::string& path, const nlohmann::json& j);
std::string human_bytes(int64_t b);
// What is quantised in the loaded model, read from its layers: {"execution": "integer" |
// "simulated", "linear": {"w8a8": 48, ...}, "attention": {"q/k": 8, "v": 8, "probabilities": 8}
// (block 0's; "float" where not quantised)}. Every report carries it.
nlohmann::json quantized_points(models::ViT& m);
// The calibration images of --calib DIR [--split FILE] (labels are irrelevant: listed directly).
std::vector<std::string> calibration_images(const std::string& dir, const std::string& split);

}  // namespace vs::cli
