#include "kernels/mha_quant.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"
#include "kernels/log2_quant.h"
#include "kernels/quantize_act.h"

namespace vs::kernels {
namespace {

// Float scores of all heads, p [B, H, Nq, Nk] (unscaled q.k; 0 where a head has no q/k width).
void scores_f32(const float* q, const float* k, float* p, const MhaShape& s) {
  if (s.dqk == 0) {
    std::fill(p, p + s.B * s.H * s.Nq * s.Nk, 0.f);
    return;
  }
  matmul_strided({q, {s.B, s.H, s.Nq, s.dqk}, {s.Nq * s.ldq, s.dqk, s.ldq, 1}},
                 {k, {s.B, s.H, s.dqk, s.Nk}, {s.Nk * s.ldk, s.dqk, 1, s.ldk}}, p, {s.B, s.H, s.Nq, s.Nk},
                 {s.H * s.Nq * s.Nk, s.Nq * s.Nk, s.Nk, 1});
}

// Row r's probability codes (uniform u8, or log2 when aq.p_tau > 0), when `codes` is set.
void probs_to_codes(const float* pr, int64_t r, int64_t Nk, const AttnQuant& aq, const Log2Grid& g, uint8_t* codes) {
  if (!codes) return;
  if (aq.p_tau == 0)
    quantize_u8_row(pr, codes + r * Nk, Nk, aq.p_scale, 0, aq.p_bits);
  else
    log2_codes_row(pr, codes + r * Nk, Nk, g);
}

// Row r of the scores p [B * H * Nq, Nk] -> softmax probabilities in place (score * scale + bias
// first when there is a bias [H, Nq, Nk], the arithmetic of mha_f32), then, when `codes` is set,
// the row's probability codes (uniform u8, or log2 when aq.p_tau > 0): one pass over the row
// while it is in L1 instead of a parallel pass over all rows per step.
void finish_row(float* pr, int64_t r, const MhaShape& s, float scale, const float* bias, const AttnQuant& aq,
                const Log2Grid& g, uint8_t* codes) {
  const int64_t Nk = s.Nk;
  if (bias) {
    const float* br = bias + (r % (s.H * s.Nq)) * Nk;
    for (int64_t j = 0; j < Nk; ++j) pr[j] = pr[j] * scale + br[j];
    softmax_row(pr, Nk, 1.f);
  } else {
    softmax_row(pr, Nk, scale);
  }
  probs_to_codes(pr, r, Nk, aq, g, codes);
}

// Probabilities (and their codes, `codes` non-null) of all heads into p [B, H, Nq, Nk], from
// integer scores (q^ - zq)(k^ - zk) * q_scale * k_scale of the head-major codes qc / kc
// (QkvCodes): one batched (B * H) GEMM without zero points, whose result is corrected exactly in
// integers:
//   sum_d (q - zq)(k' - zk') = sum_d q k' - zq * sum_d k' - zk' * sum_d q + d * zq * zk'
// (k' the stored s8 codes, zk' their zero point).
void probs_from_codes(const uint8_t* qcp, const int8_t* kcp, float* p, const MhaShape& s, float scale, const float* bias,
                      const AttnQuant& aq, const Log2Grid& g, uint8_t* codes, IntEngine engine) {
  const int64_t BH = s.B * s.H, Nq = s.Nq, Nk = s.Nk, d = s.dqk;
  Tensor acc = Tensor::empty({BH, Nq, Nk}, DType::i32), ksum = Tensor::empty({BH * Nk}, DType::i32);
  gemm_u8s8_s32({BH, Nq, Nk, d, true}, qcp, 0, kcp, acc.data<int32_t>(), engine);
  int32_t* ks = ksum.data<int32_t>();
#pragma omp parallel for schedule(static) if (BH * Nk * d > 32768)
  for (int64_t r = 0; r < BH * Nk; ++r) {
    int32_t sum = 0;
    for (int64_t j = 0; j < d; ++j) sum += kcp[r * d + j];
    ks[r] = sum;
  }
  const int32_t zq = aq.q_zero, zk = aq.k_zero - (1 << (aq.k_bits - 1)), dzz = int32_t(d) * zq * zk;
  const float alpha = aq.q_scale * aq.k_scale;
  const int32_t* a = acc.data<int32_t>();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < BH * Nq; ++r) {
    int32_t qsum = 0;
    for (int64_t j = 0; j < d; ++j) qsum += qcp[r * d + j];
    const int32_t corr = zk * qsum - dzz;
    const int32_t* kr = ks + (r / Nq) * Nk;
    float* pr = p + r * Nk;
    float mx = -INFINITY;  // the scores and their maximum in one pass, then softmax_row's other passes
#pragma omp simd reduction(max : mx)
    for (int64_t j = 0; j < Nk; ++j) {
      pr[j] = float(a[r * Nk + j] - zq * kr[j] - corr) * alpha;
      mx = pr[j] > mx ? pr[j] : mx;
    }
    if (bias) {  // (the bias changes the maximum: finish_row finds it again)
      finish_row(pr, r, s, scale, bias, aq, g, codes);
    } else {
      softmax_row_with_max(pr, Nk, mx, scale);
      probs_to_codes(pr, r, Nk, aq, g, codes);
    }
  }
}

// q and k (float, rows of stride ldq / ldk) quantised head-major, then probs_from_codes.
void probs_quant(const float* q, const float* k, float* p, const MhaShape& s, float scale, const float* bias,
                 const AttnQuant& aq, const Log2Grid& g, uint8_t* codes, IntEngine engine) {
  const int64_t BH = s.B * s.H;
  Tensor qc = Tensor::empty({BH * s.Nq, s.dqk}, DType::u8), kc = Tensor::empty({BH * s.Nk, s.dqk}, DType::i8);
  quantize_u8_heads(q, qc.data<uint8_t>(), s.B * s.Nq, s.Nq, s.H, s.dqk, s.ldq, aq.q_scale, aq.q_zero, aq.q_bits);
  quantize_asym_s8_heads(k, kc.data<int8_t>(), s.B * s.Nk, s.Nk, s.H, s.dqk, s.ldk, aq.k_scale, aq.k_zero, aq.k_bits);
  probs_from_codes(qc.data<uint8_t>(), kc.data<int8_t>(), p, s, scale, bias, aq, g, codes, engine);
}

// The same from float scores (q and k left float).
void probs_f32(const float* q, const float* k, float* p, const MhaShape& s, float scale, const float* bias,
               const AttnQuant& aq, const Log2Grid& g, uint8_t* codes) {
  scores_f32(q, k, p, s);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < s.B * s.H * s.Nq; ++r) finish_row(p + r * s.Nk, r, s, scale, bias, aq, g, codes);
}

}  // namespace

