#include "models/sam_import.h"

#include <cmath>
#include <filesystem>
#include <regex>

#include "core/error.h"
#include "io/onnx.h"
#include "models/tiny_vit.h"

namespace vs::models {
namespace {

// "/layers.1/blocks.0/attn/qkv/MatMul" -> "layers.1.blocks.0.attn.qkv" (the node's module path).
// A called nn.Sequential appears twice ("/neck/neck.0/Conv"): its own scope and its child's
// qualified name; the repeat is dropped ("neck.0").
std::string module_path(const std::string& node_name) {
  std::vector<std::string> parts;
  std::string cur;
  for (char c : node_name + "/") {
    if (c != '/') {
      cur += c;
      continue;
    }
    if (!cur.empty()) parts.push_back(cur);
    cur.clear();
  }
  if (parts.size() < 2) return "";
  parts.pop_back();  // the op ("MatMul")
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i + 1 < parts.size() && parts[i + 1].rfind(parts[i] + ".", 0) == 0) continue;
    out += (out.empty() ? "" : ".") + parts[i];
  }
  return out;
}

Tensor transpose2d(const Tensor& t) {
  const int64_t R = t.dim(0), C = t.dim(1);
  Tensor out({C, R});
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < C; ++c) out.f32()[c * R + r] = t.f32()[r * C + c];
  return out;
}

// [C, 1, 1] or [1, C, 1, 1] (per-channel affine of LayerNorm2d, no_mask_embed) -> [C] / [1, C].
Tensor squeeze_channels(const Tensor& t, Shape to) { return t.clone().reshape(std::move(to)); }

// The graph's one consumer of an anonymous initialiser, with the input slot it uses.
std::pair<const OnnxNode*, size_t> only_consumer(const OnnxModel& m, const std::string& name,
                                                 const std::string& path) {
  auto users = m.consumers(name);
  check(users.size() == 1, path + ": initializer " + name + " is read by " + std::to_string(users.size()) +
                               " nodes; cannot name it after one layer");
  for (size_t i = 0; i < users[0]->inputs.size(); ++i)
    if (users[0]->inputs[i] == name) return {users[0], i};
  return {users[0], 0};
}

// Names an anonymous initialiser after the layer it feeds; returns false if no rule applies.
bool name_anonymous(const OnnxNode& n, size_t slot, const Tensor& t, const std::string& prefix, StateDict& out) {
  const std::string mod = module_path(n.name);
  if (mod.empty()) return false;
  const std::string base = prefix + mod + ".";
  if (n.op == "MatMul" && slot == 1 && t.ndim() == 2) {  // x @ W: W is [in, out]
    out[base + "weight"] = transpose2d(t);
    return true;
  }
  if (n.op == "Conv" && (slot == 1 || slot == 2)) {
    out[base + (slot == 1 ? "weight" : "bias")] = t;
    return true;
  }
  if ((n.op == "Mul" || n.op == "Add") && t.ndim() == 3 && t.dim(1) == 1 && t.dim(2) == 1) {  // LayerNorm2d
    out[base + (n.op == "Mul" ? "weight" : "bias")] = squeeze_channels(t, {t.dim(0)});
    return true;
  }
  return false;
}

// TinyViT attention: the exporter folded attention_biases[:, idxs] into a [H, N, N] constant added
// to the scores. Recover the [H, w*w] table from row 0 (offsets from window position (0,0)) and
// check that expanding it reproduces the constant exactly.
Tensor fold_attention_bias(const Tensor& ab, const std::string& where) {
  check(ab.ndim() == 3 && ab.dim(1) == ab.dim(2), where + ": attention bias is not [heads, N, N]");
  const int64_t H = ab.dim(0), N = ab.dim(1), w = int64_t(std::lround(std::sqrt(double(N))));
  check(w * w == N, where + ": attention bias size " + std::to_string(N) + " is not a square window");
  Tensor table({H, N});
  for (int64_t h = 0; h < H; ++h)
    for (int64_t j = 0; j < N; ++j) table.f32()[h * N + j] = ab.f32()[h * N * N + j];
  Tensor back = expand_attention_biases(table, w);
  for (int64_t i = 0; i < ab.numel(); ++i)
    check(back.f32()[i] == ab.f32()[i], where + ": attention bias is not a relative-position table (entry " +
                                            std::to_string(i) + " differs)");
  return table;
}

// TinyViT's qkv output is per head [q_h | k_h | v_h]; reorder rows to [q heads | k heads | v heads].
Tensor qkv_rows_to_timm(const Tensor& t, int64_t heads) {
  const int64_t rows = t.dim(0), cols = t.ndim() == 2 ? t.dim(1) : 1, d = rows / (3 * heads);
  Tensor out(t.shape());
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t part = 0; part < 3; ++part)
      for (int64_t i = 0; i < d; ++i) {
        const int64_t src = (h * 3 + part) * d + i, dst = part * heads * d + h * d + i;
        std::copy_n(t.f32() + src * cols, cols, out.f32() + dst * cols);
      }
  return out;
}

