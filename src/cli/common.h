// Options shared by the subcommands.
#pragma once
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <string>

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

}  // namespace vs::cli
