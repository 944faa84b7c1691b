#include "train/layers.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "kernels/elementwise.h"
#include "kernels/fastmath.h"
#include "kernels/gemm.h"
#include "kernels/quantize_act.h"
#include "nn/lowrank_linear.h"
#include "train/learned_quant.h"
#include "train/ops.h"

namespace vs::train {

Param make_param(std::string name, const Tensor& value, bool decay) {
  Param p{std::move(name), value.clone(), Tensor::zeros(value.shape()), decay};
  return p;
}

// ---- Linear ---------------------------------------------------------------------------------

TrainLinear::TrainLinear(const nn::Linear& layer, const std::string& name) {
  if (auto* lr = dynamic_cast<const nn::LowRankLinear*>(&layer)) {
    auto down = std::make_unique<TrainLinear>(*lr->down, name + ".down");
    *this = TrainLinear(*lr->up, name + ".up");
    down_ = std::move(down);
    return;
  }
  if (auto* d = dynamic_cast<const nn::DenseLinear*>(&layer)) {
    w_ = make_param(name + ".weight", d->weight(), true);
    if (d->bias().defined()) b_ = make_param(name + ".bias", d->bias(), false);
    return;
  }
  auto* q = dynamic_cast<const nn::QuantLinear*>(&layer);
  check(q != nullptr, name + ": layers of kind '" + layer.kind() + "' cannot be trained yet");
  check(q->act().twin_m == 0, name + ": twin-uniform (OPT-m) inputs cannot be trained yet");
  check(q->input_rotation() == nullptr, name + ": layers with rotated inputs (--rotate) cannot be trained yet");
  // The scales and bias are not public: read them the way the layer saves itself.
  StateDict sd;
  q->save("l", sd);
  quant_ = true;
  wbits_ = q->wbits();
  act_ = q->act();
  wscale_ = sd.at("l.wscale").clone();
  w_ = make_param(name + ".weight", q->dequantized_weight(), true);
  if (sd.count("l.bias")) b_ = make_param(name + ".bias", sd.at("l.bias"), false);
}

Tensor TrainLinear::forward(const Tensor& x) { return forward_own(down_ ? down_->forward(x) : x); }

Tensor TrainLinear::backward(const Tensor& dy, bool need_dx) {
  if (!down_) return backward_own(dy, need_dx);
  return down_->backward(backward_own(dy, true), need_dx);
}

std::unique_ptr<nn::Linear> TrainLinear::to_linear() const {
  if (!down_) return own_linear();
  return std::make_unique<nn::LowRankLinear>(down_->to_linear(), own_linear());
}

Tensor TrainLinear::forward_own(const Tensor& x) {
  const int64_t K = w_.value.dim(1), M = x.numel() / K, N = out_features();
  const float* w = w_.value.f32();
  if (quant_) {
    // Weights: q = clamp(round(w / s), -lim, lim) exactly as QuantLinear::from_dense rounds.
    const int32_t lim = (1 << (wbits_ - 1)) - 1;
    wq_ = Tensor::empty({N, K});
    wmask_ = Tensor::empty({N, K});
    const bool ada = alpha_.value.defined();
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      const float s = wscale_.f32()[n], inv = 1.f / s;
      for (int64_t k = 0; k < K; ++k) {
        const float q = ada ? wfloor_.f32()[n * K + k] + rect_sigmoid(alpha_.value.f32()[n * K + k])
                            : std::nearbyint(w[n * K + k] * inv);
        const float c = std::clamp(q, float(-lim), float(lim));
        wq_.f32()[n * K + k] = c * s;
        wmask_.f32()[n * K + k] = q == c ? 1.f : 0.f;
      }
    }
    w = wq_.f32();
    // Inputs: the layer's own activation quantiser, simulated.
    Tensor xq = Tensor::empty({M, K});
    if (act_.dynamic) {  // per-token ranges cover every value: nothing is clipped
      Tensor codes = Tensor::empty({M, K}, DType::u8);
      std::vector<float> sc(static_cast<size_t>(M));
      std::vector<int32_t> zp(static_cast<size_t>(M));
      kernels::quantize_u8_per_row(x.f32(), codes.data<uint8_t>(), M, K, act_.bits, sc.data(), zp.data());
      for (int64_t m = 0; m < M; ++m)
        for (int64_t k = 0; k < K; ++k)
          xq.f32()[m * K + k] = float(int32_t(codes.data<uint8_t>()[m * K + k]) - zp[size_t(m)]) * sc[size_t(m)];
      xmask_ = Tensor();
    } else {
      xmask_ = Tensor::empty({M, K});
      const float scale = ascale_.value.defined() ? ascale_.value.f32()[0] : act_.scale;
      fake_quantize_u8(x.f32(), xq.f32(), xmask_.f32(), M * K, scale, act_.zero, act_.bits);
      if (ascale_.value.defined()) xraw_ = x;
    }
    x_ = xq;
  } else {
    x_ = x;
  }
  Tensor y = Tensor::empty({M, N});
  kernels::linear_f32(x_.f32(), w, b_.value.defined() ? b_.value.f32() : nullptr, y.f32(), M, N, K);
  return y;
}

