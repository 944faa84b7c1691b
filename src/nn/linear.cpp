#include "nn/linear.h"

#include "core/error.h"

namespace vs::nn {

Tensor Linear::forward(const Tensor& x, Epilogue ep) const {
  check(x.dim(-1) == in_features(), "Linear: input width " + std::to_string(x.dim(-1)) +
                                        " != in_features " + std::to_string(in_features()));
  Shape s = x.shape();
  s.back() = out_features();
  Tensor y = Tensor::empty(s);
  forward(x.f32(), y.f32(), x.numel() / in_features(), ep);
  return y;
}

DenseLinear::DenseLinear(Tensor weight, Tensor bias) : weight_(std::move(weight)), bias_(std::move(bias)) {
  check(weight_.ndim() == 2, "DenseLinear: weight must be 2-d, got " + shape_str(weight_.shape()));
  check(!bias_.defined() || (bias_.ndim() == 1 && bias_.dim(0) == weight_.dim(0)),
        "DenseLinear: bias shape does not match weight");
}

void DenseLinear::forward(const float* x, float* y, int64_t M, Epilogue ep) const {
  kernels::linear_f32(x, weight_.f32(), bias_.defined() ? bias_.f32() : nullptr, y, M,
                      out_features(), in_features(), ep, packed_.get());
}

int64_t DenseLinear::num_params() const {
  return weight_.numel() + (bias_.defined() ? bias_.numel() : 0);
}

void DenseLinear::save(const std::string& prefix, StateDict& out) const {
  out[prefix + ".weight"] = weight_;
  if (bias_.defined()) out[prefix + ".bias"] = bias_;
}

}  // namespace vs::nn
