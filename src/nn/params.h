// Pulls named parameters out of a checkpoint with shape checks, remembering which were used so
// that a checkpoint with tensors the model does not know is rejected instead of half-loaded.
#pragma once
#include <map>
#include <set>
#include <string>

#include "io/state_dict.h"

namespace vs::nn {

// How a Linear is stored: dense fp32 (wbits 0), or quantised (QuantLinear) at these bit widths;
// rank > 0: low-rank (LowRankLinear), its factors listed under "PREFIX.down" / "PREFIX.up".
// A compressed model's config.json lists one per layer; absent layers are dense.
struct LinearSpec {
  int wbits = 0;
  int abits = 8;
  bool dynamic = false;
  int rank = 0;
  int twin_m = 0;  // > 0: twin-uniform input with scale ratio 2^twin_m (kernels/twin_quant.h)
};

// How an attention module's operands are quantised (bits 16 = float); from config.json's
// "quantization" section, like LinearSpec.
struct AttnSpec {
  int q_bits = 16, k_bits = 16, v_bits = 16, p_bits = 16;
  int p_tau = 0;  // probabilities: 0 uniform, 1/2/4 log2 with base 2^(1/p_tau)
};

class ParamReader {
 public:
  ParamReader(const StateDict& sd, std::string source) : sd_(sd), source_(std::move(source)) {}
  bool has(const std::string& name) const { return sd_.count(name) != 0; }
  // Throws "SOURCE: missing tensor NAME" / "SOURCE: tensor NAME has shape [..], expected [..]".
  Tensor get(const std::string& name, const Shape& expected);
  // Shape-free read (the caller validates); still marks the tensor as used.
  Tensor get_any(const std::string& name);
  // Throws "SOURCE: unexpected tensor NAME (and K more)" if any tensor was not read.
  void check_all_used() const;
  const std::string& source() const { return source_; }

  std::map<std::string, LinearSpec> linear_specs;  // by prefix, e.g. "blocks.0.attn.qkv"
  std::map<std::string, AttnSpec> attn_specs;      // by prefix, e.g. "blocks.0.attn"

 private:
  const StateDict& sd_;
  std::string source_;
  std::set<std::string> used_;
};

}  // namespace vs::nn
