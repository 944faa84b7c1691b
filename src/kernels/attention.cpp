#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/tensor.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"
#include "kernels/mha_quant.h"
#include "kernels/quantize_act.h"

namespace vs::kernels {

int64_t HeadLayout::qk_total() const { return std::accumulate(qk_dim.begin(), qk_dim.end(), int64_t(0)); }
int64_t HeadLayout::v_total() const { return std::accumulate(v_dim.begin(), v_dim.end(), int64_t(0)); }

bool HeadLayout::uniform() const {
  return std::all_of(qk_dim.begin(), qk_dim.end(), [&](int64_t d) { return d == qk_dim[0]; }) &&
         std::all_of(v_dim.begin(), v_dim.end(), [&](int64_t d) { return d == v_dim[0]; });
}

void attention_f32(const float* qkv, float* out, int64_t B, int64_t N, const HeadLayout& heads,
                   float scale) {
  const int64_t H = int64_t(heads.qk_dim.size());
  const int64_t ld = heads.qkv_width(), ldo = heads.v_total(), qk_total = heads.qk_total();
  if (heads.uniform() && heads.qk_dim[0] > 0 && heads.v_dim[0] > 0) {
    Tensor scores = Tensor::empty({B, H, N, N});
    float* s = scores.f32();
    // All heads in one batched product each: dims [B, H, rows, cols], heads read in place.
    const int64_t dq = heads.qk_dim[0], dv = heads.v_dim[0];
    matmul_strided({qkv, {B, H, N, dq}, {N * ld, dq, ld, 1}},
                   {qkv + qk_total, {B, H, dq, N}, {N * ld, dq, 1, ld}}, s, {B, H, N, N},
                   {H * N * N, N * N, N, 1});
    softmax_rows(s, B * H * N, N, scale);
    matmul_strided({s, {B, H, N, N}, {H * N * N, N * N, N, 1}},
                   {qkv + 2 * qk_total, {B, H, N, dv}, {N * ld, dv, ld, 1}}, out, {B, H, N, dv},
                   {N * ldo, dv, ldo, 1});
    return;
  }
  // Uneven heads (after structured pruning): one batched-over-images product per head, the
  // per-head path of attention_quant with every point left float.
  attention_quant(qkv, out, B, N, heads, scale, AttnQuant{}, IntEngine::onednn);
}

namespace {

struct HeadOffsets {
  std::vector<int64_t> q, v;  // column offset of each head's q (k: + qk_total) and v
  explicit HeadOffsets(const HeadLayout& heads) {
    int64_t qo = 0, vo = 0;
    for (size_t h = 0; h < heads.qk_dim.size(); ++h) {
      q.push_back(qo);
      v.push_back(vo);
      qo += heads.qk_dim[h];
      vo += heads.v_dim[h];
    }
  }
};

// Float scores of one head, softmaxed: probs [B, N, N].
void head_probs_f32(const float* qkv, float* probs, int64_t B, int64_t N, const HeadLayout& heads,
                    float scale, int64_t qoff, int64_t dq) {
  const int64_t ld = heads.qkv_width();
  if (dq > 0)
    matmul_strided({qkv + qoff, {B, N, dq}, {N * ld, ld, 1}},
                   {qkv + heads.qk_total() + qoff, {B, dq, N}, {N * ld, 1, ld}}, probs, {B, N, N},
                   {N * N, N, 1});
  else  // no query/key left: every score is 0, attention is uniform
    std::fill(probs, probs + B * N * N, 0.f);
  softmax_rows(probs, B * N, N, scale);
}

}  // namespace

void attention_probs_f32(const float* qkv, float* probs, int64_t B, int64_t N,
                         const HeadLayout& heads, float scale, int64_t h) {
  HeadOffsets off(heads);
  head_probs_f32(qkv, probs, B, N, heads, scale, off.q[size_t(h)], heads.qk_dim[size_t(h)]);
}

void attention_quant(const float* qkv, float* out, int64_t B, int64_t N, const HeadLayout& heads,
                     float scale, const AttnQuant& aq, IntEngine engine) {
  const int64_t H = int64_t(heads.qk_dim.size()), ld = heads.qkv_width(), ldo = heads.v_total(),
                qk_total = heads.qk_total();
  const bool int_qk = aq.q_bits < 16, int_pv = aq.p_bits < 16;
  HeadOffsets off(heads);
  Tensor probs = Tensor::empty({B, N, N});
  float* p = probs.f32();
  for (int64_t h = 0; h < H; ++h) {
    const int64_t dq = heads.qk_dim[size_t(h)], dv = heads.v_dim[size_t(h)];
    const int64_t qoff = off.q[size_t(h)], voff = off.v[size_t(h)];
    if (dv == 0) continue;
    // 1. probabilities [B, N, N]
    if (int_qk && dq > 0) {
      Tensor qc = Tensor::empty({B, N, dq}, DType::u8), kc = Tensor::empty({B, N, dq}, DType::i8);
      Tensor acc = Tensor::empty({B, N, N}, DType::i32);
      for (int64_t b = 0; b < B; ++b) {
        quantize_u8(qkv + b * N * ld + qoff, qc.data<uint8_t>() + b * N * dq, N, dq, ld, aq.q_scale,
                    aq.q_zero, aq.q_bits);
        quantize_asym_s8(qkv + b * N * ld + qk_total + qoff, kc.data<int8_t>() + b * N * dq, N, dq, ld,
                         aq.k_scale, aq.k_zero, aq.k_bits);
      }
      gemm_u8s8_s32({B, N, N, dq, true}, qc.data<uint8_t>(), aq.q_zero, kc.data<int8_t>(),
                    acc.data<int32_t>(), engine);
      // sum_d (q - zq)(k - zk) = GEMM - zk' * sum_d (q - zq), zk' the stored codes' zero point.
      const int32_t zk = aq.k_zero - (1 << (aq.k_bits - 1));
      const float alpha = aq.q_scale * aq.k_scale;
      const int32_t* a = acc.data<int32_t>();
      const uint8_t* qcp = qc.data<uint8_t>();
#pragma omp parallel for schedule(static)
      for (int64_t r = 0; r < B * N; ++r) {
        int32_t qsum = 0;
        for (int64_t d = 0; d < dq; ++d) qsum += int32_t(qcp[r * dq + d]) - aq.q_zero;
        const int32_t corr = zk * qsum;
#pragma omp simd
        for (int64_t j = 0; j < N; ++j) p[r * N + j] = float(a[r * N + j] - corr) * alpha;
      }
      softmax_rows(p, B * N, N, scale);
    } else {
      head_probs_f32(qkv, p, B, N, heads, scale, qoff, dq);
    }
    // 2. context = P v, written into out[:, voff : voff + dv]
    if (int_pv) {
      Tensor vc = Tensor::empty({B, N, dv}, DType::i8);
      for (int64_t b = 0; b < B; ++b)
        quantize_s8(qkv + b * N * ld + 2 * qk_total + voff, vc.data<int8_t>() + b * N * dv, N, dv, ld,
                    aq.v_scale, aq.v_bits);
      quant_probs_times_v(p, vc.data<int8_t>(), out + voff, B, N, N, dv, ldo, aq, engine);
    } else {
      matmul_strided({p, {B, N, N}, {N * N, N, 1}},
                     {qkv + 2 * qk_total + voff, {B, N, dv}, {N * ld, ld, 1}}, out + voff, {B, N, dv},
                     {N * ldo, ldo, 1});
    }
  }
}

}  // namespace vs::kernels
