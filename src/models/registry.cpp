#include "models/registry.h"

#include <regex>

#include "core/error.h"

namespace vs::models {
namespace {

struct Size {
  const char* name;
  int64_t dim, depth, heads;
};
constexpr Size kSizes[] = {{"tiny", 192, 12, 3},   {"small", 384, 12, 6},  {"base", 768, 12, 12},
                           {"large", 1024, 24, 16}, {"huge", 1280, 32, 16}};

// "pruning": {"attn_scale": s, "blocks": [{"qk_dim": [..], "v_dim": [..]}, ...], ...}: the head
// widths of a structurally pruned model (one entry per block, one width per head).
void read_pruning(ViTConfig& c, const nlohmann::json& p, const std::string& source) {
  c.attn_scale = p.at("attn_scale").get<float>();
  check(c.attn_scale > 0 && c.attn_scale < 1e3, source + ": pruning attn_scale must be positive");
  const auto& blocks = p.at("blocks");
  check(blocks.is_array() && int64_t(blocks.size()) == c.depth,
        source + ": pruning lists " + std::to_string(blocks.size()) + " blocks, depth is " + std::to_string(c.depth));
  for (const auto& b : blocks) {
    kernels::HeadLayout l{b.at("qk_dim").get<std::vector<int64_t>>(), b.at("v_dim").get<std::vector<int64_t>>()};
    check(int64_t(l.qk_dim.size()) == c.num_heads && int64_t(l.v_dim.size()) == c.num_heads,
          source + ": pruning block widths must list num_heads=" + std::to_string(c.num_heads) + " heads");
    for (size_t h = 0; h < l.qk_dim.size(); ++h)
      check(l.qk_dim[h] >= 0 && l.v_dim[h] >= 0 && l.qk_dim[h] < (1 << 20) && l.v_dim[h] < (1 << 20),
            source + ": pruning head widths must be non-negative");
    check(l.v_total() > 0, source + ": a pruned block must keep at least one value channel");
    c.head_layouts.push_back(std::move(l));
  }
  c.pruning_record = p;
  c.pruning_record.erase("blocks");
}

}  // namespace

std::vector<std::string> known_archs() {
  return {"vit_tiny_patch16_224",  "vit_small_patch16_224",  "vit_base_patch16_224",
          "vit_base_patch32_224",  "vit_base_patch16_384",   "vit_large_patch16_224",
          "deit_tiny_patch16_224", "deit_small_patch16_224", "deit_base_patch16_224",
          "deit_tiny_distilled_patch16_224", "deit_small_distilled_patch16_224",
          "deit_base_distilled_patch16_224", "deit_base_patch16_384"};
}

ViTConfig vit_config_for_arch(const std::string& full) {
  std::string arch = full.substr(0, full.find('.'));
  static const std::regex re(R"(^(vit|deit)_(tiny|small|base|large|huge)(_distilled)?_patch(\d+)_(\d+)$)");
  std::smatch m;
  std::string known;
  for (auto& a : known_archs()) known += (known.empty() ? "" : ", ") + a;
  check(std::regex_match(arch, m, re),
        "unknown architecture '" + full + "' (known: " + known + ", or any vit|deit_SIZE_patchP_IMG)");
  ViTConfig c;
  c.arch = arch;
  for (auto& s : kSizes)
    if (m[2] == s.name) {
      c.embed_dim = s.dim;
      c.depth = s.depth;
      c.num_heads = s.heads;
    }
  c.distilled = m[3].matched;
  c.patch_size = std::stoll(m[4]);
  c.img_size = std::stoll(m[5]);
  c.pre.input_size = int(c.img_size);
  c.pre.interpolation = "bicubic";
  if (m[1] == "vit") {  // timm's vit_* default: Inception mean/std, crop 0.9
    c.pre.mean = {0.5f, 0.5f, 0.5f};
    c.pre.std = {0.5f, 0.5f, 0.5f};
    c.pre.crop_pct = c.img_size > 224 ? 1.0 : 0.9;
  } else {  // deit_*: ImageNet mean/std, crop 0.875
    c.pre.crop_pct = c.img_size > 224 ? 1.0 : 0.875;
  }
  return c;
}

ViTConfig vit_config_from_json(const nlohmann::json& j, const std::string& source) {
  try {
    check(j.is_object(), source + ": config is not a JSON object");
    std::string arch = j.value("architecture", std::string());
    check(!arch.empty(), source + ": config has no \"architecture\"");
    ViTConfig c = vit_config_for_arch(arch);
    auto args = j.value("model_args", nlohmann::json::object());
    c.patch_size = args.value("patch_size", c.patch_size);
    c.img_size = args.value("img_size", c.img_size);
    c.embed_dim = args.value("embed_dim", c.embed_dim);
    c.depth = args.value("depth", c.depth);
    c.num_heads = args.value("num_heads", c.num_heads);
    c.mlp_ratio = args.value("mlp_ratio", c.mlp_ratio);
    c.qkv_bias = args.value("qkv_bias", c.qkv_bias);
    c.class_token = args.value("class_token", c.class_token);
    c.global_pool = args.value("global_pool", j.value("global_pool", c.global_pool));
    c.num_classes = j.value("num_classes", args.value("num_classes", c.num_classes));
    check(c.global_pool == "token" || c.global_pool == "avg",
          source + ": unsupported global_pool '" + c.global_pool + "' (token or avg)");
    check(c.class_token || c.global_pool == "avg", source + ": a model without class token needs global_pool avg");
    for (int64_t v : {c.patch_size, c.img_size, c.embed_dim, c.depth, c.num_heads, c.num_classes})
      check(v > 0 && v < (1 << 20), source + ": model_args hold a non-positive or absurd size");
    c.pre.input_size = int(c.img_size);
    if (j.contains("pretrained_cfg")) {
      auto& p = j["pretrained_cfg"];
      if (p.contains("input_size")) c.pre.input_size = p["input_size"].at(2).get<int>();
      c.pre.crop_pct = p.value("crop_pct", c.pre.crop_pct);
      c.pre.interpolation = p.value("interpolation", c.pre.interpolation);
      if (p.contains("mean")) c.pre.mean = p["mean"].get<std::array<float, 3>>();
      if (p.contains("std")) c.pre.std = p["std"].get<std::array<float, 3>>();
      if (p.contains("num_classes")) c.num_classes = j.value("num_classes", p["num_classes"].get<int64_t>());
    }
    check(c.pre.crop_pct > 0 && c.pre.crop_pct <= 1.0 + 1e-9, source + ": crop_pct must be in (0, 1]");
    if (j.contains("pruning")) read_pruning(c, j.at("pruning"), source);
    return c;
  } catch (const nlohmann::json::exception& e) {
    throw Error(source + ": malformed config (" + e.what() + ")");
  }
}

nlohmann::json vit_config_to_json(const ViTConfig& c) {
  nlohmann::json j = {{"architecture", c.arch},
          {"num_classes", c.num_classes},
          {"global_pool", c.global_pool},
          {"model_args",
           {{"patch_size", c.patch_size}, {"embed_dim", c.embed_dim}, {"depth", c.depth},
            {"num_heads", c.num_heads}, {"mlp_ratio", c.mlp_ratio}, {"img_size", c.img_size},
            {"qkv_bias", c.qkv_bias}, {"class_token", c.class_token}, {"global_pool", c.global_pool}}},
          {"pretrained_cfg",
           {{"input_size", {c.in_chans, c.pre.input_size, c.pre.input_size}},
            {"interpolation", c.pre.interpolation},
            {"crop_pct", c.pre.crop_pct},
            {"crop_mode", "center"},
            {"mean", c.pre.mean},
            {"std", c.pre.std},
            {"num_classes", c.num_classes}}}};
  if (!c.head_layouts.empty()) {
    nlohmann::json p = c.pruning_record;
    p["attn_scale"] = c.attn_scale;
    p["blocks"] = nlohmann::json::array();
    for (auto& l : c.head_layouts) p["blocks"].push_back({{"qk_dim", l.qk_dim}, {"v_dim", l.v_dim}});
    j["pruning"] = p;
  }
  return j;
}

}  // namespace vs::models