// A tensor the import expects to have recovered; a graph without it is not the model we know.
Tensor& need(StateDict& sd, const std::string& name, const std::string& path) {
  auto it = sd.find(name);
  check(it != sd.end(), path + ": no tensor " + name + " after import (not a MobileSAM/SAM ONNX export?)");
  return it->second;
}

int64_t stride_of(const OnnxNode& n) {
  auto it = n.ints.find("strides");
  return it == n.ints.end() || it->second.empty() ? 1 : it->second[0];
}

int64_t count_prefix(const StateDict& sd, const std::string& fmt_prefix, const std::string& suffix) {
  int64_t n = 0;
  while (sd.count(fmt_prefix + std::to_string(n) + suffix)) ++n;
  return n;
}

nlohmann::json import_encoder(const std::string& path, StateDict& out) {
  OnnxModel m = load_onnx(path);
  const std::string P = "image_encoder.";
  for (auto& [name, t] : m.initializers) {
    if (name.rfind("onnx::", 0) != 0) {
      out[P + name] = t;
      continue;
    }
    auto [node, slot] = only_consumer(m, name, path);
    check(name_anonymous(*node, slot, t, P, out),
          path + ": cannot name initializer " + name + " (read by " + node->op + " " + node->name + ")");
  }
  TinyViTConfig cfg;
  cfg.embed_dims.clear();
  cfg.depths.clear();
  cfg.num_heads.clear();
  cfg.window_sizes.clear();
  cfg.downsample_strides.clear();
  static const std::regex attn_add(R"(^/layers\.(\d+)/blocks\.(\d+)/attn/Add$)");
  for (auto& n : m.nodes) {
    std::smatch mt;
    if (n.op == "Add" && std::regex_match(n.name, mt, attn_add)) {
      const std::string where = path + ": " + n.name;
      const Tensor* ab = nullptr;
      for (auto& in : n.inputs)
        if (m.constants.count(in)) ab = &m.constants.at(in);
      check(ab != nullptr, where + ": no constant attention bias");
      out[P + "layers." + mt[1].str() + ".blocks." + mt[2].str() + ".attn.attention_biases"] =
          fold_attention_bias(*ab, where);
    }
    if (n.op == "Conv" && n.name.find("/downsample/conv2/") != std::string::npos)
      cfg.downsample_strides.push_back(stride_of(n));
    if (n.op == "Conv" && n.name.rfind("/patch_embed/", 0) == 0)
      check(stride_of(n) == 2, path + ": " + n.name + ": stem convolutions must have stride 2");
  }
  // Architecture from the recovered weights.
  int64_t S = 0;
  while (out.count(P + "layers." + std::to_string(S) + ".blocks.0.conv1.c.weight") ||
         out.count(P + "layers." + std::to_string(S) + ".blocks.0.attn.qkv.bias"))
    ++S;
  check(S >= 2, path + ": no TinyViT stages found");
  for (int64_t s = 0; s < S; ++s) {
    const std::string L = P + "layers." + std::to_string(s) + ".blocks.";
    cfg.depths.push_back(count_prefix(out, L, s == 0 ? ".conv3.c.bias" : ".attn.qkv.bias"));
    cfg.embed_dims.push_back(need(out, L + "0" + (s == 0 ? ".conv3.c.bias" : ".attn.proj.bias"), path).dim(0));
    if (s == 0) {
      cfg.num_heads.push_back(0);
      cfg.window_sizes.push_back(1);
      cfg.mbconv_expand_ratio = need(out, L + "0.conv1.c.weight", path).dim(0) / cfg.embed_dims[0];
      continue;
    }
    const Tensor& ab = need(out, L + "0.attn.attention_biases", path);
    cfg.num_heads.push_back(ab.dim(0));
    cfg.window_sizes.push_back(int64_t(std::lround(std::sqrt(double(ab.dim(1))))));
    cfg.mlp_ratio = need(out, L + "0.mlp.fc1.bias", path).dim(0) / cfg.embed_dims[size_t(s)];
    cfg.local_conv_size = need(out, L + "0.local_conv.c.weight", path).dim(2);
    for (int64_t b = 0; b < cfg.depths.back(); ++b)
      for (auto part : {".attn.qkv.weight", ".attn.qkv.bias"}) {
        Tensor& t = need(out, L + std::to_string(b) + part, path);
        t = qkv_rows_to_timm(t, cfg.num_heads.back());
      }
  }
  check(int64_t(cfg.downsample_strides.size()) == S - 1, path + ": expected one patch merging between stages");
  // 1x1 convolutions run as Linear layers: store them [out, in].
  for (auto& [name, t] : out)
    if (name.rfind(P, 0) == 0 && t.ndim() == 4 && t.dim(2) == 1 && t.dim(3) == 1)
      t = t.reshape({t.dim(0), t.dim(1)});
  cfg.out_chans = need(out, P + "neck.0.weight", path).dim(0);
  cfg.in_chans = need(out, P + "patch_embed.seq.0.c.weight", path).dim(1);
  cfg.img_size = 1024;
  nlohmann::json j = cfg.to_json();
  j["onnx_producer"] = m.producer;
  return j;
}

