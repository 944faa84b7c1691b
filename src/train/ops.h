// The backward passes of the ViT forward's ops, plainly, one function per op (llm.c style). The
// forwards are the inference kernels (kernels::linear_f32, kernels::layernorm, kernels::gelu,
// kernels::softmax_rows); where backward needs something the inference kernel throws away
// (attention probabilities) there is a forward here that keeps it. Gradients of parameters are
// written, not accumulated: every parameter is used once per forward pass. Reductions over rows
// run column-parallel in a fixed order, so results do not depend on the thread count.
#pragma once
#include <cstdint>

#include "kernels/attention.h"

namespace vs::train {

// out[c] = sum_r a[r, c]
void column_sums(const float* a, float* out, int64_t rows, int64_t cols);

// y[M,N] = x[M,K] W[N,K]^T + b. Backward: dx = dy W (skipped when dx is null), dw = dy^T x,
// db = column sums of dy (skipped when db is null).
void linear_backward(const float* x, const float* w, const float* dy, float* dx, float* dw,
                     float* db, int64_t M, int64_t N, int64_t K);

// y = layernorm(x) * gamma + beta over rows of width C (mean and 1/std recomputed from x);
// dx must not alias dy.
void layernorm_backward(const float* x, const float* gamma, const float* dy, float* dx,
                        float* dgamma, float* dbeta, int64_t R, int64_t C, float eps);

// Static activation quantisation as QuantLinear does it (kernels::quantize_u8), dequantised:
// y = (clamp(round(x / s) + z, 0, 2^bits - 1) - z) * s; mask = 1 where x was inside the range
// (straight-through estimator with clipping), else 0. mask may be null.
void fake_quantize_u8(const float* x, float* y, float* mask, int64_t n, float scale, int32_t zero, int bits);

// y = gelu(a) (erf form, kernels::gelu_erf): da = dy * (Phi(a) + a * phi(a)).
void gelu_backward(const float* a, const float* dy, float* da, int64_t n);

// Quantisation of the softmax probabilities before the product with v (kernels::AttnQuant's
// p_bits / p_scale / p_tau; bits 16 = float): Pq = clamp(round(P / s), 0, 2^bits - 1) * s, or
// with tau > 0 the log2 level of P (kernels/log2_quant.h) as the integer path uses it.
struct ProbQuant {
  int bits = 16;
  float scale = 1.f;
  int tau = 0;
};

// As kernels::attention_f32 (qkv [B, N, q|k|v heads] -> out [B, N, v_total]), also keeping the
// softmax probabilities probs [B, H, N, N] that backward needs. Heads may be uneven. With
// probability quantisation, probs_q [B, H, N, N] receives Pq, which multiplies v.
void attention_forward(const float* qkv, float* out, float* probs, int64_t B, int64_t N,
                       const kernels::HeadLayout& heads, float scale, const ProbQuant& pq = {},
                       float* probs_q = nullptr);
// dqkv [B, N, qkv_width] from dout [B, N, v_total]:
//   dV = Pq^T dO, dP = dO V^T (zero where Pq clipped: straight-through),
//   dS = P * (dP - rowsum(dP * P)) * scale, dQ = dS K, dK = dS^T Q.
// With uniform probability quantisation, p_scale_grad (when given) receives the LSQ gradient of
// the probabilities' step size (train/learned_quant.h).
void attention_backward(const float* qkv, const float* probs, const float* dout, float* dqkv,
                        int64_t B, int64_t N, const kernels::HeadLayout& heads, float scale,
                        const ProbQuant& pq = {}, const float* probs_q = nullptr,
                        double* p_scale_grad = nullptr);

}  // namespace vs::train
