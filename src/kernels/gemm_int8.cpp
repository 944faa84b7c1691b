#include "kernels/gemm_int8.h"

#include <cmath>
#include <dnnl.hpp>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "core/tensor.h"
#include "kernels/dnnl_engine.h"
#include "kernels/elementwise.h"

namespace vs::kernels {
namespace {

using dt = dnnl::memory::data_type;

struct Prim {
  dnnl::matmul prim;
  dnnl::memory::desc src, wei, bias, dst;
};

// static_scales: per-N output scales and a common source zero point given at run time (the
// statically quantised case); otherwise a plain s32 result.
Prim make(int64_t M, int64_t N, int64_t K, bool has_bias, Epilogue ep, bool static_scales) {
  Prim p;
  p.src = dnnl::memory::desc({M, K}, dt::u8, {K, 1});
  p.wei = dnnl::memory::desc({K, N}, dt::s8, {1, K});
  p.bias = has_bias ? dnnl::memory::desc({1, N}, dt::f32, {N, 1}) : dnnl::memory::desc();
  p.dst = dnnl::memory::desc({M, N}, static_scales ? dt::f32 : dt::s32, {N, 1});
  dnnl::primitive_attr attr;
  if (static_scales) {
    attr.set_output_scales(1 << 1, {DNNL_RUNTIME_F32_VAL});
    attr.set_zero_points(DNNL_ARG_SRC, 0, {DNNL_RUNTIME_S32_VAL});
  }
  if (ep == Epilogue::gelu) {
    dnnl::post_ops po;
    po.append_eltwise(1.f, dnnl::algorithm::eltwise_gelu_erf, 0.f, 0.f);
    attr.set_post_ops(po);
  }
  dnnl::matmul::desc d(p.src, p.wei, p.bias, p.dst);
  p.prim = dnnl::matmul(dnnl::matmul::primitive_desc(d, attr, dnnl_engine()));
  return p;
}

Prim& cached(int64_t M, int64_t N, int64_t K, bool has_bias, Epilogue ep, bool static_scales) {
  using Key = std::tuple<int64_t, int64_t, int64_t, bool, Epilogue, bool>;
  static std::map<Key, Prim> cache;
  static std::mutex mu;
  return cached_primitive(cache, mu, Key{M, N, K, has_bias, ep, static_scales},
                          [&] { return make(M, N, K, has_bias, ep, static_scales); });
}

}  // namespace

bool cpu_has_vnni() {
  static const bool vnni = __builtin_cpu_supports("avx512vnni") || __builtin_cpu_supports("avxvnni");
  return vnni;
}

int int8_exact_weight_bits(int abits) { return cpu_has_vnni() || abits <= 7 ? 8 : 7; }

void linear_u8s8(const uint8_t* x, int32_t zero_x, float scale_x, const int8_t* w,
                 const float* scale_w, const float* bias, float* y, int64_t M, int64_t N,
                 int64_t K, Epilogue ep) {
  Prim& p = cached(M, N, K, bias != nullptr, ep, true);
  // oneDNN 2.x int8 matmul computes dst = scale * (acc + bias): hand it bias / scale.
  std::vector<float> scales(static_cast<size_t>(N)), scaled_bias(bias ? size_t(N) : 0);
  for (int64_t n = 0; n < N; ++n) {
    scales[size_t(n)] = scale_x * scale_w[n];
    if (bias) scaled_bias[size_t(n)] = bias[n] / scales[size_t(n)];
  }
  auto& eng = dnnl_engine();
  dnnl::memory sm({{N}, dt::f32, {1}}, eng, scales.data()), zm({{1}, dt::s32, {1}}, eng, &zero_x);
  std::unordered_map<int, dnnl::memory> args{
      {DNNL_ARG_SRC, dnnl::memory(p.src, eng, const_cast<uint8_t*>(x))},
      {DNNL_ARG_WEIGHTS, dnnl::memory(p.wei, eng, const_cast<int8_t*>(w))},
      {DNNL_ARG_DST, dnnl::memory(p.dst, eng, y)},
      {DNNL_ARG_ATTR_OUTPUT_SCALES, sm},
      {DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC, zm}};
  if (bias) args[DNNL_ARG_BIAS] = dnnl::memory(p.bias, eng, scaled_bias.data());
  p.prim.execute(dnnl_stream(), args);
  dnnl_stream().wait();
}

void linear_u8s8_per_row(const uint8_t* x, const int32_t* zero_x, const float* scale_x,
                         const int8_t* w, const float* scale_w, const int32_t* w_row_sums,
                         const float* bias, float* y, int64_t M, int64_t N, int64_t K,
                         Epilogue ep) {
  Prim& p = cached(M, N, K, false, Epilogue::none, false);
  Tensor acc = Tensor::empty({M, N}, DType::i32);
  auto& eng = dnnl_engine();
  p.prim.execute(dnnl_stream(), {{DNNL_ARG_SRC, dnnl::memory(p.src, eng, const_cast<uint8_t*>(x))},
                                 {DNNL_ARG_WEIGHTS, dnnl::memory(p.wei, eng, const_cast<int8_t*>(w))},
                                 {DNNL_ARG_DST, dnnl::memory(p.dst, eng, acc.raw())}});
  dnnl_stream().wait();
  const int32_t* a = acc.data<int32_t>();
#pragma omp parallel for schedule(static)
  for (int64_t m = 0; m < M; ++m) {
    const float sx = scale_x[m];
    const int32_t zx = zero_x[m];
    float* yr = y + m * N;
#pragma omp simd
    for (int64_t n = 0; n < N; ++n)
      yr[n] = sx * scale_w[n] * float(a[m * N + n] - zx * w_row_sums[n]) + (bias ? bias[n] : 0.f);
  }
  if (ep == Epilogue::gelu) gelu(y, M * N);
}

}  // namespace vs::kernels
