#include "models/load.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "io/file.h"
#include "io/pth.h"
#include "io/safetensors.h"
#include "models/registry.h"
#include "nn/lowrank_linear.h"

namespace vs::models {
namespace fs = std::filesystem;

static bool is_zip(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  char m[4] = {};
  f.read(m, 4);
  return f && m[0] == 'P' && m[1] == 'K' && m[2] == 3 && m[3] == 4;
}

static StateDict read_weights(const std::string& path) {
  return is_zip(path) ? load_pth(path) : load_safetensors(path).tensors;
}

// With only an architecture name, take what the checkpoint itself says about the head size and
// depth (fine-tuned checkpoints often have another number of classes).
static void infer_from_weights(ViTConfig& c, const StateDict& sd) {
  if (auto it = sd.find("head.weight"); it != sd.end() && it->second.ndim() == 2)
    c.num_classes = it->second.dim(0);
  int64_t depth = 0;
  while (sd.count("blocks." + std::to_string(depth) + ".norm1.weight")) ++depth;
  if (depth > 0) c.depth = depth;
  if (!sd.count("cls_token") && sd.count("fc_norm.weight")) {
    c.class_token = false;
    c.global_pool = "avg";
  } else if (sd.count("fc_norm.weight")) {
    c.global_pool = "avg";
  }
}

static nlohmann::json read_json(const std::string& path) {
  try {
    return nlohmann::json::parse(read_text(path));
  } catch (const nlohmann::json::parse_error&) {
    throw Error(path + ": not valid JSON");
  }
}

// config.json "quantization": {"layers": {"blocks.0.attn.qkv": {"wbits", "abits", "dynamic"}},
//                                "attention": {"blocks.0.attn": {"q_bits", "k_bits", "v_bits", "p_bits"}}}
QuantSpecs read_quant_specs(const nlohmann::json& j, const std::string& path) {
  QuantSpecs out;
  if (!j.contains("quantization")) return out;
  try {
    const auto& q = j.at("quantization");
    for (auto& [name, l] : q.at("layers").items()) {
      nn::LinearSpec s{l.at("wbits").get<int>(), l.at("abits").get<int>(), l.value("dynamic", false)};
      s.twin_m = l.value("twin_m", 0);
      check(s.wbits >= 2 && s.wbits <= 8 && s.abits >= 2 && s.abits <= 8,
            path + ": layer '" + name + "' has bit widths outside 2..8");
      out.layers[name] = s;
    }
    if (q.contains("attention"))
      for (auto& [name, a] : q.at("attention").items())
        out.attention[name] = {a.at("q_bits").get<int>(), a.at("k_bits").get<int>(), a.at("v_bits").get<int>(),
                               a.at("p_bits").get<int>(), a.value("p_tau", 0)};
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": malformed \"quantization\" section (" + e.what() + ")");
  }
  return out;
}

// config.json "lowrank": {"layers": {"blocks.0.mlp.fc1": {"rank": r}, ...}}, merged into the specs
// read from "quantization" (where a quantised factor is listed as "blocks.0.mlp.fc1.down").
static void lowrank_layers(const nlohmann::json& j, const std::string& path,
                           std::map<std::string, nn::LinearSpec>& specs) {
  if (!j.contains("lowrank")) return;
  try {
    for (auto& [name, l] : j.at("lowrank").at("layers").items()) {
      int r = l.at("rank").get<int>();
      check(r >= 1, path + ": low-rank layer '" + name + "' has rank " + std::to_string(r) + " (must be >= 1)");
      specs[name].rank = r;
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": malformed \"lowrank\" section (" + e.what() + ")");
  }
}

ViT load_model(const std::string& path, const std::string& arch) {
  check(fs::exists(path), path + ": no such file or directory");
  std::string weights, config;
  if (fs::is_directory(path)) {
    for (auto name : {"model.safetensors", "pytorch_model.bin"})
      if (fs::exists(fs::path(path) / name)) {
        weights = (fs::path(path) / name).string();
        break;
      }
    if (weights.empty())
      for (auto& e : fs::directory_iterator(path))
        if (e.path().extension() == ".pth" || e.path().extension() == ".pt") weights = e.path().string();
    check(!weights.empty(), path + ": no model.safetensors, pytorch_model.bin or .pth in this folder");
    config = (fs::path(path) / "config.json").string();
  } else {
    weights = path;
    config = (fs::path(path).parent_path() / "config.json").string();
  }
  ViTConfig cfg;
  StateDict sd = read_weights(weights);
  QuantSpecs quantized;
  if (!arch.empty()) {
    cfg = vit_config_for_arch(arch);
    infer_from_weights(cfg, sd);
  } else {
    check(fs::exists(config), weights + ": no config.json beside it; pass --arch NAME (e.g. vit_tiny_patch16_224)");
    nlohmann::json j = read_json(config);
    cfg = vit_config_from_json(j, config);
    quantized = read_quant_specs(j, config);
    lowrank_layers(j, config, quantized.layers);
  }
  return ViT::from_state_dict(cfg, sd, weights, quantized.layers, quantized.attention);
}

void save_model(const std::string& dir, const ViT& model, const nlohmann::json& extra) {
  nlohmann::json cfg = vit_config_to_json(model.cfg);
  // The rank of every low-rank layer is structure, not history: written for any model that has
  // one, so that later stages (e.g. quantize) keep the model loadable without knowing about it.
  // linears() only hands out pointers here; nothing is modified.
  for (auto& [name, slot] : const_cast<ViT&>(model).linears(false))
    if (auto* lr = dynamic_cast<const nn::LowRankLinear*>(slot->get()))
      cfg["lowrank"]["layers"][name]["rank"] = lr->rank();
  if (extra.is_object()) cfg.merge_patch(extra);  // a null patch would replace the whole config
  save_model_folder(dir, model.state_dict(), cfg);
}

void save_model_folder(const std::string& dir, const StateDict& weights, const nlohmann::json& cfg) {
  fs::path out(dir);
  if (fs::exists(out)) {
    check(fs::is_directory(out), dir + ": exists and is not a folder");
    bool ours = fs::is_empty(out) || fs::exists(out / "model.safetensors");
    check(ours, dir + ": folder exists and does not hold a model; refusing to overwrite it");
  }
  fs::path tmp = out.string() + ".tmp." + std::to_string(getpid());
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  try {
    save_safetensors((tmp / "model.safetensors").string(), weights,
                     {{"format", "pt"}, {"producer", "vitshrink"}});
    write_atomic((tmp / "config.json").string(), [&](std::ostream& f) { f << cfg.dump(2) << "\n"; });
    fs::path old = out.string() + ".old." + std::to_string(getpid());
    if (fs::exists(out)) fs::rename(out, old);
    fs::rename(tmp, out);
    fs::remove_all(old);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
}

}  // namespace vs::models
