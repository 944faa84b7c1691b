// Multi-head self-attention core: out = softmax(scale * q k^T) v per head, reading q, k, v in
// place from the fused qkv projection output. Heads may have different q/k and v widths
// (structured pruning leaves them uneven).
#pragma once
#include <cstdint>
#include <vector>

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

}  // namespace vs::kernels
