// TinyViT image encoder as MobileSAM uses it (tiny_vit_sam.py), parameter names as in MobileSAM's
// checkpoint under "image_encoder.": patch_embed.seq.{0,2}.c, layers.0.blocks.N.conv{1,2,3}.c
// (MBConv), layers.S.downsample.conv{1,2,3}.c (patch merging), layers.S.blocks.N.{attn,
// local_conv.c, mlp} (windowed attention with relative position biases, local depthwise conv),
// neck.{0,1,2,3}. Batch norms are folded into the convolutions (".c.bias"); 1x1 convolutions are
// Linear layers [out, in] on channels-last rows; attn.qkv rows are in [q heads | k heads | v heads]
// order (timm's), permuted from TinyViT's per-head interleave at import.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/state_dict.h"
#include "nn/conv2d.h"
#include "nn/layernorm.h"
#include "nn/linear.h"
#include "nn/mha_core.h"

namespace vs::models {

struct TinyViTConfig {
  int64_t img_size = 1024, in_chans = 3, out_chans = 256;
  std::vector<int64_t> embed_dims{64, 128, 160, 320}, depths{2, 2, 6, 2}, num_heads{2, 4, 5, 10},
      window_sizes{7, 7, 14, 7}, downsample_strides{2, 2, 1};
  int64_t mlp_ratio = 4, mbconv_expand_ratio = 4, local_conv_size = 3;
  float norm_eps = 1e-5f, neck_eps = 1e-6f;

  static TinyViTConfig from_json(const nlohmann::json& j, const std::string& source);
  nlohmann::json to_json() const;
  int64_t stem_size() const { return img_size / 4; }  // resolution after the two stride-2 convs
  int64_t out_size() const;                           // side of the output embedding grid
};

struct MBConv {
  std::unique_ptr<nn::Linear> conv1, conv3;  // 1x1
  nn::Conv2d conv2;                          // 3x3 depthwise
};

struct PatchMerging {
  std::unique_ptr<nn::Linear> conv1, conv3;  // 1x1
  nn::Conv2d conv2;                          // 3x3 depthwise, stride 1 or 2
};

struct TinyViTBlock {
  int64_t heads = 0, window = 0, dim = 0;
  nn::LayerNorm attn_norm, mlp_norm;
  std::unique_ptr<nn::Linear> qkv, proj, fc1, fc2;
  Tensor attention_biases;  // [heads, window*window] (what is stored)
  Tensor bias_table;        // [heads, N, N] with N = window^2, expanded once at load
  nn::Conv2d local_conv;    // 3x3 depthwise
  nn::MhaCore core;         // softmax(q k^T / sqrt(d) + bias) v of the windows (float or quantised)
  // x: [H*W, dim] tokens of one image at resolution H x W, updated in place.
  void forward(Tensor& x, int64_t H, int64_t W) const;
};

class TinyViT {
 public:
  TinyViTConfig cfg;
  nn::Conv2d stem0, stem1;
  std::vector<MBConv> mbconv;                     // layers.0
  std::vector<PatchMerging> downsample;           // layers.0..2
  std::vector<std::vector<TinyViTBlock>> stages;  // layers.1..3
  std::unique_ptr<nn::Linear> neck0;              // 1x1, no bias
  nn::LayerNorm neck1, neck3;                     // LayerNorm2d = LayerNorm over channels
  nn::Conv2d neck2;

  static TinyViT load(const TinyViTConfig& cfg, nn::ParamReader& p, const std::string& prefix);
  void save(const std::string& prefix, StateDict& out) const;
  // Every Linear layer with its name, for compression stages.
  std::vector<std::pair<std::string, std::unique_ptr<nn::Linear>*>> linears(const std::string& prefix);
  std::vector<nn::MhaModule> attentions(const std::string& prefix);

  // image: [3, img_size, img_size] preprocessed. Returns [out_chans, S, S] (S = out_size()).
  Tensor forward(const Tensor& image) const;
};

// Expands TinyViT's relative position biases [H, w*w] to the [H, N, N] table (N = w*w) that
// attention adds: entry (i, j) is bias[|dy| * w + |dx|] of the two window positions.
Tensor expand_attention_biases(const Tensor& biases, int64_t window);

}  // namespace vs::models
