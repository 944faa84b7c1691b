// Conv2d on channels-last activations ([N, H, W, C], so a 1x1 convolution is a plain Linear on
// rows and is kept as one). Weights in PyTorch's layout [OC, IC/groups, K, K].
#pragma once
#include <memory>
#include <string>

#include "core/tensor.h"
#include "kernels/conv.h"
#include "nn/params.h"

namespace vs::nn {

struct Conv2d {
  Tensor weight, bias;  // bias may be undefined
  kernels::ConvGeometry geom;
  std::shared_ptr<kernels::WeightCache> packed = std::make_shared<kernels::WeightCache>();

  static Conv2d load(ParamReader& p, const std::string& prefix, const kernels::ConvGeometry& g, bool bias);
  // x: [N, H, W, in_ch] -> [N, OH, OW, out_ch]
  Tensor forward(const Tensor& x, kernels::Epilogue ep = kernels::Epilogue::none) const;
  void save(const std::string& prefix, StateDict& out) const;
  int64_t num_params() const { return weight.numel() + (bias.defined() ? bias.numel() : 0); }
};

}  // namespace vs::nn
