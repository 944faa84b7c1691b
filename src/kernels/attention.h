// Multi-head self-attention core: out = softmax(scale * q k^T) v per head, reading q, k, v in
// place from the fused qkv projection output. Heads may have different q/k and v widths
// (structured pruning leaves them uneven).
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/gemm_int8.h"

namespace vs::kernels {

struct HeadLayout {
  std::vector<int64_t> qk_dim;  // per head
  std::vector<int64_t> v_dim;   // per head
  int64_t qk_total() const;
  int64_t v_total() const;
  bool uniform() const;  // every head has the same q/k and v width
  int64_t qkv_width() const { return 2 * qk_total() + v_total(); }
};

// qkv: [B, N, qkv_width] laid out as [q heads | k heads | v heads] (timm's qkv order);
// out: [B, N, v_total]. scale is usually original_head_dim^-0.5.
void attention_f32(const float* qkv, float* out, int64_t B, int64_t N, const HeadLayout& heads,
                   float scale);

// Quantisation of the attention operands, per tensor: q and k asymmetric (zero points; k's codes
// are stored shifted into s8, kernels/quantize_act.h), v symmetric s8, the softmax probabilities as u8 codes with zero point 0
// (p^ = code * p_scale). q k^T and P v then run as integer GEMMs (kernels/gemm_int8.h) with
// int32 results. bits 16 leaves a point in float; the two operands of a product are quantised
// together or not at all (q with k, p with v), so each product is integer or float as a whole.
// Probabilities: uniform (p_tau 0: p^ = code * p_scale) or log2 with base 2^(1/p_tau), p_tau in
// {1, 2, 4} (p^ = p_scale * 2^(-code / p_tau), kernels/log2_quant.h; P v then runs as two u8 x s8
// GEMMs on the high and low bytes of the 16-bit fixed-point levels).
struct AttnQuant {
  int q_bits = 16, k_bits = 16, v_bits = 16, p_bits = 16;
  int p_tau = 0;
  float q_scale = 1.f, k_scale = 1.f, v_scale = 1.f, p_scale = 1.f;
  int32_t q_zero = 0, k_zero = 0;  // k_zero in [0, 2^k_bits - 1] like q_zero
  bool any() const { return q_bits < 16 || p_bits < 16; }
};

// attention_f32 with the quantisation points of `aq`; `engine` computes the integer products.
void attention_quant(const float* qkv, float* out, int64_t B, int64_t N, const HeadLayout& heads,
                     float scale, const AttnQuant& aq, IntEngine engine);

// The float softmax probabilities of head h, probs [B, N, N] (for calibration).
void attention_probs_f32(const float* qkv, float* probs, int64_t B, int64_t N,
                         const HeadLayout& heads, float scale, int64_t h);

}  // namespace vs::kernels
