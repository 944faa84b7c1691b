#include "kernels/attention.h"

#include <algorithm>
#include <numeric>

#include "core/tensor.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"

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
  Tensor scores = Tensor::empty({B, H, N, N});
  float* s = scores.f32();
  if (heads.uniform() && heads.qk_dim[0] > 0 && heads.v_dim[0] > 0) {
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
  // Uneven heads (after structured pruning): one batched-over-images product per head.
  int64_t qoff = 0, voff = 0;
  for (int64_t h = 0; h < H; ++h) {
    const int64_t dq = heads.qk_dim[size_t(h)], dv = heads.v_dim[size_t(h)];
    float* sh = s + h * N * N;
    if (dv > 0) {
      if (dq > 0)
        matmul_strided({qkv + qoff, {B, N, dq}, {N * ld, ld, 1}},
                       {qkv + qk_total + qoff, {B, dq, N}, {N * ld, 1, ld}}, sh, {B, N, N},
                       {H * N * N, N, 1});
      else  // no query/key left: every score is 0, attention is uniform
        for (int64_t b = 0; b < B; ++b) std::fill(sh + b * H * N * N, sh + b * H * N * N + N * N, 0.f);
      for (int64_t b = 0; b < B; ++b) softmax_rows(sh + b * H * N * N, N, N, scale);
      matmul_strided({sh, {B, N, N}, {H * N * N, N, 1}},
                     {qkv + 2 * qk_total + voff, {B, N, dv}, {N * ld, ld, 1}}, out + voff, {B, N, dv},
                     {N * ldo, ldo, 1});
    }
    qoff += dq;
    voff += dv;
  }
}

}  // namespace vs::kernels