void codes_times_v_rows(const uint8_t* c, const int8_t* vc, int64_t B, int64_t H, int64_t Nq, int64_t Nk, int64_t dv,
                        const AttnQuant& aq, IntEngine engine, const RowSink& sink) {
  const int64_t BH = B * H;
  // acc[bh, i, j] * unit, from one GEMM (uniform codes) or two (log2 levels' high and low bytes).
  Tensor acc = Tensor::empty({BH, Nq, dv}, DType::i32), acc_lo;
  float unit = aq.p_scale * aq.v_scale;  // (dequantize_acc's arithmetic for scalar scales)
  if (aq.p_tau == 0) {
    gemm_u8s8_s32({BH, Nq, dv, Nk, false}, c, 0, vc, acc.data<int32_t>(), engine);
  } else {
    const int64_t n = BH * Nq * Nk;
    const Log2Grid g = make_log2_grid(aq.p_scale, aq.p_tau, aq.p_bits);
    uint16_t table[256];
    log2_fixed_table(g, table);
    int32_t table32[256] = {};  // 32-bit entries: the split below vectorises as gathers (16-bit did not)
    std::copy(table, table + g.cmax + 1, table32);
    Tensor hi = Tensor::empty({n}, DType::u8), lo = Tensor::empty({n}, DType::u8);
    uint8_t *hp = hi.data<uint8_t>(), *lp = lo.data<uint8_t>();
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const int32_t t = table32[c[i]];
      hp[i] = uint8_t(t >> 8);
      lp[i] = uint8_t(t & 0xff);
    }
    acc_lo = Tensor::empty({BH, Nq, dv}, DType::i32);
    gemm_u8s8_s32({BH, Nq, dv, Nk, false}, hp, 0, vc, acc.data<int32_t>(), engine);
    gemm_u8s8_s32({BH, Nq, dv, Nk, false}, lp, 0, vc, acc_lo.data<int32_t>(), engine);
    unit = float(double(aq.p_scale) * std::exp2(-15.0) * double(aq.v_scale));
  }
  const int32_t *ah = acc.data<int32_t>(), *al = acc_lo.defined() ? acc_lo.data<int32_t>() : nullptr;
  // Token t = b * Nq + i: head h's dv values are row i of product b * H + h.
#pragma omp parallel if (BH * Nq * dv > 16384)
  {
    std::vector<float> buf(static_cast<size_t>(H * dv));  // one token's row, in L1
#pragma omp for schedule(static)
    for (int64_t t = 0; t < B * Nq; ++t) {
      const int64_t b = t / Nq, i = t % Nq;
      for (int64_t h = 0; h < H; ++h) {
        const int64_t r = ((b * H + h) * Nq + i) * dv;
        float* o = buf.data() + h * dv;
        if (al) {
          for (int64_t j = 0; j < dv; ++j) o[j] = float(int64_t(ah[r + j]) * 256 + al[r + j]) * unit;
        } else {
#pragma omp simd
          for (int64_t j = 0; j < dv; ++j) o[j] = float(ah[r + j]) * unit;
        }
      }
      sink(buf.data(), t);
    }
  }
}

