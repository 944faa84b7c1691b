// 2-d convolution on channels-last (NHWC) float tensors through oneDNN. groups == channels is a
// depthwise convolution. Weights are given in PyTorch's layout [OC, IC/groups, KH, KW] and
// reordered once into the layout oneDNN prefers (kept in a WeightCache owned by the layer).
#pragma once
#include <cstdint>

#include "kernels/gemm.h"

namespace vs::kernels {

struct ConvGeometry {
  int64_t in_ch = 0, out_ch = 0, kernel = 1, stride = 1, pad = 0, groups = 1;
  int64_t out_size(int64_t in) const { return (in + 2 * pad - kernel) / stride + 1; }
};

// y[N, OH, OW, OC] = conv(x[N, H, W, IC], w) + bias (bias may be null), then the epilogue.
void conv2d_nhwc(const float* x, const float* w, const float* bias, float* y, int64_t N,
                 int64_t H, int64_t W, const ConvGeometry& g, Epilogue ep, WeightCache& cache);

}  // namespace vs::kernels
