#include "kernels/mha_quant.h"

#include <cmath>

#include "core/tensor.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"
#include "kernels/log2_quant.h"
#include "kernels/quantize_act.h"

namespace vs::kernels {
namespace {

// Scores of head h are in p [B, Nq, Nk] (unscaled q.k); adds the bias and takes the softmax.
void scores_to_probs(float* p, const MhaShape& s, float scale, const float* bias, int64_t h) {
  const int64_t per = s.Nq * s.Nk;
  if (bias) {  // same arithmetic as mha_f32: score * scale + bias, then softmax
    const float* bh = bias + h * per;
#pragma omp parallel for
    for (int64_t b = 0; b < s.B; ++b)
      for (int64_t i = 0; i < per; ++i) p[b * per + i] = p[b * per + i] * scale + bh[i];
    softmax_rows(p, s.B * s.Nq, s.Nk, 1.f);
  } else {
    softmax_rows(p, s.B * s.Nq, s.Nk, scale);
  }
}

void head_scores_f32(const float* q, const float* k, float* p, const MhaShape& s, int64_t h) {
  matmul_strided({q + h * s.dqk, {s.B, s.Nq, s.dqk}, {s.Nq * s.ldq, s.ldq, 1}},
                 {k + h * s.dqk, {s.B, s.dqk, s.Nk}, {s.Nk * s.ldk, 1, s.ldk}}, p, {s.B, s.Nq, s.Nk},
                 {s.Nq * s.Nk, s.Nk, 1});
}

// Integer scores of head h: (q^ - zq)(k^ - zk) * q_scale * k_scale into p [B, Nq, Nk].
void head_scores_quant(const float* q, const float* k, float* p, const MhaShape& s, int64_t h,
                       const AttnQuant& aq, IntEngine engine) {
  const int64_t B = s.B, Nq = s.Nq, Nk = s.Nk, d = s.dqk;
  Tensor qc = Tensor::empty({B * Nq, d}, DType::u8), kc = Tensor::empty({B * Nk, d}, DType::i8);
  Tensor acc = Tensor::empty({B, Nq, Nk}, DType::i32);
  // Rows of all batches share one stride, so each operand is quantised in one call.
  quantize_u8(q + h * d, qc.data<uint8_t>(), B * Nq, d, s.ldq, aq.q_scale, aq.q_zero, aq.q_bits);
  quantize_asym_s8(k + h * d, kc.data<int8_t>(), B * Nk, d, s.ldk, aq.k_scale, aq.k_zero, aq.k_bits);
  gemm_u8s8_s32({B, Nq, Nk, d, true}, qc.data<uint8_t>(), aq.q_zero, kc.data<int8_t>(), acc.data<int32_t>(), engine);
  // sum_d (q - zq)(k - zk) = GEMM - zk' * sum_d (q - zq), zk' the stored codes' zero point.
  const int32_t zk = aq.k_zero - (1 << (aq.k_bits - 1));
  const float alpha = aq.q_scale * aq.k_scale;
  const int32_t* a = acc.data<int32_t>();
  const uint8_t* qcp = qc.data<uint8_t>();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < B * Nq; ++r) {
    int32_t qsum = 0;
    for (int64_t j = 0; j < d; ++j) qsum += int32_t(qcp[r * d + j]) - aq.q_zero;
    const int32_t corr = zk * qsum;
    for (int64_t j = 0; j < Nk; ++j) p[r * Nk + j] = float(a[r * Nk + j] - corr) * alpha;
  }
}

}  // namespace

