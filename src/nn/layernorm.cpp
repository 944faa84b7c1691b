#include "nn/layernorm.h"

#include "kernels/elementwise.h"

namespace vs::nn {

LayerNorm LayerNorm::load(ParamReader& p, const std::string& prefix, int64_t C, float eps) {
  return {p.get(prefix + ".weight", {C}), p.get(prefix + ".bias", {C}), eps};
}

void LayerNorm::forward(const float* x, float* y, int64_t rows) const {
  kernels::layernorm(x, weight.f32(), bias.f32(), y, rows, width(), eps);
}

void LayerNorm::forward_codes(const float* x, const kernels::RowCodes& out, int64_t rows) const {
  kernels::layernorm_to_codes(x, weight.f32(), bias.f32(), rows, width(), eps, out);
}

void LayerNorm::save(const std::string& prefix, StateDict& out) const {
  out[prefix + ".weight"] = weight;
  out[prefix + ".bias"] = bias;
}

}  // namespace vs::nn
