// Multi-head attention with separate q, k, v operands (read in place through row strides) and an
// optional additive bias per head: out = softmax(scale * q k^T + bias) v. Used where
// attention_f32's fused-qkv self-attention does not fit: SAM's cross-attention (queries and keys
// of different lengths) and TinyViT's windows (relative position biases).
#pragma once
#include <cstdint>

namespace vs::kernels {

// Rows of q/k/v/out have strides ldq/ldk/ldv/ldo (elements); head h reads columns
// [h*dqk, (h+1)*dqk) of q and k and [h*dv, (h+1)*dv) of v and writes those of out.
// q: [B, Nq, .], k: [B, Nk, .], v: [B, Nk, .], out: [B, Nq, .]; bias: [H, Nq, Nk] or null.
struct MhaShape {
  int64_t B, Nq, Nk, H, dqk, dv;
  int64_t ldq, ldk, ldv, ldo;
};
void mha_f32(const float* q, const float* k, const float* v, float* out, const MhaShape& s,
             float scale, const float* bias = nullptr);

}  // namespace vs::kernels