void quant_probs_times_v(const float* p, const int8_t* vc, float* out, int64_t B, int64_t Nq, int64_t Nk,
                         int64_t dv, int64_t ldo, const AttnQuant& aq, IntEngine engine) {
  const int64_t n = B * Nq * Nk;
  Tensor codes = Tensor::empty({n}, DType::u8);
  uint8_t* c = codes.data<uint8_t>();
  if (aq.p_tau == 0) {
    Tensor acc = Tensor::empty({B, Nq, dv}, DType::i32);
    quantize_u8(p, c, B * Nq, Nk, Nk, aq.p_scale, 0, aq.p_bits);
    gemm_u8s8_s32({B, Nq, dv, Nk, false}, c, 0, vc, acc.data<int32_t>(), engine);
    Dequant d;
    d.a_scale = &aq.p_scale;
    d.b_scale = &aq.v_scale;
    for (int64_t b = 0; b < B; ++b) dequantize_acc(acc.data<int32_t>() + b * Nq * dv, Nq, dv, d, out + b * Nq * ldo, ldo);
    return;
  }
  const Log2Grid g = make_log2_grid(aq.p_scale, aq.p_tau, aq.p_bits);
  uint16_t table[256];
  log2_fixed_table(g, table);
  log2_codes(p, c, n, g);
  Tensor hi = Tensor::empty({n}, DType::u8), lo = Tensor::empty({n}, DType::u8);
  uint8_t *hp = hi.data<uint8_t>(), *lp = lo.data<uint8_t>();
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    hp[i] = uint8_t(table[c[i]] >> 8);
    lp[i] = uint8_t(table[c[i]] & 0xff);
  }
  Tensor acc_hi = Tensor::empty({B, Nq, dv}, DType::i32), acc_lo = Tensor::empty({B, Nq, dv}, DType::i32);
  gemm_u8s8_s32({B, Nq, dv, Nk, false}, hp, 0, vc, acc_hi.data<int32_t>(), engine);
  gemm_u8s8_s32({B, Nq, dv, Nk, false}, lp, 0, vc, acc_lo.data<int32_t>(), engine);
  const float unit = float(double(aq.p_scale) * std::exp2(-15.0) * double(aq.v_scale));
  const int32_t *ah = acc_hi.data<int32_t>(), *al = acc_lo.data<int32_t>();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < B * Nq; ++r) {
    float* o = out + (r / Nq) * Nq * ldo + (r % Nq) * ldo;
    for (int64_t j = 0; j < dv; ++j) o[j] = float(int64_t(ah[r * dv + j]) * 256 + al[r * dv + j]) * unit;
  }
}

void mha_probs_f32(const float* q, const float* k, float* probs, const MhaShape& s, float scale,
                   const float* bias, int64_t h) {
  head_scores_f32(q, k, probs, s, h);
  scores_to_probs(probs, s, scale, bias, h);
}

void mha_quant(const float* q, const float* k, const float* v, float* out, const MhaShape& s, float scale,
               const float* bias, const AttnQuant& aq, IntEngine engine) {
  const int64_t B = s.B, Nq = s.Nq, Nk = s.Nk, dv = s.dv;
  Tensor probs = Tensor::empty({B, Nq, Nk});
  float* p = probs.f32();
  for (int64_t h = 0; h < s.H; ++h) {
    if (aq.q_bits < 16)
      head_scores_quant(q, k, p, s, h, aq, engine);
    else
      head_scores_f32(q, k, p, s, h);
    scores_to_probs(p, s, scale, bias, h);
    if (aq.p_bits < 16) {
      Tensor vc = Tensor::empty({B * Nk, dv}, DType::i8);
      quantize_s8(v + h * dv, vc.data<int8_t>(), B * Nk, dv, s.ldv, aq.v_scale, aq.v_bits);
      quant_probs_times_v(p, vc.data<int8_t>(), out + h * dv, B, Nq, Nk, dv, s.ldo, aq, engine);
    } else {
      matmul_strided({p, {B, Nq, Nk}, {Nq * Nk, Nk, 1}}, {v + h * dv, {B, Nk, dv}, {Nk * s.ldv, s.ldv, 1}},
                     out + h * dv, {B, Nq, dv}, {Nq * s.ldo, s.ldo, 1});
    }
  }
}

}  // namespace vs::kernels
