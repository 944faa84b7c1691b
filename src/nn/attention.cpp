#include "nn/attention.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "kernels/mha_quant.h"
#include "nn/exec_mode.h"
#include "nn/lowrank_linear.h"

namespace vs::nn {

static float read_scale(ParamReader& p, const std::string& name) {
  float s = p.get(name, {1}).f32()[0];
  check(s > 0 && std::isfinite(s), p.source() + ": '" + name + "' is not a positive number");
  return s;
}

static int32_t read_zero(ParamReader& p, const std::string& name, int bits) {
  Tensor z = p.get_any(name);
  check(z.dtype() == DType::i32 && z.numel() == 1, p.source() + ": tensor '" + name + "' should be I32 [1]");
  int32_t v = z.data<int32_t>()[0];
  check(v >= 0 && v < (1 << bits), p.source() + ": '" + name + "' is outside the code range");
  return v;
}

static Tensor zero_tensor(int32_t v) {
  Tensor z({1}, DType::i32);
  z.data<int32_t>()[0] = v;
  return z;
}

kernels::AttnQuant load_attn_quant(ParamReader& p, const std::string& prefix, const AttnSpec& spec) {
  kernels::AttnQuant q;
  q.q_bits = spec.q_bits;
  q.k_bits = spec.k_bits;
  q.v_bits = spec.v_bits;
  q.p_bits = spec.p_bits;
  q.p_tau = spec.p_tau;
  check(q.p_tau == 0 || q.p_tau == 1 || q.p_tau == 2 || q.p_tau == 4,
        p.source() + ": '" + prefix + "': p_tau must be 0 (uniform), 1, 2 or 4");
  for (int b : {q.q_bits, q.k_bits, q.v_bits, q.p_bits})
    check((b >= 2 && b <= 8) || b == 16, p.source() + ": attention bits of '" + prefix + "' must be 2..8 or 16");
  check((q.q_bits < 16) == (q.k_bits < 16) && (q.v_bits < 16) == (q.p_bits < 16),
        p.source() + ": '" + prefix + "': q with k, and v with the probabilities, must be quantised together");
  if (q.q_bits < 16) {
    q.q_scale = read_scale(p, prefix + ".q_scale");
    q.k_scale = read_scale(p, prefix + ".k_scale");
    q.q_zero = read_zero(p, prefix + ".q_zero", q.q_bits);
    q.k_zero = read_zero(p, prefix + ".k_zero", q.k_bits);
  }
  if (q.v_bits < 16) q.v_scale = read_scale(p, prefix + ".v_scale");
  if (q.p_bits < 16) q.p_scale = read_scale(p, prefix + ".p_scale");
  return q;
}

Attention Attention::load(ParamReader& p, const std::string& prefix, int64_t C, int64_t num_heads,
                          bool qkv_bias, const kernels::HeadLayout& layout, float scale) {
  Attention a;
  if (!layout.qk_dim.empty()) {  // structurally pruned: heads of their own widths
    a.heads = layout;
    a.scale = scale;
  } else {
    check(num_heads > 0 && C % num_heads == 0,
          p.source() + ": embed_dim " + std::to_string(C) + " is not divisible by num_heads " +
              std::to_string(num_heads));
    int64_t d = C / num_heads;
    a.heads.qk_dim.assign(size_t(num_heads), d);
    a.heads.v_dim.assign(size_t(num_heads), d);
    a.scale = scale > 0.f ? scale : 1.f / std::sqrt(float(d));
  }
  a.qkv = load_layer(p, prefix + ".qkv", a.heads.qkv_width(), C, qkv_bias);
  a.proj = load_layer(p, prefix + ".proj", C, a.heads.v_total(), true);
  if (auto it = p.attn_specs.find(prefix); it != p.attn_specs.end()) a.quant = load_attn_quant(p, prefix, it->second);
  return a;
}

void Attention::forward(const float* x, float* y, int64_t B, int64_t N) const {
  Tensor qkv_out = Tensor::empty({B * N, heads.qkv_width()});
  qkv->forward(x, qkv_out.f32(), B * N);
  finish(qkv_out.f32(), y, B, N, false);
}

void Attention::forward(const QuantLinear::InputCodes& x, float* y, int64_t B, int64_t N, bool add) const {
  const auto& q = dynamic_cast<const QuantLinear&>(*qkv);
  const int64_t rows = B * N;
  if (heads.uniform() && quant.q_bits < 16 && quant.p_bits < 16 && heads.qk_dim[0] > 0 && heads.v_dim[0] > 0) {
    // Every attention point quantised: qkv's dequantisation pass writes q, k and v's codes.
    const int64_t H = int64_t(heads.qk_dim.size()), ld = heads.qkv_width();
    const kernels::MhaShape s{B, N, N, H, heads.qk_dim[0], heads.v_dim[0], ld, ld, ld, heads.v_total()};
    kernels::QkvCodes c = kernels::QkvCodes::empty(s);
    q.forward_codes(x, rows, Epilogue::none, [&](const float* row, int64_t r) { kernels::encode_qkv_row(row, r, s, quant, c); });
    const int64_t vt = heads.v_total();
    if (auto* p = taking_codes(*proj, rows)) {  // and P.v's output rows become proj's input codes
      QuantLinear::InputCodes pc = p->input_codes(rows);
      const kernels::RowCodes rc = p->row_codes(pc);
      kernels::mha_quant_codes(c, s, scale, nullptr, quant, int_engine(),
                               [&](const float* row, int64_t t) { kernels::encode_row(row, vt, t, rc); });
      p->forward_codes(pc, y, rows, Epilogue::none, add);
      return;
    }
    Tensor ctx = Tensor::empty({rows, vt});
    float* cp = ctx.f32();
    kernels::mha_quant_codes(c, s, scale, nullptr, quant, int_engine(),
                             [&](const float* row, int64_t t) { std::copy(row, row + vt, cp + t * vt); });
    forward_into(*proj, cp, y, rows, add);
    return;
  }
  Tensor qkv_out = Tensor::empty({rows, heads.qkv_width()});
  q.forward_codes(x, qkv_out.f32(), rows, Epilogue::none);
  finish(qkv_out.f32(), y, B, N, add);
}

void Attention::finish(const float* qkv_out, float* y, int64_t B, int64_t N, bool add) const {
  const int64_t rows = B * N;
  Tensor ctx = Tensor::empty({rows, heads.v_total()});
  if (quant.any())
    kernels::attention_quant(qkv_out, ctx.f32(), B, N, heads, scale, quant, int_engine());
  else
    kernels::attention_f32(qkv_out, ctx.f32(), B, N, heads, scale);
  forward_into(*proj, ctx.f32(), y, rows, add);
}

void Attention::save(const std::string& prefix, StateDict& out) const {
  qkv->save(prefix + ".qkv", out);
  proj->save(prefix + ".proj", out);
  save_attn_quant(prefix, quant, out);
}

void save_attn_quant(const std::string& prefix, const kernels::AttnQuant& q, StateDict& out) {
  if (q.q_bits < 16) {
    out[prefix + ".q_scale"] = Tensor::from({1}, {q.q_scale});
    out[prefix + ".q_zero"] = zero_tensor(q.q_zero);
    out[prefix + ".k_scale"] = Tensor::from({1}, {q.k_scale});
    out[prefix + ".k_zero"] = zero_tensor(q.k_zero);
  }
  if (q.v_bits < 16) out[prefix + ".v_scale"] = Tensor::from({1}, {q.v_scale});
  if (q.p_bits < 16) out[prefix + ".p_scale"] = Tensor::from({1}, {q.p_scale});
}

}  // namespace vs::nn
