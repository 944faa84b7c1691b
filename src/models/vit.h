// ViT / DeiT (timm's VisionTransformer and VisionTransformerDistilled), parameter names exactly as
// timm writes them: cls_token, dist_token, pos_embed, patch_embed.proj, blocks.N.*, norm,
// fc_norm, head, head_dist.
#pragma once
#include <map>
#include <nlohmann/json.hpp>
#include <memory>
#include <string>
#include <vector>

#include "io/preprocess.h"
#include "io/state_dict.h"
#include "nn/block.h"

namespace vs::models {

struct ViTConfig {
  std::string arch = "vit_tiny_patch16_224";
  int64_t img_size = 224, patch_size = 16, in_chans = 3;
  int64_t embed_dim = 192, depth = 12, num_heads = 3, num_classes = 1000;
  double mlp_ratio = 4.0;
  bool class_token = true, distilled = false, qkv_bias = true;
  std::string global_pool = "token";  // "token" (class token) or "avg" (mean of patch tokens)
  float norm_eps = 1e-6f;
  PreprocessConfig pre;
  // Structured pruning (config.json "pruning"): per-block head widths (empty = embed_dim /
  // num_heads each; qk_dim 0 and v_dim 0 = a removed head), the attention scale of the original
  // head width (0 = derive it), and what the pruning stage recorded about itself.
  std::vector<kernels::HeadLayout> head_layouts;
  float attn_scale = 0.f;
  nlohmann::json pruning_record = nlohmann::json::object();

  int64_t grid() const { return img_size / patch_size; }
  int64_t num_patches() const { return grid() * grid(); }
  int64_t num_prefix_tokens() const { return (class_token ? 1 : 0) + (distilled ? 1 : 0); }
  int64_t num_tokens() const { return num_patches() + num_prefix_tokens(); }
  bool use_fc_norm() const { return global_pool == "avg"; }  // timm: fc_norm replaces norm
};

class ViT {
 public:
  ViTConfig cfg;
  Tensor cls_token, dist_token, pos_embed;  // [1,1,C], [1,1,C], [1,T,C]
  std::unique_ptr<nn::Linear> patch_embed;  // the stride-p conv as a Linear on flattened patches
  std::vector<nn::Block> blocks;
  nn::LayerNorm norm, fc_norm;              // exactly one is used (see use_fc_norm)
  std::unique_ptr<nn::Linear> head, head_dist;

  // Validates every tensor's presence and shape; extra tensors are an error.
  // `quantized` lists the Linear layers stored quantised, `attn_quantized` the attention modules
  // whose operands are quantised (both from config.json's "quantization").
  static ViT from_state_dict(const ViTConfig& cfg, const StateDict& sd, const std::string& source,
                             const std::map<std::string, nn::LinearSpec>& quantized = {},
                             const std::map<std::string, nn::AttnSpec>& attn_quantized = {});

  // Every Linear layer with its timm prefix ("patch_embed.proj", "blocks.0.attn.qkv", ...,
  // "head"), in forward order; compression stages swap them through these pointers. A low-rank
  // layer X is listed as its two factors "X.down" and "X.up" (so stages such as quantisation
  // reach them), or as X itself with factors = false.
  std::vector<std::pair<std::string, std::unique_ptr<nn::Linear>*>> linears(bool factors = true);
  StateDict state_dict() const;

  // images: [B, in_chans, img_size, img_size], preprocessed. Returns logits [B, num_classes].
  Tensor forward(const Tensor& images) const;
  // The first block's input: patch embedding, class / distillation tokens, position embedding
  // ([B * num_tokens, embed_dim]); forward() starts with it.
  Tensor embed(const Tensor& images) const;
  // The rest of forward(): blocks[first_block..] then the head, from those blocks' input x
  // ([B * num_tokens, embed_dim], overwritten). For searches that change one block at a time
  // and keep the earlier blocks' outputs.
  Tensor forward_from(Tensor x, size_t first_block) const;

  int64_t num_params() const;
  int64_t param_bytes() const;
  int64_t macs_per_image() const;  // multiply-accumulates of one forward pass
};

// [B, c, H, W] -> [B * patches, c * P * P] in the (c, ky, kx) order of the conv weight.
Tensor patchify(const Tensor& img, int64_t P);

}  // namespace vs::models
