// GPTQ (Frantar et al., arXiv 2210.17323): weight rounding that compensates each column's
// quantisation error on the columns not yet quantised, using the layer's calibration inputs.
//
// For a layer y = W x with input Gram H = sum over calibration rows of x x^T, the columns of W
// are quantised one at a time (in order of decreasing H diagonal, "act order"); the error e of
// column i is spread over the remaining columns j through the Cholesky factor U of H^-1
// (W[:, j] -= e / U[i, i] * U[i, j]), which is the least-squares optimal update of the
// remaining weights for the output error ||(W - Q) X^T||. H is damped by damping * mean(diag H).
// The per-channel scales are fixed before (the weight observer's): GPTQ only decides the codes.
#pragma once
#include <Eigen/Dense>
#include <cstdint>

#include "core/tensor.h"

namespace vs::quant {

struct GptqSettings {
  double damping = 0.01;  // relative to mean(diag H)
  bool act_order = true;  // columns in order of decreasing H diagonal
};

struct GptqResult {
  Tensor weight;              // f32 [out, in]: codes * scale (exact codes for QuantLinear::from_dense)
  double error_rtn = 0;       // tr((W - Q) H (W - Q)^T) with round-to-nearest codes
  double error_gptq = 0;      // the same with GPTQ's codes
};

// w: f32 [out, in]; scale: [out] (symmetric, codes in [-(2^(bits-1) - 1), 2^(bits-1) - 1]);
// gram: [in, in], sum of x x^T over the calibration inputs.
GptqResult gptq_quantize(const Tensor& w, const float* scale, int bits, const Eigen::MatrixXd& gram,
                         const GptqSettings& s = {});

}  // namespace vs::quant
