// A pre-norm transformer block: x += ls1 * attn(norm1(x)); x += ls2 * mlp(norm2(x)).
#pragma once
#include <string>

#include "nn/attention.h"
#include "nn/layernorm.h"
#include "nn/mlp.h"

namespace vs::nn {

struct Block {
  LayerNorm norm1, norm2;
  Attention attn;
  Mlp mlp;
  Tensor ls1, ls2;  // optional LayerScale gammas [C] (timm "ls1.gamma"); undefined = 1

  static Block load(ParamReader& p, const std::string& prefix, int64_t C, int64_t num_heads,
                    bool qkv_bias, float eps, const kernels::HeadLayout& layout = {},
                    float attn_scale = 0.f);
  void forward(float* x, int64_t B, int64_t N) const;  // x: [B*N, C], updated in place
  void save(const std::string& prefix, StateDict& out) const;
};

}  // namespace vs::nn