nlohmann::json import_decoder(const std::string& path, StateDict& out) {
  OnnxModel m = load_onnx(path);
  for (auto& [name, t] : m.initializers) {
    if (name.rfind("model.prompt_encoder.", 0) == 0) {
      out[name.substr(6)] = t;
      continue;
    }
    if (name.rfind("mask_decoder.", 0) == 0) {
      out[name] = t;
      continue;
    }
    check(name.rfind("onnx::", 0) == 0, path + ": unexpected initializer " + name);
    auto [node, slot] = only_consumer(m, name, path);
    const std::string mod = module_path(node->name);
    const std::string prefix = mod.rfind("mask_downscaling", 0) == 0 ? "prompt_encoder." : "mask_decoder.";
    if (name_anonymous(*node, slot, t, prefix, out)) continue;
    // Top-level tensors of SamOnnxModel: (1 - has_mask_input) * no_mask_embed, and the output
    // tokens expanded over the batch (cat(iou_token, mask_tokens)).
    if (node->op == "Mul" && t.ndim() == 4 && t.dim(0) == 1 && t.dim(2) == 1 && t.dim(3) == 1) {
      out["prompt_encoder.no_mask_embed.weight"] = squeeze_channels(t, {1, t.dim(1)});
    } else if (node->op == "Expand" && t.ndim() == 3 && t.dim(0) == 1 && t.dim(1) >= 2) {
      const int64_t C = t.dim(2), M = t.dim(1) - 1;
      Tensor iou({1, C}), masks({M, C});
      std::copy_n(t.f32(), C, iou.f32());
      std::copy_n(t.f32() + C, M * C, masks.f32());
      out["mask_decoder.iou_token.weight"] = iou;
      out["mask_decoder.mask_tokens.weight"] = masks;
    } else {
      throw Error(path + ": cannot name initializer " + name + " (read by " + node->op + " " + node->name + ")");
    }
  }
  auto need = [&](const std::string& n) -> const Tensor& { return models::need(out, n, path); };
  const int64_t heads = 8;  // SAM's TwoWayTransformer always has 8 heads; widths are checked below
  const int64_t C = need("mask_decoder.transformer.layers.0.norm1.weight").dim(0);
  const int64_t depth = count_prefix(out, "mask_decoder.transformer.layers.", ".norm1.weight");
  const int64_t cross = need("mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight").dim(0);
  check(C % heads == 0 && cross % heads == 0, path + ": attention widths not divisible by 8 heads");
  nlohmann::json pe = {{"embed_dim", C},
                       {"image_embedding_size", 64},
                       {"input_image_size", 1024},
                       {"mask_in_chans", need("prompt_encoder.mask_downscaling.3.weight").dim(0)}};
  nlohmann::json md = {{"transformer_dim", C},
                       {"depth", depth},
                       {"num_heads", heads},
                       {"mlp_dim", need("mask_decoder.transformer.layers.0.mlp.lin1.weight").dim(0)},
                       {"attention_downsample_rate", C / cross},
                       {"num_multimask_outputs", need("mask_decoder.mask_tokens.weight").dim(0) - 1},
                       {"iou_head_depth", count_prefix(out, "mask_decoder.iou_prediction_head.layers.", ".weight")},
                       {"iou_head_hidden_dim", need("mask_decoder.iou_prediction_head.layers.0.weight").dim(0)},
                       {"layer_norm_eps", 1e-5},
                       {"onnx_producer", m.producer}};
  return {{"prompt_encoder", pe}, {"mask_decoder", md}};
}

}  // namespace

SamImport import_sam_onnx(const std::string& encoder_onnx, const std::string& decoder_onnx) {
  SamImport r;
  nlohmann::json enc = import_encoder(encoder_onnx, r.weights);
  nlohmann::json dec = import_decoder(decoder_onnx, r.weights);
  r.config = {{"architecture", "sam"},
              {"image_encoder", enc},
              {"prompt_encoder", dec["prompt_encoder"]},
              {"mask_decoder", dec["mask_decoder"]},
              {"preprocess",
               {{"img_size", 1024},
                {"pixel_mean", {123.675, 116.28, 103.53}},
                {"pixel_std", {58.395, 57.12, 57.375}},
                {"resize", "longest side to img_size, PIL bilinear (antialiased), zero pad bottom/right"}}},
              {"imported_from",
               {{"encoder", std::filesystem::path(encoder_onnx).filename().string()},
                {"decoder", std::filesystem::path(decoder_onnx).filename().string()}}}};
  return r;
}

}  // namespace vs::models