Tensor TrainLinear::backward_own(const Tensor& dy, bool need_dx) {
  const int64_t M = dy.numel() / out_features(), N = out_features(), K = w_.value.dim(1);
  const bool lsq = xraw_.defined();
  Tensor dx = need_dx || lsq ? Tensor::empty({M, K}) : Tensor();
  linear_backward(x_.f32(), quant_ ? wq_.f32() : w_.value.f32(), dy.f32(), dx.defined() ? dx.f32() : nullptr,
                  w_.grad.f32(), b_.value.defined() ? b_.grad.f32() : nullptr, M, N, K);
  if (quant_) {
    for (int64_t i = 0; i < N * K; ++i) w_.grad.f32()[i] *= wmask_.f32()[i];
    if (alpha_.value.defined())  // d wq / d alpha = s * h'(alpha) where not clamped
#pragma omp parallel for schedule(static)
      for (int64_t n = 0; n < N; ++n)
        for (int64_t k = 0; k < K; ++k)
          alpha_.grad.f32()[n * K + k] =
              w_.grad.f32()[n * K + k] * wscale_.f32()[n] * rect_sigmoid_grad(alpha_.value.f32()[n * K + k]);
    if (lsq)
      ascale_.grad.f32()[0] = float(lsq_scale_grad(xraw_.f32(), dx.f32(), M * K, ascale_.value.f32()[0], act_.zero, act_.bits));
    if (dx.defined() && xmask_.defined())
      for (int64_t i = 0; i < M * K; ++i) dx.f32()[i] *= xmask_.f32()[i];
  }
  x_ = wq_ = wmask_ = xmask_ = xraw_ = Tensor();
  return need_dx ? dx : Tensor();
}

void TrainLinear::learn_rounding(const Tensor& float_weight) {
  check(quant_ && !down_, w_.name + ": only quantised (not low-rank) layers have a rounding to learn");
  check(float_weight.shape() == w_.value.shape(), w_.name + ": float weights of the wrong shape for rounding");
  const int64_t N = out_features(), K = w_.value.dim(1);
  w_.value = float_weight.clone();
  wfloor_ = Tensor::empty({N, K});
  alpha_ = make_param(w_.name + ".adaround", Tensor::empty({N, K}), false);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      const float r = float_weight.f32()[n * K + k] / wscale_.f32()[n], f = std::floor(r);
      wfloor_.f32()[n * K + k] = f;
      alpha_.value.f32()[n * K + k] = rect_sigmoid_inverse(r - f);
    }
}

bool TrainLinear::learn_act_scale() {
  check(quant_ && !down_, w_.name + ": only quantised (not low-rank) layers have an input quantiser to learn");
  if (act_.dynamic) return false;
  ascale_ = make_param(w_.name + ".input_scale", Tensor::from({1}, {act_.scale}), false);
  return true;
}

void TrainLinear::learned(std::vector<Param*>& rounding, std::vector<Param*>& scales) {
  if (alpha_.value.defined()) rounding.push_back(&alpha_);
  if (ascale_.value.defined()) scales.push_back(&ascale_);
}

Tensor TrainLinear::codes() const {
  const int64_t N = out_features(), K = w_.value.dim(1);
  const int32_t lim = (1 << (wbits_ - 1)) - 1;
  Tensor c({N, K}, DType::i8);
  for (int64_t i = 0; i < N * K; ++i)
    c.data<int8_t>()[i] = int8_t(std::clamp(int32_t(wfloor_.f32()[i]) + (alpha_.value.f32()[i] >= 0.f ? 1 : 0), -lim, lim));
  return c;
}

