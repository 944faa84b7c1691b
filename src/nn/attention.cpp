#include "nn/attention.h"

#include <cmath>

#include "core/error.h"

namespace vs::nn {

Attention Attention::load(ParamReader& p, const std::string& prefix, int64_t C, int64_t num_heads,
                          bool qkv_bias) {
  check(num_heads > 0 && C % num_heads == 0,
        p.source() + ": embed_dim " + std::to_string(C) + " is not divisible by num_heads " +
            std::to_string(num_heads));
  Attention a;
  int64_t d = C / num_heads;
  a.heads.qk_dim.assign(size_t(num_heads), d);
  a.heads.v_dim.assign(size_t(num_heads), d);
  a.scale = 1.f / std::sqrt(float(d));
  a.qkv = load_linear(p, prefix + ".qkv", 3 * C, C, qkv_bias);
  a.proj = load_linear(p, prefix + ".proj", C, C, true);
  return a;
}

void Attention::forward(const float* x, float* y, int64_t B, int64_t N) const {
  Tensor qkv_out = Tensor::empty({B * N, heads.qkv_width()});
  qkv->forward(x, qkv_out.f32(), B * N);
  Tensor ctx = Tensor::empty({B * N, heads.v_total()});
  kernels::attention_f32(qkv_out.f32(), ctx.f32(), B, N, heads, scale);
  proj->forward(ctx.f32(), y, B * N);
}

void Attention::save(const std::string& prefix, StateDict& out) const {
  qkv->save(prefix + ".qkv", out);
  proj->save(prefix + ".proj", out);
}

}  // namespace vs::nn
