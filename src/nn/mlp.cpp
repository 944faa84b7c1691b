#include "nn/mlp.h"

#include "core/error.h"

namespace vs::nn {

Mlp Mlp::load(ParamReader& p, const std::string& prefix, int64_t C) {
  Tensor w1 = p.get_any(prefix + ".fc1.weight");
  check(w1.ndim() == 2 && w1.dim(1) == C, p.source() + ": tensor '" + prefix + ".fc1.weight' has shape " +
                                              shape_str(w1.shape()) + ", expected [hidden, " +
                                              std::to_string(C) + "]");
  int64_t hidden = w1.dim(0);
  Mlp m;
  m.fc1 = std::make_unique<DenseLinear>(w1, p.get(prefix + ".fc1.bias", {hidden}));
  m.fc2 = std::make_unique<DenseLinear>(p.get(prefix + ".fc2.weight", {C, hidden}),
                                        p.get(prefix + ".fc2.bias", {C}));
  return m;
}

void Mlp::forward(const float* x, float* y, int64_t rows) const {
  Tensor h({rows, fc1->out_features()});
  fc1->forward(x, h.f32(), rows, Epilogue::gelu);
  fc2->forward(h.f32(), y, rows);
}

void Mlp::save(const std::string& prefix, StateDict& out) const {
  fc1->save(prefix + ".fc1", out);
  fc2->save(prefix + ".fc2", out);
}

}  // namespace vs::nn
