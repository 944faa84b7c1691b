#pragma once
#include <string>

#include "core/tensor.h"
#include "kernels/quantize_act.h"
#include "nn/params.h"

namespace vs::nn {

struct LayerNorm {
  Tensor weight, bias;  // [C]
  float eps = 1e-6f;

  static LayerNorm load(ParamReader& p, const std::string& prefix, int64_t C, float eps);
  void forward(const float* x, float* y, int64_t rows) const;  // x may equal y
  // The normalised rows written as codes (kernels/elementwise.h layernorm_to_codes).
  void forward_codes(const float* x, const kernels::RowCodes& out, int64_t rows) const;
  void save(const std::string& prefix, StateDict& out) const;
  int64_t width() const { return weight.numel(); }
};

}  // namespace vs::nn
