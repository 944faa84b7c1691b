// LowRankLinear: W [out, in] ~= A [out, r] . B [r, in], run as two GEMMs through an [M, r]
// scratch buffer: x -> down (B, no bias) -> up (A, with the layer's bias and epilogue). The
// factors are Linears themselves, so each can be dense or quantised (`vitshrink quantize` on a
// low-rank model quantises both through ViT::linears(), which lists "X.down" and "X.up").
#pragma once
#include <memory>
#include <string>

#include "nn/linear.h"
#include "nn/params.h"

namespace vs::nn {

class LowRankLinear final : public Linear {
 public:
  LowRankLinear(std::unique_ptr<Linear> down, std::unique_ptr<Linear> up);
  using Linear::forward;
  void forward(const float* x, float* y, int64_t M, Epilogue ep) const override;
  int64_t in_features() const override { return down->in_features(); }
  int64_t out_features() const override { return up->out_features(); }
  std::string kind() const override { return "lowrank"; }
  int64_t num_params() const override { return down->num_params() + up->num_params(); }
  int64_t bytes() const override { return down->bytes() + up->bytes(); }
  int64_t macs_per_row() const override { return down->macs_per_row() + up->macs_per_row(); }
  // PREFIX.down.* and PREFIX.up.*, each written by the factor's own save().
  void save(const std::string& prefix, StateDict& out) const override;

  int64_t rank() const { return down->out_features(); }
  // Public so that compression stages can swap a factor (e.g. quantise it) in place.
  std::unique_ptr<Linear> down, up;
};

// Reads any Linear as its LinearSpec says: low-rank when the spec has a rank (each factor then
// read by load_linear, so a factor may itself be quantised under "PREFIX.down" / "PREFIX.up"),
// otherwise load_linear (dense or quantised).
std::unique_ptr<Linear> load_layer(ParamReader& p, const std::string& prefix, int64_t out, int64_t in,
                                   bool bias);

}  // namespace vs::nn
