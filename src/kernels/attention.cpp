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
  // Uneven heads (after structured pruning): one head at a time, attention_quant's path with
  // every point left float.
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

}  // namespace

void attention_probs_f32(const float* qkv, float* probs, int64_t B, int64_t N,
                         const HeadLayout& heads, float scale, int64_t h) {
  HeadOffsets off(heads);
  const int64_t ld = heads.qkv_width(), qo = off.q[size_t(h)];
  const MhaShape s{B, N, N, 1, heads.qk_dim[size_t(h)], heads.v_dim[size_t(h)], ld, ld, ld, heads.v_total()};
  mha_probs_f32(qkv + qo, qkv + heads.qk_total() + qo, probs, s, scale, nullptr, 0);
}

void attention_quant(const float* qkv, float* out, int64_t B, int64_t N, const HeadLayout& heads,
                     float scale, const AttnQuant& aq, IntEngine engine) {
  const int64_t H = int64_t(heads.qk_dim.size()), ld = heads.qkv_width(), ldo = heads.v_total(),
                qk_total = heads.qk_total();
  // q, k and v are column blocks of the fused qkv output, read in place (mha_quant).
  if (heads.uniform()) {
    const MhaShape s{B, N, N, H, heads.qk_dim[0], heads.v_dim[0], ld, ld, ld, ldo};
    mha_quant(qkv, qkv + qk_total, qkv + 2 * qk_total, out, s, scale, nullptr, aq, engine);
    return;
  }
  HeadOffsets off(heads);  // uneven heads (structured pruning): one head at a time
  for (int64_t h = 0; h < H; ++h) {
    const MhaShape s{B, N, N, 1, heads.qk_dim[size_t(h)], heads.v_dim[size_t(h)], ld, ld, ld, ldo};
    const int64_t qo = off.q[size_t(h)];
    mha_quant(qkv + qo, qkv + qk_total + qo, qkv + 2 * qk_total + off.v[size_t(h)], out + off.v[size_t(h)], s,
              scale, nullptr, aq, engine);
  }
}

}  // namespace vs::kernels
