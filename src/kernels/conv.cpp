#include "kernels/conv.h"

#include <mutex>
#include <tuple>
#include <vector>

#include "kernels/dnnl_engine.h"
#include "kernels/weight_cache_impl.h"

namespace vs::kernels {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

namespace {

struct ConvPrim {
  dnnl::convolution_forward prim;
  dnnl::memory::desc src, wei_plain, wei, bias, dst;
};

dnnl::memory::dims weight_dims(const ConvGeometry& g) {
  if (g.groups == 1) return {g.out_ch, g.in_ch, g.kernel, g.kernel};
  return {g.groups, g.out_ch / g.groups, g.in_ch / g.groups, g.kernel, g.kernel};
}

ConvPrim make_conv(int64_t N, int64_t H, int64_t W, const ConvGeometry& g, bool has_bias, Epilogue ep) {
  ConvPrim p;
  const int64_t OH = g.out_size(H), OW = g.out_size(W);
  p.src = dnnl::memory::desc({N, g.in_ch, H, W}, dt::f32, tag::nhwc);
  p.dst = dnnl::memory::desc({N, g.out_ch, OH, OW}, dt::f32, tag::nhwc);
  p.wei_plain = dnnl::memory::desc(weight_dims(g), dt::f32, g.groups == 1 ? tag::oihw : tag::goihw);
  dnnl::memory::desc wei_any(weight_dims(g), dt::f32, tag::any);
  p.bias = has_bias ? dnnl::memory::desc({g.out_ch}, dt::f32, tag::x) : dnnl::memory::desc();
  dnnl::primitive_attr attr;
  if (ep == Epilogue::gelu) {
    dnnl::post_ops po;
    po.append_eltwise(1.f, dnnl::algorithm::eltwise_gelu_erf, 0.f, 0.f);
    attr.set_post_ops(po);
  }
  dnnl::convolution_forward::desc d(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
                                    p.src, wei_any, p.bias, p.dst, {g.stride, g.stride}, {g.pad, g.pad},
                                    {g.pad, g.pad});
  dnnl::convolution_forward::primitive_desc pd(d, attr, dnnl_engine());
  p.wei = pd.weights_desc();
  p.prim = dnnl::convolution_forward(pd);
  return p;
}

}  // namespace

void conv2d_nhwc(const float* x, const float* w, const float* bias, float* y, int64_t N,
                 int64_t H, int64_t W, const ConvGeometry& g, Epilogue ep, WeightCache& cache) {
  using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                         int64_t, bool, Epilogue>;
  static std::map<Key, ConvPrim> prims;
  static std::mutex mu;
  Key key{N, H, W, g.in_ch, g.out_ch, g.kernel, g.stride, g.pad, g.groups, bias != nullptr, ep};
  ConvPrim& p = cached_primitive(prims, mu, key, [&] { return make_conv(N, H, W, g, bias != nullptr, ep); });
  auto& eng = dnnl_engine();
  std::unordered_map<int, dnnl::memory> args{
      {DNNL_ARG_SRC, dnnl::memory(p.src, eng, const_cast<float*>(x))},
      {DNNL_ARG_WEIGHTS, cache.impl->get(p.wei, p.wei_plain, w)},
      {DNNL_ARG_DST, dnnl::memory(p.dst, eng, y)}};
  if (bias) args[DNNL_ARG_BIAS] = dnnl::memory(p.bias, eng, const_cast<float*>(bias));
  p.prim.execute(dnnl_stream(), args);
  dnnl_stream().wait();
}

}  // namespace vs::kernels