std::unique_ptr<nn::Linear> TrainLinear::own_linear() const {
  nn::DenseLinear dense(w_.value.clone(), b_.value.defined() ? b_.value.clone() : Tensor());
  if (!quant_) return std::make_unique<nn::DenseLinear>(std::move(dense));
  nn::ActQuant act = act_;
  if (ascale_.value.defined()) act.scale = ascale_.value.f32()[0];
  if (alpha_.value.defined())  // hard AdaRound decision: up where h(alpha) >= 0.5
    return std::make_unique<nn::QuantLinear>(codes(), wscale_.clone(), dense.bias(), wbits_, act);
  return nn::QuantLinear::from_dense(dense, wscale_, wbits_, act);
}

void TrainLinear::collect(std::vector<Param*>& out) {
  if (down_) down_->collect(out);
  out.push_back(&w_);
  if (b_.value.defined()) out.push_back(&b_);
}

// ---- LayerNorm ------------------------------------------------------------------------------

TrainLayerNorm::TrainLayerNorm(const nn::LayerNorm& ln, const std::string& name)
    : w(make_param(name + ".weight", ln.weight, false)), b(make_param(name + ".bias", ln.bias, false)),
      eps(ln.eps) {}

Tensor TrainLayerNorm::forward(const Tensor& x) {
  x_ = x;
  const int64_t C = w.value.numel();
  Tensor y = Tensor::empty(x.shape());
  kernels::layernorm(x.f32(), w.value.f32(), b.value.f32(), y.f32(), x.numel() / C, C, eps);
  return y;
}

Tensor TrainLayerNorm::backward(const Tensor& dy) {
  const int64_t C = w.value.numel();
  Tensor dx = Tensor::empty(dy.shape());
  layernorm_backward(x_.f32(), w.value.f32(), dy.f32(), dx.f32(), w.grad.f32(), b.grad.f32(),
                     dy.numel() / C, C, eps);
  x_ = Tensor();
  return dx;
}

// ---- Block ----------------------------------------------------------------------------------

TrainBlock::TrainBlock(const nn::Block& blk, const std::string& p)
    : norm1(blk.norm1, p + ".norm1"), norm2(blk.norm2, p + ".norm2"),
      qkv(*blk.attn.qkv, p + ".attn.qkv"), proj(*blk.attn.proj, p + ".attn.proj"),
      fc1(*blk.mlp.fc1, p + ".mlp.fc1"), fc2(*blk.mlp.fc2, p + ".mlp.fc2"), heads(blk.attn.heads),
      scale(blk.attn.scale), aq(blk.attn.quant), prefix(p) {
  if (blk.ls1.defined()) ls1 = make_param(p + ".ls1.gamma", blk.ls1, false);
  if (blk.ls2.defined()) ls2 = make_param(p + ".ls2.gamma", blk.ls2, false);
}

// out = x + gamma * y (gamma optional)
static Tensor residual(const Tensor& x, const Tensor& y, const Param& gamma) {
  Tensor out = x.clone();
  const int64_t C = x.dim(-1), rows = x.numel() / C;
  if (!gamma.value.defined()) {
    kernels::add_inplace(out.f32(), y.f32(), out.numel());
    return out;
  }
  const float* g = gamma.value.f32();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < C; ++c) out.f32()[r * C + c] += g[c] * y.f32()[r * C + c];
  return out;
}

// Gradient into the branch of a residual: dy * gamma; sets gamma's gradient from the kept y.
static Tensor residual_branch_grad(const Tensor& dy, const Tensor& y, Param& gamma) {
  if (!gamma.value.defined()) return dy;
  const int64_t C = dy.dim(-1), rows = dy.numel() / C;
  Tensor prod = Tensor::empty(dy.shape()), dbranch = Tensor::empty(dy.shape());
  const float* g = gamma.value.f32();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < C; ++c) {
      prod.f32()[r * C + c] = dy.f32()[r * C + c] * y.f32()[r * C + c];
      dbranch.f32()[r * C + c] = dy.f32()[r * C + c] * g[c];
    }
  column_sums(prod.f32(), gamma.grad.f32(), rows, C);
  return dbranch;
}

