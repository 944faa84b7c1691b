#include "train/optim.h"

#include <cmath>
#include <numbers>

#include "core/error.h"

namespace vs::train {

AdamW::AdamW(std::vector<Param*> params, AdamWSettings s) : params_(std::move(params)), s_(s) {
  for (Param* p : params_) {
    m_.push_back(Tensor::zeros(p->value.shape()));
    v_.push_back(Tensor::zeros(p->value.shape()));
  }
}

void AdamW::step(double lr) {
  ++t_;
  const double bc1 = 1.0 - std::pow(s_.beta1, double(t_)), bc2 = 1.0 - std::pow(s_.beta2, double(t_));
  const float b1 = float(s_.beta1), b2 = float(s_.beta2), eps = float(s_.eps);
  const float step = float(lr / bc1), inv_bc2 = float(1.0 / bc2);
  for (size_t i = 0; i < params_.size(); ++i) {
    Param& p = *params_[i];
    float* w = p.value.f32();
    const float* g = p.grad.f32();
    float* m = m_[i].f32();
    float* v = v_[i].f32();
    const float decay = p.decay ? float(1.0 - lr * s_.weight_decay) : 1.f;
    const int64_t n = p.value.numel();
#pragma omp parallel for simd schedule(static)
    for (int64_t k = 0; k < n; ++k) {
      m[k] = b1 * m[k] + (1.f - b1) * g[k];
      v[k] = b2 * v[k] + (1.f - b2) * g[k] * g[k];
      w[k] = w[k] * decay - step * m[k] / (std::sqrt(v[k] * inv_bc2) + eps);
    }
  }
}

void AdamW::save(StateDict& out) const {
  for (size_t i = 0; i < params_.size(); ++i) {
    out["adam.m." + params_[i]->name] = m_[i];
    out["adam.v." + params_[i]->name] = v_[i];
  }
  Tensor t({1}, DType::i64);
  t.data<int64_t>()[0] = t_;
  out["adam.t"] = t;
}

void AdamW::load(const StateDict& in, const std::string& source) {
  auto get = [&](const std::string& name, const Shape& shape) {
    auto it = in.find(name);
    check(it != in.end(), source + ": missing tensor '" + name + "'");
    check(it->second.shape() == shape && it->second.dtype() == DType::f32,
          source + ": tensor '" + name + "' has the wrong shape or type");
    return it->second.clone();
  };
  for (size_t i = 0; i < params_.size(); ++i) {
    m_[i] = get("adam.m." + params_[i]->name, params_[i]->value.shape());
    v_[i] = get("adam.v." + params_[i]->name, params_[i]->value.shape());
  }
  auto it = in.find("adam.t");
  check(it != in.end() && it->second.dtype() == DType::i64 && it->second.numel() == 1,
        source + ": missing or malformed 'adam.t'");
  t_ = it->second.data<int64_t>()[0];
}

double cosine_lr(double base, int64_t step, int64_t total, int64_t warmup, double min_ratio) {
  if (step < warmup) return base * double(step + 1) / double(warmup);
  const double span = double(std::max<int64_t>(1, total - warmup));
  const double progress = std::min(1.0, double(step - warmup) / span);
  return base * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress)));
}

double clip_grad_norm(const std::vector<Param*>& params, double max_norm) {
  double sq = 0.0;
  for (Param* p : params) {
    const float* g = p->grad.f32();
    for (int64_t k = 0; k < p->grad.numel(); ++k) sq += double(g[k]) * g[k];
  }
  const double norm = std::sqrt(sq);
  if (max_norm > 0 && norm > max_norm) {
    const float f = float(max_norm / (norm + 1e-12));
    for (Param* p : params)
      for (int64_t k = 0; k < p->grad.numel(); ++k) p->grad.f32()[k] *= f;
  }
  return norm;
}

}  // namespace vs::train
