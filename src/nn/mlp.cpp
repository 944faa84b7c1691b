#include "nn/mlp.h"

#include "core/error.h"

namespace vs::nn {

Mlp Mlp::load(ParamReader& p, const std::string& prefix, int64_t C) {
  // The hidden width comes from the checkpoint (pruned models shrink it): fc1's bias length.
  check(p.has(prefix + ".fc1.bias"), p.source() + ": missing tensor '" + prefix + ".fc1.bias'");
  Tensor b1 = p.get_any(prefix + ".fc1.bias");
  check(b1.ndim() == 1, p.source() + ": tensor '" + prefix + ".fc1.bias' must be 1-d");
  const int64_t hidden = b1.dim(0);
  Mlp m;
  m.fc1 = load_linear(p, prefix + ".fc1", hidden, C, true);
  m.fc2 = load_linear(p, prefix + ".fc2", C, hidden, true);
  return m;
}

void Mlp::forward(const float* x, float* y, int64_t rows) const {
  Tensor h = Tensor::empty({rows, fc1->out_features()});
  fc1->forward(x, h.f32(), rows, Epilogue::gelu);
  fc2->forward(h.f32(), y, rows);
}

void Mlp::save(const std::string& prefix, StateDict& out) const {
  fc1->save(prefix + ".fc1", out);
  fc2->save(prefix + ".fc2", out);
}

}  // namespace vs::nn
