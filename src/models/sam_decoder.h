// SAM's prompt encoder and mask decoder (segment_anything/modeling/{prompt_encoder,
// mask_decoder,transformer}.py), with the prompt handling of its ONNX export (SamOnnxModel):
// labels 1 / 0 = positive / negative click, 2 / 3 = box corners, -1 = padding point.
// Parameter names as in SAM's checkpoint: prompt_encoder.*, mask_decoder.*.
#pragma once
#include <array>
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

// Points in the model's input frame (the resized 1024 image), one label each.
struct SamPoints {
  std::vector<std::array<float, 2>> xy;
  std::vector<float> labels;
};

struct PromptEncoder {
  int64_t embed_dim = 256, grid = 64, input_size = 1024;
  Tensor gaussian;                       // pe_layer.positional_encoding_gaussian_matrix [2, C/2]
  std::vector<Tensor> point_embeddings;  // 4 x [1, C]
  Tensor not_a_point, no_mask;           // [1, C]
  nn::Conv2d down0, down3, down6;        // mask_downscaling.{0,3,6}
  nn::LayerNorm down1, down4;            // mask_downscaling.{1,4} (LayerNorm2d)

  Tensor positional(float x, float y) const;  // [C] for a point in [0,1]^2
  Tensor sparse(const SamPoints& p) const;    // [n, C]
  Tensor dense_pe() const;                    // [grid*grid, C], channels last
  // [grid*grid, C]: mask_downscaling(mask) for a [4*grid, 4*grid] mask, or no_mask_embed.
  Tensor dense(const Tensor* mask) const;
  void save(StateDict& out) const;
};

// SAM's Attention: q/k/v projections to an internal width, heads, output projection.
struct SamAttention {
  std::unique_ptr<nn::Linear> q, k, v, out;
  int64_t heads = 8;
  nn::MhaCore core;  // softmax(q k^T / sqrt(d)) v (float or quantised)
  Tensor forward(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in) const;  // [Nq,C],[Nk,C],[Nk,C]
};

struct TwoWayBlock {
  SamAttention self_attn, t2i, i2t;
  nn::LayerNorm norm1, norm2, norm3, norm4;
  std::unique_ptr<nn::Linear> lin1, lin2;
  bool skip_first_layer_pe = false;
};

// ConvTranspose2d with kernel 2, stride 2, run as one Linear per input pixel producing its 2x2
// output block; saved back in PyTorch's [in, out, 2, 2] layout.
struct UpConv2x2 {
  std::unique_ptr<nn::Linear> lin;  // [4*out, in], rows ordered (dy, dx, out)
  int64_t out_ch = 0;
  Tensor forward(const Tensor& x, int64_t H, int64_t W, kernels::Epilogue ep) const;  // [H*W,in] -> [4HW,out]
  void save(const std::string& prefix, StateDict& out) const;
};

struct MaskDecoderOutput {
  Tensor low_res;  // [M, 4*grid, 4*grid] mask logits of every mask token
  std::vector<float> iou;
  int best = 0;    // the mask SamOnnxModel returns (see select_mask)
};

struct MaskDecoder {
  int64_t dim = 256, num_mask_tokens = 4;
  Tensor iou_token, mask_tokens;  // [1, C], [M, C]
  std::vector<TwoWayBlock> layers;
  SamAttention final_attn;
  nn::LayerNorm norm_final;
  UpConv2x2 up0, up3;
  nn::LayerNorm up1;  // output_upscaling.1 (LayerNorm2d)
  std::vector<std::vector<std::unique_ptr<nn::Linear>>> hyper;  // output_hypernetworks_mlps
  std::vector<std::unique_ptr<nn::Linear>> iou_head;

  // image: [grid*grid, C] channels-last embedding; pe, dense: [grid*grid, C]; sparse: [n, C].
  MaskDecoderOutput forward(const Tensor& image, const Tensor& pe, const Tensor& sparse,
                            const Tensor& dense, int64_t grid) const;
  void save(StateDict& out) const;
  std::vector<std::pair<std::string, std::unique_ptr<nn::Linear>*>> linears();
  std::vector<nn::MhaModule> attentions();
};

// SamOnnxModel's choice: with fewer than 3 prompt points (padding included) the best-scoring
// multimask output (tokens 1..), otherwise token 0.
int select_mask(const std::vector<float>& iou, int64_t num_points);

PromptEncoder load_prompt_encoder(const nlohmann::json& cfg, nn::ParamReader& p);
MaskDecoder load_mask_decoder(const nlohmann::json& cfg, nn::ParamReader& p);

}  // namespace vs::models