// The attention operands in the fused qkv buffer [rows, W], fake-quantised as
// kernels::attention_quant does (q, k: with zero points; v: s8 symmetric; bits 16 = float);
// mask = 1 where a value was inside its range.
static Tensor fake_quant_qkv(const Tensor& qkv, const kernels::HeadLayout& heads,
                             const kernels::AttnQuant& aq, Tensor& mask) {
  const int64_t W = heads.qkv_width(), rows = qkv.numel() / W, qk = heads.qk_total(), vt = heads.v_total();
  Tensor out = qkv.clone();
  mask = Tensor::empty(qkv.shape());
  std::fill(mask.f32(), mask.f32() + mask.numel(), 1.f);
  auto fq = [&](int64_t off, int64_t cols, int bits, float s, int32_t zero, bool sym) {
    if (bits >= 16 || cols == 0) return;
    Tensor codes = Tensor::empty({rows, cols}, sym ? DType::i8 : DType::u8);
    if (sym)
      kernels::quantize_s8(qkv.f32() + off, codes.data<int8_t>(), rows, cols, W, s, bits);
    else
      kernels::quantize_u8(qkv.f32() + off, codes.data<uint8_t>(), rows, cols, W, s, zero, bits);
    const int32_t lim = sym ? (1 << (bits - 1)) - 1 : 0;
    const float lo = sym ? -float(lim) * s : float(-zero) * s,
                hi = sym ? float(lim) * s : float((1 << bits) - 1 - zero) * s;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        const int32_t q = sym ? int32_t(codes.data<int8_t>()[r * cols + c]) : int32_t(codes.data<uint8_t>()[r * cols + c]) - zero;
        const float x = qkv.f32()[r * W + off + c];
        out.f32()[r * W + off + c] = float(q) * s;
        mask.f32()[r * W + off + c] = x >= lo && x <= hi ? 1.f : 0.f;
      }
  };
  fq(0, qk, aq.q_bits, aq.q_scale, aq.q_zero, false);
  fq(qk, qk, aq.k_bits, aq.k_scale, aq.k_zero, false);  // k asymmetric like q (zero point)
  fq(2 * qk, vt, aq.v_bits, aq.v_scale, 0, true);
  return out;
}

// LSQ gradients of the learned q, k, v step sizes: raw = the qkv output before quantisation,
// dq = the gradient at the quantised values (before the straight-through mask).
static void qkv_scale_grads(const Tensor& raw, const Tensor& dq, const kernels::HeadLayout& heads,
                            const kernels::AttnQuant& aq, Param& qs, Param& ks, Param& vs) {
  const int64_t W = heads.qkv_width(), rows = raw.numel() / W, qk = heads.qk_total(), vt = heads.v_total();
  auto grad = [&](Param& p, int64_t off, int64_t cols, int bits, int32_t zero, bool sym) {
    if (!p.value.defined()) return;
    std::vector<float> x(size_t(rows * cols)), d(size_t(rows * cols));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        x[size_t(r * cols + c)] = raw.f32()[r * W + off + c];
        d[size_t(r * cols + c)] = dq.f32()[r * W + off + c];
      }
    const float s = p.value.f32()[0];
    p.grad.f32()[0] = float(sym ? lsq_scale_grad_sym(x.data(), d.data(), rows * cols, s, bits)
                                : lsq_scale_grad(x.data(), d.data(), rows * cols, s, zero, bits));
  };
  grad(qs, 0, qk, aq.q_bits, aq.q_zero, false);
  grad(ks, qk, qk, aq.k_bits, aq.k_zero, false);
  grad(vs, 2 * qk, vt, aq.v_bits, 0, true);
}

kernels::AttnQuant TrainBlock::attention_quant() const {
  kernels::AttnQuant a = aq;
  for (auto [p, dst] : {std::pair{&q_scale, &a.q_scale}, {&k_scale, &a.k_scale}, {&v_scale, &a.v_scale},
                        {&p_scale, &a.p_scale}})
    if (p->value.defined()) *dst = p->value.f32()[0];
  return a;
}

void TrainBlock::learn_scales() {
  for (TrainLinear* l : {&qkv, &proj, &fc1, &fc2})
    if (l->quantised()) l->learn_act_scale();
  const std::string p = prefix + ".attn";
  auto make = [&](Param& dst, bool on, const char* what, float v) {
    if (on) dst = make_param(p + "." + what, Tensor::from({1}, {v}), false);
  };
  make(q_scale, aq.q_bits < 16, "q_scale", aq.q_scale);
  make(k_scale, aq.k_bits < 16, "k_scale", aq.k_scale);
  make(v_scale, aq.v_bits < 16, "v_scale", aq.v_scale);
  make(p_scale, aq.p_bits < 16 && aq.p_tau == 0, "p_scale", aq.p_scale);
}

void TrainBlock::learned(std::vector<Param*>& rounding, std::vector<Param*>& scales) {
  for (TrainLinear* l : {&qkv, &proj, &fc1, &fc2}) l->learned(rounding, scales);
  for (Param* p : {&q_scale, &k_scale, &v_scale, &p_scale})
    if (p->value.defined()) scales.push_back(p);
}

