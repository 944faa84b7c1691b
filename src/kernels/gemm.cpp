#include "kernels/gemm.h"

#include <dnnl.hpp>
#include <tuple>

#include "core/error.h"
#include "kernels/dnnl_engine.h"
#include "kernels/weight_cache_impl.h"

namespace vs::kernels {
namespace {

using dt = dnnl::memory::data_type;

struct LinearPrim {
  dnnl::matmul prim;
  dnnl::memory::desc src, wei, bias, dst;  // wei: the primitive's own layout when packed
};

// Below this many rows the plain transposed layout is as fast or faster (measured, ViT shapes).
constexpr int64_t kPackRows = 1024;

LinearPrim make_linear(int64_t M, int64_t N, int64_t K, bool has_bias, Epilogue ep, bool pack) {
  LinearPrim p;
  p.src = dnnl::memory::desc({M, K}, dt::f32, {K, 1});
  p.wei = pack ? dnnl::memory::desc({K, N}, dt::f32, dnnl::memory::format_tag::any)
               : dnnl::memory::desc({K, N}, dt::f32, {1, K});  // [N,K] row-major seen as W^T
  p.bias = has_bias ? dnnl::memory::desc({1, N}, dt::f32, {N, 1}) : dnnl::memory::desc();
  p.dst = dnnl::memory::desc({M, N}, dt::f32, {N, 1});
  dnnl::primitive_attr attr;
  if (ep == Epilogue::gelu) {
    dnnl::post_ops po;
    po.append_eltwise(1.f, dnnl::algorithm::eltwise_gelu_erf, 0.f, 0.f);
    attr.set_post_ops(po);
  }
  dnnl::matmul::desc d(p.src, p.wei, p.bias, p.dst);
  dnnl::matmul::primitive_desc pd(d, attr, dnnl_engine());
  p.wei = pd.weights_desc();
  p.prim = dnnl::matmul(pd);
  return p;
}

}  // namespace

WeightCache::WeightCache() : impl(std::make_unique<Impl>()) {}
WeightCache::~WeightCache() = default;

void linear_f32(const float* x, const float* w, const float* bias, float* y, int64_t M,
                int64_t N, int64_t K, Epilogue ep, WeightCache* wcache) {
  using Key = std::tuple<int64_t, int64_t, int64_t, bool, Epilogue, bool>;
  static std::map<Key, LinearPrim> cache;
  static std::mutex mu;
  const bool pack = wcache != nullptr && M >= kPackRows;
  Key key{M, N, K, bias != nullptr, ep, pack};
  LinearPrim& p = cached_primitive(cache, mu, key, [&] { return make_linear(M, N, K, bias != nullptr, ep, pack); });
  auto& eng = dnnl_engine();
  std::unordered_map<int, dnnl::memory> args{
      {DNNL_ARG_SRC, dnnl::memory(p.src, eng, const_cast<float*>(x))},
      {DNNL_ARG_WEIGHTS, pack ? wcache->impl->get(p.wei, dnnl::memory::desc({K, N}, dt::f32, {1, K}), w)
                              : dnnl::memory(p.wei, eng, const_cast<float*>(w))},
      {DNNL_ARG_DST, dnnl::memory(p.dst, eng, y)}};
  if (bias) args[DNNL_ARG_BIAS] = dnnl::memory(p.bias, eng, const_cast<float*>(bias));
  p.prim.execute(dnnl_stream(), args);
  dnnl_stream().wait();
}

void matmul_strided(const View& a, const View& b, float* c, const std::vector<int64_t>& c_dims,
                    const std::vector<int64_t>& c_strides) {
  using Key = std::vector<int64_t>;
  static std::map<Key, dnnl::matmul> cache;
  static std::mutex mu;
  Key key;
  for (auto* v : {&a.dims, &a.strides, &b.dims, &b.strides, &c_dims, &c_strides}) {
    key.push_back(int64_t(v->size()));
    key.insert(key.end(), v->begin(), v->end());
  }
  dnnl::memory::desc ad(a.dims, dt::f32, a.strides), bd(b.dims, dt::f32, b.strides),
      cd(c_dims, dt::f32, c_strides);
  dnnl::matmul& prim = cached_primitive(cache, mu, key, [&] {
    return dnnl::matmul(dnnl::matmul::primitive_desc(dnnl::matmul::desc(ad, bd, cd), dnnl_engine()));
  });
  auto& eng = dnnl_engine();
  prim.execute(dnnl_stream(), {{DNNL_ARG_SRC, dnnl::memory(ad, eng, const_cast<float*>(a.data))},
                               {DNNL_ARG_WEIGHTS, dnnl::memory(bd, eng, const_cast<float*>(b.data))},
                               {DNNL_ARG_DST, dnnl::memory(cd, eng, c)}});
  dnnl_stream().wait();
}

}  // namespace vs::kernels
