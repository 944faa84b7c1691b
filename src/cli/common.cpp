#include "cli/common.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>

#include "core/error.h"
#include "core/threading.h"
#include "io/dataset.h"
#include "io/file.h"
#include "models/load.h"
#include "nn/quant_linear.h"

namespace vs::cli {

void add_model_args(CLI::App* cmd, ModelArgs& a) {
  cmd->add_option("model", a.path, "model folder (config.json + model.safetensors) or weights file")
      ->required();
  cmd->add_option("--arch", a.arch,
                  "timm architecture name for a bare weights file, e.g. vit_tiny_patch16_224");
  cmd->add_option("--threads", a.threads, "CPU threads (default: all cores)")
      ->check(CLI::Range(1, 1024));
  cmd->add_flag("--simulate", a.simulate,
                "run quantised layers as float math on the same codes (fake quantisation) instead "
                "of integer kernels - for cross-checking the integer path");
}

models::ViT open_model(const ModelArgs& a) {
  set_num_threads(a.threads);
  nn::set_exec_mode(a.simulate ? nn::ExecMode::simulated : nn::ExecMode::integer);
  return models::load_model(a.path, a.arch);
}

void write_json(const std::string& path, const nlohmann::json& j) {
  write_atomic(path, [&](std::ostream& f) { f << j.dump(2) << "\n"; });
}

nlohmann::json quantized_points(models::ViT& m) {
  nlohmann::json linear = nlohmann::json::object();
  for (auto& [name, layer] : m.linears()) {
    std::string k = (*layer)->kind();
    linear[k] = linear.value(k, 0) + 1;
  }
  auto bits = [](int b) { return b < 16 ? nlohmann::json(b) : nlohmann::json("float"); };
  nlohmann::json attn = "float";
  if (!m.blocks.empty() && m.blocks[0].attn.quant.any()) {
    const auto& q = m.blocks[0].attn.quant;
    attn = {{"q", bits(q.q_bits)}, {"k", bits(q.k_bits)}, {"v", bits(q.v_bits)}, {"probabilities", bits(q.p_bits)}};
  }
  return {{"execution", nn::exec_mode() == nn::ExecMode::integer ? "integer" : "simulated"},
          {"linear", linear},
          {"attention", attn}};
}

std::vector<std::string> calibration_images(const std::string& dir, const std::string& split) {
  std::vector<std::string> out;
  std::string labels = (std::filesystem::path(dir) / "classes.txt").string();
  if (std::filesystem::exists(labels)) {
    for (auto& smp : imagenet_folder(dir, split, load_labels(labels))) out.push_back(smp.path);
  } else {
    check(split.empty(), dir + ": --split needs classes.txt in the folder");
    check(std::filesystem::is_directory(dir), dir + ": not a folder");
    for (auto& e : std::filesystem::directory_iterator(dir))
      if (e.is_regular_file()) out.push_back(e.path().string());
    std::sort(out.begin(), out.end());
  }
  return out;
}

std::string human_bytes(int64_t b) {
  if (b >= (int64_t(1) << 20)) return fmt::format("{:.2f} MiB", double(b) / double(1 << 20));
  if (b >= 1024) return fmt::format("{:.1f} KiB", double(b) / 1024.0);
  return fmt::format("{} B", b);
}

}  // namespace vs::cli
