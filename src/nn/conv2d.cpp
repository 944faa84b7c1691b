#include "nn/conv2d.h"

#include "core/error.h"

namespace vs::nn {

Conv2d Conv2d::load(ParamReader& p, const std::string& prefix, const kernels::ConvGeometry& g, bool bias) {
  check(g.groups > 0 && g.in_ch % g.groups == 0 && g.out_ch % g.groups == 0,
        p.source() + ": " + prefix + ": channels not divisible by groups");
  Conv2d c;
  c.geom = g;
  c.weight = p.get(prefix + ".weight", {g.out_ch, g.in_ch / g.groups, g.kernel, g.kernel});
  if (bias) c.bias = p.get(prefix + ".bias", {g.out_ch});
  return c;
}

Tensor Conv2d::forward(const Tensor& x, kernels::Epilogue ep) const {
  check(x.ndim() == 4 && x.dim(3) == geom.in_ch, "Conv2d: input " + shape_str(x.shape()) +
                                                     " is not [N, H, W, " + std::to_string(geom.in_ch) + "]");
  const int64_t N = x.dim(0), H = x.dim(1), W = x.dim(2);
  Tensor y = Tensor::empty({N, geom.out_size(H), geom.out_size(W), geom.out_ch});
  kernels::conv2d_nhwc(x.f32(), weight.f32(), bias.defined() ? bias.f32() : nullptr, y.f32(), N, H, W,
                       geom, ep, *packed);
  return y;
}

void Conv2d::save(const std::string& prefix, StateDict& out) const {
  out[prefix + ".weight"] = weight;
  if (bias.defined()) out[prefix + ".bias"] = bias;
}

}  // namespace vs::nn
