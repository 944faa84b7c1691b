// timm's Mlp: fc1 -> GELU (fused into fc1's GEMM) -> fc2.
#pragma once
#include <memory>
#include <string>

#include "nn/linear.h"
#include "nn/params.h"
#include "nn/quant_linear.h"

namespace vs::nn {

struct Mlp {
  std::unique_ptr<Linear> fc1, fc2;

  static Mlp load(ParamReader& p, const std::string& prefix, int64_t C);  // hidden from fc1
  void forward(const float* x, float* y, int64_t rows) const;
  // The same from fc1's input codes (fc1 a QuantLinear taking codes: taking_codes()); with `add`,
  // y += the output (the block's residual, fused into fc2's dequantisation when fc2 is quantised).
  void forward(const QuantLinear::InputCodes& x, float* y, int64_t rows, bool add) const;
  void save(const std::string& prefix, StateDict& out) const;
};

}  // namespace vs::nn
