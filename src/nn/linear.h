// Linear: the one polymorphic unit of vitshrink. Every compression method swaps a DenseLinear for
// another implementation (quantized, low-rank, pruned) behind this interface; models never care.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "core/tensor.h"
#include "io/state_dict.h"
#include "kernels/gemm.h"

namespace vs::nn {

using kernels::Epilogue;

class Linear {
 public:
  virtual ~Linear() = default;
  // y[M, out] = f(x[M, in]); the epilogue (e.g. GELU) is fused where the kernel allows.
  virtual void forward(const float* x, float* y, int64_t M, Epilogue ep = Epilogue::none) const = 0;
  virtual int64_t in_features() const = 0;
  virtual int64_t out_features() const = 0;
  virtual std::string kind() const = 0;               // "dense", "int8", "lowrank", ...
  virtual int64_t num_params() const = 0;             // stored parameters (weights + bias)
  virtual int64_t bytes() const = 0;                  // bytes of those parameters as stored
  virtual int64_t macs_per_row() const = 0;           // multiply-accumulates per input row
  // Writes its parameters under `prefix` ("blocks.0.attn.qkv") in timm spelling.
  virtual void save(const std::string& prefix, StateDict& out) const = 0;

  Tensor forward(const Tensor& x, Epilogue ep = Epilogue::none) const;  // x: [..., in]
};

class DenseLinear final : public Linear {
 public:
  DenseLinear(Tensor weight, Tensor bias);  // weight [out, in], bias [out] or undefined
  using Linear::forward;
  void forward(const float* x, float* y, int64_t M, Epilogue ep) const override;
  int64_t in_features() const override { return weight_.dim(1); }
  int64_t out_features() const override { return weight_.dim(0); }
  std::string kind() const override { return "dense"; }
  int64_t num_params() const override;
  int64_t bytes() const override { return num_params() * 4; }
  int64_t macs_per_row() const override { return weight_.numel(); }
  void save(const std::string& prefix, StateDict& out) const override;

  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }

 private:
  Tensor weight_, bias_;
  std::shared_ptr<kernels::WeightCache> packed_ = std::make_shared<kernels::WeightCache>();
};

class ParamReader;
// Reads the Linear stored under `prefix` as its LinearSpec says (dense unless listed), checking
// shapes [out, in]; the bias is read when present (required when `bias` is true).
std::unique_ptr<Linear> load_linear(ParamReader& p, const std::string& prefix, int64_t out,
                                    int64_t in, bool bias);

}  // namespace vs::nn
