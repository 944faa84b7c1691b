// mha_f32 (kernels/mha.h: separate q, k, v operands, queries and keys of different lengths, an
// optional additive bias per head) with the quantisation points of AttnQuant
// (kernels/attention.h): q u8 and k s8 per tensor (asymmetric), v s8 (symmetric), the softmax
// probabilities u8 uniform or log2 (p_tau > 0). q k^T and P v run as integer GEMMs; the engine
// decides how (oneDNN or exact float, nn/exec_mode.h), with bit-identical results.
// Used by SAM's attention modules (TinyViT windows, the mask decoder's self / cross attention).
#pragma once
#include <cstdint>

#include "core/tensor.h"
#include "kernels/attention.h"
#include "kernels/mha.h"
#include "kernels/quantize_act.h"

namespace vs::kernels {

void mha_quant(const float* q, const float* k, const float* v, float* out, const MhaShape& s, float scale,
               const float* bias, const AttnQuant& aq, IntEngine engine);

// q, k and v of all heads as the integer codes mha_quant makes of them (head-major: the operands
// of its batched GEMMs): q u8 [B*H*Nq, dqk], k s8 [B*H*Nk, dqk] (asymmetric codes - 2^(k_bits-1)),
// v s8 [B*H*Nk, dv].
struct QkvCodes {
  Tensor q, k, v;
  static QkvCodes empty(const MhaShape& s);  // uninitialised
};
// Token row r (= b * Nq + i) of a fused projection's output [q | k | v] (H * dqk, H * dqk, H * dv
// floats; Nq == Nk) into c: the codes mha_quant's own quantisation writes for that row. Lets the
// qkv projection's dequantisation pass write the codes while the row is in L1.
void encode_qkv_row(const float* x, int64_t r, const MhaShape& s, const AttnQuant& aq, QkvCodes& c);
// mha_quant from codes, every point quantised (q_bits, p_bits < 16); bit-identical to mha_quant
// on the floats the codes were made from. Its output rows (token t = b * Nq + i, H * dv floats)
// are handed to sink(row, t) instead of being stored (e.g. as the output projection's codes).
void mha_quant_codes(const QkvCodes& c, const MhaShape& s, float scale, const float* bias, const AttnQuant& aq,
                     IntEngine engine, const RowSink& sink);

// The float softmax probabilities of head h, probs [B, Nq, Nk] (for calibration).
void mha_probs_f32(const float* q, const float* k, float* probs, const MhaShape& s, float scale,
                   const float* bias, int64_t h);

// P v for B * H products (image b, head h): probability codes c [B, H, Nq, Nk] (uniform u8 with
// scale aq.p_scale, or log2 codes when aq.p_tau > 0) and value codes vc [B, H, Nk, dv] (s8, scale
// aq.v_scale), written to out[b, i, h * dv : (h + 1) * dv] (row stride ldo); log2 codes run in
// 16-bit fixed point (kernels/log2_quant.h: two u8 x s8 GEMMs on the high and low bytes).
void codes_times_v(const uint8_t* c, const int8_t* vc, float* out, int64_t B, int64_t H, int64_t Nq,
                   int64_t Nk, int64_t dv, int64_t ldo, const AttnQuant& aq, IntEngine engine);
// The same with each token's output row (t = b * Nq + i, H * dv floats) handed to sink(row, t).
void codes_times_v_rows(const uint8_t* c, const int8_t* vc, int64_t B, int64_t H, int64_t Nq, int64_t Nk, int64_t dv,
                        const AttnQuant& aq, IntEngine engine, const RowSink& sink);

}  // namespace vs::kernels
