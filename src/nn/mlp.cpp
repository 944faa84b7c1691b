#include "nn/mlp.h"

#include "core/error.h"
#include "nn/lowrank_linear.h"

namespace vs::nn {

Mlp Mlp::load(ParamReader& p, const std::string& prefix, int64_t C) {
  // The hidden width comes from the checkpoint (pruned models shrink it): fc1's bias length
  // (on the "up" factor when fc1 is low-rank).
  std::string bias1 = prefix + (p.has(prefix + ".fc1.up.bias") ? ".fc1.up.bias" : ".fc1.bias");
  check(p.has(bias1), p.source() + ": missing tensor '" + prefix + ".fc1.bias'");
  Tensor b1 = p.get_any(bias1);
  check(b1.ndim() == 1, p.source() + ": tensor '" + bias1 + "' must be 1-d");
  const int64_t hidden = b1.dim(0);
  Mlp m;
  m.fc1 = load_layer(p, prefix + ".fc1", hidden, C, true);
  m.fc2 = load_layer(p, prefix + ".fc2", C, hidden, true);
  return m;
}

void Mlp::forward(const float* x, float* y, int64_t rows) const {
  if (auto* q1 = taking_codes(*fc1, rows); q1 && taking_codes(*fc2, rows)) {
    QuantLinear::InputCodes c = q1->input_codes(rows);
    q1->quantize_input(x, rows, c);
    forward(c, y, rows, false);
    return;
  }
  Tensor h = Tensor::empty({rows, fc1->out_features()});
  fc1->forward(x, h.f32(), rows, Epilogue::gelu);
  fc2->forward(h.f32(), y, rows);
}

void Mlp::forward(const QuantLinear::InputCodes& x, float* y, int64_t rows, bool add) const {
  auto& q1 = dynamic_cast<const QuantLinear&>(*fc1);
  if (auto* q2 = taking_codes(*fc2, rows)) {  // GELU's output goes straight to fc2's codes
    QuantLinear::InputCodes h = q2->input_codes(rows);
    q1.forward_codes(x, rows, Epilogue::gelu, *q2, h);
    q2->forward_codes(h, y, rows, Epilogue::none, add);
    return;
  }
  Tensor h = Tensor::empty({rows, fc1->out_features()});
  q1.forward_codes(x, h.f32(), rows, Epilogue::gelu);
  forward_into(*fc2, h.f32(), y, rows, add);
}

void Mlp::save(const std::string& prefix, StateDict& out) const {
  fc1->save(prefix + ".fc1", out);
  fc2->save(prefix + ".fc2", out);
}

}  // namespace vs::nn
