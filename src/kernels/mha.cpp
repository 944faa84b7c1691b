#include "kernels/mha.h"

#include "core/tensor.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"

namespace vs::kernels {

void mha_f32(const float* q, const float* k, const float* v, float* out, const MhaShape& s,
             float scale, const float* bias) {
  const int64_t B = s.B, H = s.H, Nq = s.Nq, Nk = s.Nk;
  Tensor scores = Tensor::empty({B, H, Nq, Nk});
  float* p = scores.f32();
  matmul_strided({q, {B, H, Nq, s.dqk}, {Nq * s.ldq, s.dqk, s.ldq, 1}},
                 {k, {B, H, s.dqk, Nk}, {Nk * s.ldk, s.dqk, 1, s.ldk}}, p, {B, H, Nq, Nk},
                 {H * Nq * Nk, Nq * Nk, Nk, 1});
  if (bias) {
    const int64_t per_batch = H * Nq * Nk;
#pragma omp parallel for
    for (int64_t b = 0; b < B; ++b) {
      float* pb = p + b * per_batch;
      for (int64_t i = 0; i < per_batch; ++i) pb[i] = pb[i] * scale + bias[i];
    }
    softmax_rows(p, B * H * Nq, Nk, 1.f);
  } else {
    softmax_rows(p, B * H * Nq, Nk, scale);
  }
  matmul_strided({p, {B, H, Nq, Nk}, {H * Nq * Nk, Nq * Nk, Nk, 1}},
                 {v, {B, H, Nk, s.dv}, {Nk * s.ldv, s.dv, s.ldv, 1}}, out, {B, H, Nq, s.dv},
                 {Nq * s.ldo, s.dv, s.ldo, 1});
}

}  // namespace vs::kernels
