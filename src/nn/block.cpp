#include "nn/block.h"

#include "kernels/elementwise.h"

namespace vs::nn {

Block Block::load(ParamReader& p, const std::string& prefix, int64_t C, int64_t num_heads,
                  bool qkv_bias, float eps, const kernels::HeadLayout& layout, float attn_scale) {
  Block b;
  b.norm1 = LayerNorm::load(p, prefix + ".norm1", C, eps);
  b.attn = Attention::load(p, prefix + ".attn", C, num_heads, qkv_bias, layout, attn_scale);
  b.norm2 = LayerNorm::load(p, prefix + ".norm2", C, eps);
  b.mlp = Mlp::load(p, prefix + ".mlp", C);
  if (p.has(prefix + ".ls1.gamma")) b.ls1 = p.get(prefix + ".ls1.gamma", {C});
  if (p.has(prefix + ".ls2.gamma")) b.ls2 = p.get(prefix + ".ls2.gamma", {C});
  return b;
}

static void add_residual(float* x, const float* y, const Tensor& gamma, int64_t rows, int64_t C) {
  if (!gamma.defined()) {
    kernels::add_inplace(x, y, rows * C);
    return;
  }
  const float* g = gamma.f32();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < C; ++c) x[r * C + c] += g[c] * y[r * C + c];
}

void Block::forward(float* x, int64_t B, int64_t N) const {
  const int64_t rows = B * N, C = norm1.width();
  Tensor h, y = Tensor::empty({rows, C});  // h: the normalised rows, only where floats are needed
  // A quantised qkv / fc1 gets its input codes straight from the LayerNorm's pass, and (without
  // layer scale) its branch's output is added to x in proj's / fc2's dequantisation pass.
  if (auto* q = taking_codes(*attn.qkv, rows)) {
    QuantLinear::InputCodes c = q->input_codes(rows);
    norm1.forward_codes(x, q->row_codes(c), rows);
    const bool fuse = !ls1.defined();
    attn.forward(c, fuse ? x : y.f32(), B, N, fuse);
    if (!fuse) add_residual(x, y.f32(), ls1, rows, C);
  } else {
    h = Tensor::empty({rows, C});
    norm1.forward(x, h.f32(), rows);
    attn.forward(h.f32(), y.f32(), B, N);
    add_residual(x, y.f32(), ls1, rows, C);
  }
  if (auto* q = taking_codes(*mlp.fc1, rows)) {
    QuantLinear::InputCodes c = q->input_codes(rows);
    norm2.forward_codes(x, q->row_codes(c), rows);
    const bool fuse = !ls2.defined();
    mlp.forward(c, fuse ? x : y.f32(), rows, fuse);
    if (fuse) return;
  } else {
    if (!h.defined()) h = Tensor::empty({rows, C});
    norm2.forward(x, h.f32(), rows);
    mlp.forward(h.f32(), y.f32(), rows);
  }
  add_residual(x, y.f32(), ls2, rows, C);
}

void Block::save(const std::string& prefix, StateDict& out) const {
  norm1.save(prefix + ".norm1", out);
  attn.save(prefix + ".attn", out);
  norm2.save(prefix + ".norm2", out);
  mlp.save(prefix + ".mlp", out);
  if (ls1.defined()) out[prefix + ".ls1.gamma"] = ls1;
  if (ls2.defined()) out[prefix + ".ls2.gamma"] = ls2;
}

}  // namespace vs::nn
