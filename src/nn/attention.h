// timm's Attention: qkv projection -> per-head softmax(q k^T * scale) v -> output projection.
#pragma once
#include <memory>
#include <string>

#include "kernels/attention.h"
#include "nn/linear.h"
#include "nn/params.h"
#include "nn/quant_linear.h"

namespace vs::nn {

struct Attention {
  std::unique_ptr<Linear> qkv;   // [C] -> [2 * qk_total + v_total]
  std::unique_ptr<Linear> proj;  // [v_total] -> [C]
  kernels::HeadLayout heads;
  float scale = 1.f;             // original head_dim^-0.5, kept when heads are pruned
  kernels::AttnQuant quant;      // quantisation of q, k, v and the probabilities (default: float)

  // Reads PREFIX.{q_scale, q_zero, k_scale, v_scale, p_scale} as p.attn_specs[prefix] says.
  // `layout` empty: num_heads heads of C / num_heads each. A structurally pruned model passes its
  // per-head widths and the original scale (scale 0: head_dim^-0.5 of the uniform layout).
  static Attention load(ParamReader& p, const std::string& prefix, int64_t C, int64_t num_heads,
                        bool qkv_bias, const kernels::HeadLayout& layout = {}, float scale = 0.f);
  // x: [B*N, C] -> y: [B*N, C]
  void forward(const float* x, float* y, int64_t B, int64_t N) const;
  // The same from qkv's input codes (qkv a QuantLinear taking codes: taking_codes()); with `add`,
  // y += the output (the block's residual, fused into proj's dequantisation when proj is quantised).
  void forward(const QuantLinear::InputCodes& x, float* y, int64_t B, int64_t N, bool add) const;
  void save(const std::string& prefix, StateDict& out) const;

 private:
  void finish(const float* qkv_out, float* y, int64_t B, int64_t N, bool add) const;  // attention core + proj
};

// The quantisation parameters of one attention module, as Attention::load / save read and write
// them (also used by nn/mha_core.h).
kernels::AttnQuant load_attn_quant(ParamReader& p, const std::string& prefix, const AttnSpec& spec);
void save_attn_quant(const std::string& prefix, const kernels::AttnQuant& q, StateDict& out);

}  // namespace vs::nn