Tensor TrainBlock::forward(const Tensor& x, int64_t b, int64_t n) {
  B = b;
  N = n;
  aq = attention_quant();
  qkv_out_ = qkv.forward(norm1.forward(x));
  if (q_scale.value.defined() || k_scale.value.defined() || v_scale.value.defined()) qkv_raw_ = qkv_out_;
  if (aq.any()) qkv_out_ = fake_quant_qkv(qkv_out_, heads, aq, qkv_mask_);
  const int64_t H = int64_t(heads.qk_dim.size());
  probs_ = Tensor::empty({B, H, N, N});
  const ProbQuant pq{aq.p_bits, aq.p_scale, aq.p_tau};
  if (pq.bits < 16) probs_q_ = Tensor::empty({B, H, N, N});
  Tensor ctx = Tensor::empty({B * N, heads.v_total()});
  attention_forward(qkv_out_.f32(), ctx.f32(), probs_.f32(), B, N, heads, scale, pq,
                    pq.bits < 16 ? probs_q_.f32() : nullptr);
  Tensor y1 = proj.forward(ctx);
  Tensor xm = residual(x, y1, ls1);
  pre_gelu_ = fc1.forward(norm2.forward(xm));
  Tensor act = Tensor::empty(pre_gelu_.shape());
  const float* pg = pre_gelu_.f32();
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < act.numel(); ++i) act.f32()[i] = kernels::gelu_erf(pg[i]);
  Tensor y2 = fc2.forward(act);
  if (ls1.value.defined()) y1_ = y1;
  if (ls2.value.defined()) y2_ = y2;
  return residual(xm, y2, ls2);
}

Tensor TrainBlock::backward(const Tensor& dy) {
  Tensor dact = fc2.backward(residual_branch_grad(dy, y2_, ls2), true);
  Tensor da = Tensor::empty(dact.shape());
  gelu_backward(pre_gelu_.f32(), dact.f32(), da.f32(), da.numel());
  Tensor dxm = norm2.backward(fc1.backward(da, true));
  kernels::add_inplace(dxm.f32(), dy.f32(), dxm.numel());
  Tensor dctx = proj.backward(residual_branch_grad(dxm, y1_, ls1), true);
  Tensor dqkv = Tensor::empty(qkv_out_.shape());
  const ProbQuant pq{aq.p_bits, aq.p_scale, aq.p_tau};
  double dps = 0;
  attention_backward(qkv_out_.f32(), probs_.f32(), dctx.f32(), dqkv.f32(), B, N, heads, scale, pq,
                     pq.bits < 16 ? probs_q_.f32() : nullptr, p_scale.value.defined() ? &dps : nullptr);
  if (p_scale.value.defined()) p_scale.grad.f32()[0] = float(dps);
  if (qkv_raw_.defined()) qkv_scale_grads(qkv_raw_, dqkv, heads, aq, q_scale, k_scale, v_scale);
  if (aq.any())
    for (int64_t i = 0; i < dqkv.numel(); ++i) dqkv.f32()[i] *= qkv_mask_.f32()[i];
  Tensor dx = norm1.backward(qkv.backward(dqkv, true));
  kernels::add_inplace(dx.f32(), dxm.f32(), dx.numel());
  qkv_out_ = qkv_mask_ = probs_ = probs_q_ = pre_gelu_ = y1_ = y2_ = qkv_raw_ = Tensor();
  return dx;
}

void TrainBlock::collect(std::vector<Param*>& out) {
  for (Param* p : {&norm1.w, &norm1.b}) out.push_back(p);
  qkv.collect(out);
  proj.collect(out);
  if (ls1.value.defined()) out.push_back(&ls1);
  for (Param* p : {&norm2.w, &norm2.b}) out.push_back(p);
  fc1.collect(out);
  fc2.collect(out);
  if (ls2.value.defined()) out.push_back(&ls2);
}

nn::Block TrainBlock::to_block() const {
  nn::Block b;
  b.norm1 = norm1.to_layernorm();
  b.norm2 = norm2.to_layernorm();
  b.attn.qkv = qkv.to_linear();
  b.attn.proj = proj.to_linear();
  b.attn.heads = heads;
  b.attn.scale = scale;
  b.attn.quant = attention_quant();
  b.mlp.fc1 = fc1.to_linear();
  b.mlp.fc2 = fc2.to_linear();
  if (ls1.value.defined()) b.ls1 = ls1.value.clone();
  if (ls2.value.defined()) b.ls2 = ls2.value.clone();
  return b;
}

}  // namespace vs::train
