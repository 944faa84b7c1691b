// --rotate: QuaRot-style random rotations of the Linear inputs that are quantised per token
// (kernels/rotation.h has the rotation and why). For each such layer: W -> W R, its GPTQ Gram
// G -> R^T G R (the Gram of the rotated inputs), and the QuantLinear rotates each input row at
// run time. The float function is unchanged up to rounding (R is orthogonal).
#pragma once
#include <Eigen/Dense>
#include <cstdint>
#include <string>

#include "core/tensor.h"
#include "kernels/rotation.h"

namespace vs::quant {

// R for d input channels: d = r * p with p the largest power of two dividing d; random signs and
// a random orthogonal r x r mix (QR of a Gaussian matrix), from `seed`.
kernels::Rotation random_rotation(int64_t d, uint64_t seed);

// A seed of its own for each layer name (FNV-1a), so layers do not share one rotation.
uint64_t rotation_seed(const std::string& layer_name, uint64_t seed = 0);

// W R for weights w [out, in] (each row rotated as an input row would be).
Tensor rotate_weight(const Tensor& w, const kernels::Rotation& rot);

// R as a dense matrix (d x d), row i = e_i R.
Eigen::MatrixXd rotation_matrix(const kernels::Rotation& rot);

}  // namespace vs::quant