void codes_times_v(const uint8_t* c, const int8_t* vc, float* out, int64_t B, int64_t H, int64_t Nq, int64_t Nk,
                   int64_t dv, int64_t ldo, const AttnQuant& aq, IntEngine engine) {
  codes_times_v_rows(c, vc, B, H, Nq, Nk, dv, aq, engine,
                     [&](const float* row, int64_t t) { std::copy(row, row + H * dv, out + t * ldo); });
}

void mha_probs_f32(const float* q, const float* k, float* probs, const MhaShape& s, float scale,
                   const float* bias, int64_t h) {
  MhaShape one = s;  // head h alone
  one.H = 1;
  probs_f32(q + h * s.dqk, k + h * s.dqk, probs, one, scale, bias ? bias + h * s.Nq * s.Nk : nullptr, AttnQuant{},
            Log2Grid{}, nullptr);
}

QkvCodes QkvCodes::empty(const MhaShape& s) {
  const int64_t BH = s.B * s.H;
  return {Tensor::empty({BH * s.Nq, s.dqk}, DType::u8), Tensor::empty({BH * s.Nk, s.dqk}, DType::i8),
          Tensor::empty({BH * s.Nk, s.dv}, DType::i8)};
}

void encode_qkv_row(const float* x, int64_t r, const MhaShape& s, const AttnQuant& aq, QkvCodes& c) {
  const int64_t qk = s.H * s.dqk;
  quantize_u8_heads_row(x, c.q.data<uint8_t>(), r, s.Nq, s.H, s.dqk, aq.q_scale, aq.q_zero, aq.q_bits);
  quantize_asym_s8_heads_row(x + qk, c.k.data<int8_t>(), r, s.Nk, s.H, s.dqk, aq.k_scale, aq.k_zero, aq.k_bits);
  quantize_s8_heads_row(x + 2 * qk, c.v.data<int8_t>(), r, s.Nk, s.H, s.dv, aq.v_scale, aq.v_bits);
}

void mha_quant_codes(const QkvCodes& c, const MhaShape& s, float scale, const float* bias, const AttnQuant& aq,
                     IntEngine engine, const RowSink& sink) {
  check(aq.q_bits < 16 && aq.p_bits < 16 && s.dqk > 0 && s.dv > 0, "mha_quant_codes: every attention point must be quantised");
  Tensor probs = Tensor::empty({s.B, s.H, s.Nq, s.Nk}), codes = Tensor::empty({s.B * s.H * s.Nq * s.Nk}, DType::u8);
  const Log2Grid g = aq.p_tau > 0 ? make_log2_grid(aq.p_scale, aq.p_tau, aq.p_bits) : Log2Grid{};
  probs_from_codes(c.q.data<uint8_t>(), c.k.data<int8_t>(), probs.f32(), s, scale, bias, aq, g, codes.data<uint8_t>(),
                   engine);
  codes_times_v_rows(codes.data<uint8_t>(), c.v.data<int8_t>(), s.B, s.H, s.Nq, s.Nk, s.dv, aq, engine, sink);
}

void mha_quant(const float* q, const float* k, const float* v, float* out, const MhaShape& s, float scale,
               const float* bias, const AttnQuant& aq, IntEngine engine) {
  const int64_t B = s.B, H = s.H, Nq = s.Nq, Nk = s.Nk, dv = s.dv;
  if (dv == 0) return;
  // All heads at once: every step is one parallel pass or one batched GEMM over B * H products
  // (per-head loops made dozens of tiny calls per layer, most of their time spent in sync).
  Tensor probs = Tensor::empty({B, H, Nq, Nk});
  const bool p_codes = aq.p_bits < 16;
  Tensor codes = p_codes ? Tensor::empty({B * H * Nq * Nk}, DType::u8) : Tensor();
  uint8_t* c = p_codes ? codes.data<uint8_t>() : nullptr;
  const Log2Grid g = p_codes && aq.p_tau > 0 ? make_log2_grid(aq.p_scale, aq.p_tau, aq.p_bits) : Log2Grid{};
  float* p = probs.f32();
  if (aq.q_bits < 16 && s.dqk > 0)
    probs_quant(q, k, p, s, scale, bias, aq, g, c, engine);
  else
    probs_f32(q, k, p, s, scale, bias, aq, g, c);
  if (p_codes) {
    Tensor vc = Tensor::empty({B * H * Nk, dv}, DType::i8);
    quantize_s8_heads(v, vc.data<int8_t>(), B * Nk, Nk, H, dv, s.ldv, aq.v_scale, aq.v_bits);
    codes_times_v(c, vc.data<int8_t>(), out, B, H, Nq, Nk, dv, s.ldo, aq, engine);
  } else {
    matmul_strided({p, {B, H, Nq, Nk}, {H * Nq * Nk, Nq * Nk, Nk, 1}},
                   {v, {B, H, Nk, dv}, {Nk * s.ldv, dv, s.ldv, 1}}, out, {B, H, Nq, dv},
                   {Nq * s.ldo, dv, s.ldo, 1});
  }
}

}  // namespace vs::kernels
