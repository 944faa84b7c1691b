#include "kernels/gemm_int8.h"

#include <algorithm>
#include <cmath>
#include <dnnl.hpp>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "core/tensor.h"
#include "kernels/dnnl_engine.h"
#include "kernels/gemm.h"

namespace vs::kernels {
namespace {

using dt = dnnl::memory::data_type;

struct Prim {
  dnnl::matmul prim;
  dnnl::memory::desc src, wei, dst;
};

Prim make(const IntGemm& g, bool zero_point) {
  const int64_t B = g.batch, M = g.M, N = g.N, K = g.K;
  Prim p;
  p.src = dnnl::memory::desc({B, M, K}, dt::u8, {M * K, K, 1});
  p.wei = g.b_nk ? dnnl::memory::desc({B, K, N}, dt::s8, {N * K, 1, K})
                 : dnnl::memory::desc({B, K, N}, dt::s8, {K * N, N, 1});
  p.dst = dnnl::memory::desc({B, M, N}, dt::s32, {M * N, N, 1});
  dnnl::primitive_attr attr;
  if (zero_point) attr.set_zero_points(DNNL_ARG_SRC, 0, {DNNL_RUNTIME_S32_VAL});
  p.prim = dnnl::matmul(dnnl::matmul::primitive_desc(dnnl::matmul::desc(p.src, p.wei, p.dst), attr,
                                                     dnnl_engine()));
  return p;
}

void gemm_onednn(const IntGemm& g, const uint8_t* a, int32_t zero_a, const int8_t* b, int32_t* c) {
  using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, bool, bool>;
  static std::map<Key, Prim> cache;
  static std::mutex mu;
  const bool zp = zero_a != 0;
  Prim& p = cached_primitive(cache, mu, Key{g.batch, g.M, g.N, g.K, g.b_nk, zp}, [&] { return make(g, zp); });
  auto& eng = dnnl_engine();
  std::unordered_map<int, dnnl::memory> args{
      {DNNL_ARG_SRC, dnnl::memory(p.src, eng, const_cast<uint8_t*>(a))},
      {DNNL_ARG_WEIGHTS, dnnl::memory(p.wei, eng, const_cast<int8_t*>(b))},
      {DNNL_ARG_DST, dnnl::memory(p.dst, eng, c)}};
  dnnl::memory zm;
  if (zp) {
    zm = dnnl::memory({{1}, dt::s32, {1}}, eng, &zero_a);
    args[DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC] = zm;
  }
  p.prim.execute(dnnl_stream(), args);
  dnnl_stream().wait();
}

// The same integers from fp32 GEMMs (see the header). Slow-ish (copies to float), exact.
void gemm_float_exact(const IntGemm& g, const uint8_t* a, int32_t zero_a, const int8_t* b, int32_t* c) {
  const int64_t B = g.batch, M = g.M, N = g.N, K = g.K;
  Tensor af = Tensor::empty({B, M, K}), bf = Tensor::empty({B, g.b_nk ? N : K, g.b_nk ? K : N});
  int32_t amax = 0, bmax = 0;
  for (int64_t i = 0; i < af.numel(); ++i) {
    int32_t v = int32_t(a[i]) - zero_a;
    af.f32()[i] = float(v);
    amax = std::max(amax, std::abs(v));
  }
  for (int64_t i = 0; i < bf.numel(); ++i) {
    bf.f32()[i] = float(b[i]);
    bmax = std::max(bmax, int32_t(std::abs(int32_t(b[i]))));
  }
  // Largest K-chunk whose partial sums stay below 2^24: chunk * amax * bmax < 2^24.
  const int64_t bound = int64_t(1) << 24;
  const int64_t chunk = std::max<int64_t>(1, (bound - 1) / std::max<int64_t>(1, int64_t(amax) * bmax));
  std::fill(c, c + B * M * N, 0);
  Tensor part = Tensor::empty({B, M, N});
  for (int64_t k0 = 0; k0 < K; k0 += chunk) {
    const int64_t kc = std::min(chunk, K - k0);
    View av{af.f32() + k0, {B, M, kc}, {M * K, K, 1}};
    View bv = g.b_nk ? View{bf.f32() + k0, {B, kc, N}, {N * K, 1, K}}
                     : View{bf.f32() + k0 * N, {B, kc, N}, {K * N, N, 1}};
    matmul_strided(av, bv, part.f32(), {B, M, N}, {M * N, N, 1});
    for (int64_t i = 0; i < B * M * N; ++i) c[i] += int32_t(std::lrint(part.f32()[i]));
  }
}

}  // namespace

bool cpu_has_vnni() {
  static const bool vnni = __builtin_cpu_supports("avx512vnni") || __builtin_cpu_supports("avxvnni");
  return vnni;
}

int int8_exact_weight_bits(int abits) { return cpu_has_vnni() || abits <= 7 ? 8 : 7; }

void gemm_u8s8_s32(const IntGemm& g, const uint8_t* a, int32_t zero_a, const int8_t* b,
                   int32_t* c, IntEngine e) {
  if (e == IntEngine::onednn)
    gemm_onednn(g, a, zero_a, b, c);
  else
    gemm_float_exact(g, a, zero_a, b, c);
}

}  // namespace vs::kernels
