#include "kernels/gemm_int8.h"

#include <algorithm>
#include <cmath>
#include <dnnl.hpp>
#include <map>
#include <mutex>
#include <omp.h>
#include <tuple>
#include <vector>

#include "core/tensor.h"
#include "kernels/dnnl_engine.h"
#include "kernels/gemm.h"
#include "kernels/weight_cache_impl.h"

namespace vs::kernels {
namespace {

using dt = dnnl::memory::data_type;

struct Prim {
  dnnl::matmul prim;
  dnnl::memory::desc src, wei, dst, scratch;
};

dnnl::memory::desc plain_weights(const IntGemm& g) {
  const int64_t B = g.batch, N = g.N, K = g.K, ld = g.b_ld();
  return g.b_nk ? dnnl::memory::desc({B, K, N}, dt::s8, {N * ld, 1, ld})
                : dnnl::memory::desc({B, K, N}, dt::s8, {K * ld, ld, 1});
}

Prim make(const IntGemm& g, bool zero_point, bool packed) {
  const int64_t B = g.batch, M = g.M, N = g.N, K = g.K;
  Prim p;
  if (packed) {  // 2-d descriptors: brgemm picks its VNNI-blocked weight layout only for 2-d weights
    p.src = dnnl::memory::desc({M, K}, dt::u8, {g.a_ld(), 1});
    p.wei = dnnl::memory::desc({K, N}, dt::s8, dnnl::memory::format_tag::any);
    p.dst = dnnl::memory::desc({M, N}, dt::s32, {g.c_ld(), 1});
  } else {
    p.src = dnnl::memory::desc({B, M, K}, dt::u8, {M * g.a_ld(), g.a_ld(), 1});
    p.wei = plain_weights(g);
    p.dst = dnnl::memory::desc({B, M, N}, dt::s32, {M * g.c_ld(), g.c_ld(), 1});
  }
  dnnl::primitive_attr attr;
  if (zero_point) attr.set_zero_points(DNNL_ARG_SRC, 0, {DNNL_RUNTIME_S32_VAL});
  // Our scratchpad (a per-thread buffer, gemm_onednn_one): the library's is shared by all
  // primitives of a thread and ties each primitive to the thread that made it.
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(p.src, p.wei, p.dst), attr, dnnl_engine());
  p.wei = pd.weights_desc();
  p.scratch = pd.scratchpad_desc();
  p.prim = dnnl::matmul(pd);
  return p;
}

// One oneDNN matmul; `slot`: which of the threads of a row split runs it (each its own primitive,
// so no primitive runs on two threads at once).
void gemm_onednn_one(const IntGemm& g, const uint8_t* a, int32_t zero_a, const int8_t* b, int32_t* c,
                     WeightCache* wcache, int slot = 0) {
  using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, bool, bool, bool, int64_t, int64_t, int64_t, int>;
  static std::map<Key, Prim> cache;
  static std::mutex mu;
  const bool zp = zero_a != 0, packed = wcache != nullptr && g.b_nk && g.batch == 1 && g.ldb == 0;
  Prim& p = cached_primitive(cache, mu, Key{g.batch, g.M, g.N, g.K, g.b_nk, zp, packed, g.lda, g.ldb, g.ldc, slot},
                             [&] { return make(g, zp, packed); });
  auto& eng = dnnl_engine();
  thread_local std::vector<uint8_t> scratch;  // (64 bytes spare: the buffer handed over is 64-byte aligned)
  if (scratch.size() < p.scratch.get_size() + 64) scratch.resize(p.scratch.get_size() + 64);
  void* scratch_at = scratch.data() + (64 - reinterpret_cast<uintptr_t>(scratch.data()) % 64) % 64;
  std::unordered_map<int, dnnl::memory> args{
      {DNNL_ARG_SRC, dnnl::memory(p.src, eng, const_cast<uint8_t*>(a))},
      {DNNL_ARG_WEIGHTS, packed ? wcache->impl->get(p.wei, dnnl::memory::desc({g.K, g.N}, dt::s8, {1, g.b_ld()}), b)
                                : dnnl::memory(p.wei, eng, const_cast<int8_t*>(b))},
      {DNNL_ARG_DST, dnnl::memory(p.dst, eng, c)},
      {DNNL_ARG_SCRATCHPAD, dnnl::memory(p.scratch, eng, scratch_at)}};
  dnnl::memory zm;
  if (zp) {
    zm = dnnl::memory({{1}, dt::s32, {1}}, eng, &zero_a);
    args[DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC] = zm;
  }
  p.prim.execute(dnnl_stream(), args);
  dnnl_stream().wait();
}

// Batch-1 GEMMs of a few hundred rows split by rows into one GEMM per thread, each run by
// oneDNN inside our parallel region (so on one thread): oneDNN's own split of e.g. 197 rows into
// 32-row blocks leaves one of two threads waiting (7 blocks: 4 + 3).
void gemm_onednn(const IntGemm& g, const uint8_t* a, int32_t zero_a, const int8_t* b, int32_t* c,
                 WeightCache* wcache) {
  const int64_t T = omp_get_max_threads();
  if (g.batch != 1 || T < 2 || g.M < 32 * T || g.M > 1024 || omp_in_parallel()) {
    gemm_onednn_one(g, a, zero_a, b, c, wcache);
    return;
  }
#pragma omp parallel num_threads(int(T))
  {
    const int64_t t = omp_get_thread_num(), per = (g.M + T - 1) / T, m0 = t * per, m1 = std::min(g.M, m0 + per);
    if (m1 > m0) {
      IntGemm h = g;
      h.M = m1 - m0;
      h.lda = g.a_ld();
      h.ldc = g.c_ld();
      gemm_onednn_one(h, a + m0 * g.a_ld(), zero_a, b, c + m0 * g.c_ld(), wcache, int(t) + 1);
    }
  }
}

// The same integers from fp32 GEMMs (see the header). Slow-ish (copies to float), exact.
void gemm_float_exact(const IntGemm& g, const uint8_t* a, int32_t zero_a, const int8_t* b, int32_t* c) {
  const int64_t B = g.batch, M = g.M, N = g.N, K = g.K;
  const int64_t b_rows = g.b_nk ? N : K, b_cols = g.b_nk ? K : N, lda = g.a_ld(), ldb = g.b_ld();
  Tensor af = Tensor::empty({B, M, K}), bf = Tensor::empty({B, b_rows, b_cols});
  int32_t amax = 0, bmax = 0;
  for (int64_t r = 0; r < B * M; ++r)
    for (int64_t k = 0; k < K; ++k) {
      int32_t v = int32_t(a[r * lda + k]) - zero_a;
      af.f32()[r * K + k] = float(v);
      amax = std::max(amax, std::abs(v));
    }
  for (int64_t r = 0; r < B * b_rows; ++r)
    for (int64_t k = 0; k < b_cols; ++k) {
      int32_t v = b[r * ldb + k];
      bf.f32()[r * b_cols + k] = float(v);
      bmax = std::max(bmax, std::abs(v));
    }
  // Largest K-chunk whose partial sums stay below 2^24: chunk * amax * bmax < 2^24.
  const int64_t bound = int64_t(1) << 24;
  const int64_t chunk = std::max<int64_t>(1, (bound - 1) / std::max<int64_t>(1, int64_t(amax) * bmax));
  const int64_t ldc = g.c_ld();
  for (int64_t r = 0; r < B * M; ++r) std::fill(c + r * ldc, c + r * ldc + N, 0);
  Tensor part = Tensor::empty({B, M, N});
  for (int64_t k0 = 0; k0 < K; k0 += chunk) {
    const int64_t kc = std::min(chunk, K - k0);
    View av{af.f32() + k0, {B, M, kc}, {M * K, K, 1}};
    View bv = g.b_nk ? View{bf.f32() + k0, {B, kc, N}, {N * K, 1, K}}
                     : View{bf.f32() + k0 * N, {B, kc, N}, {K * N, N, 1}};
    matmul_strided(av, bv, part.f32(), {B, M, N}, {M * N, N, 1});
    for (int64_t r = 0; r < B * M; ++r)
      for (int64_t n = 0; n < N; ++n) c[r * ldc + n] += int32_t(std::lrint(part.f32()[r * N + n]));
  }
}

}  // namespace

bool cpu_has_vnni() {
  static const bool vnni = __builtin_cpu_supports("avx512vnni") || __builtin_cpu_supports("avxvnni");
  return vnni;
}

int int8_exact_weight_bits(int abits) { return cpu_has_vnni() || abits <= 7 ? 8 : 7; }

void gemm_u8s8_s32(const IntGemm& g, const uint8_t* a, int32_t zero_a, const int8_t* b,
                   int32_t* c, IntEngine e, WeightCache* wcache) {
  if (e == IntEngine::onednn)
    gemm_onednn(g, a, zero_a, b, c, wcache);
  else
    gemm_float_exact(g, a, zero_a, b, c);
}

}  // namespace vs::kernels
