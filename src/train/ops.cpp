#include "train/ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/tensor.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"

namespace vs::train {

using kernels::matmul_strided;

void column_sums(const float* a, float* out, int64_t rows, int64_t cols) {
  constexpr int64_t kChunk = 16;  // columns per task: contiguous reads, fixed summation order
#pragma omp parallel for schedule(static)
  for (int64_t c0 = 0; c0 < cols; c0 += kChunk) {
    const int64_t c1 = std::min(cols, c0 + kChunk);
    float acc[kChunk] = {};
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = c0; c < c1; ++c) acc[c - c0] += a[r * cols + c];
    for (int64_t c = c0; c < c1; ++c) out[c] = acc[c - c0];
  }
}

void linear_backward(const float* x, const float* w, const float* dy, float* dx, float* dw,
                     float* db, int64_t M, int64_t N, int64_t K) {
  if (dx) matmul_strided({dy, {M, N}, {N, 1}}, {w, {N, K}, {K, 1}}, dx, {M, K}, {K, 1});
  matmul_strided({dy, {N, M}, {1, N}}, {x, {M, K}, {K, 1}}, dw, {N, K}, {K, 1});
  if (db) column_sums(dy, db, M, N);
}

void layernorm_backward(const float* x, const float* gamma, const float* dy, float* dx,
                        float* dgamma, float* dbeta, int64_t R, int64_t C, float eps) {
  Tensor xhat = Tensor::empty({R, C});
  float* xh = xhat.f32();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < R; ++r) {
    const float* xr = x + r * C;
    float sum = 0.f;
    for (int64_t c = 0; c < C; ++c) sum += xr[c];
    const float mean = sum / float(C);
    float sq = 0.f;
    for (int64_t c = 0; c < C; ++c) sq += (xr[c] - mean) * (xr[c] - mean);
    const float rstd = 1.f / std::sqrt(sq / float(C) + eps);
    const float* dyr = dy + r * C;
    float* xhr = xh + r * C;
    float m1 = 0.f, m2 = 0.f;  // means of dxhat and dxhat * xhat
    for (int64_t c = 0; c < C; ++c) {
      xhr[c] = (xr[c] - mean) * rstd;
      const float g = dyr[c] * gamma[c];
      m1 += g;
      m2 += g * xhr[c];
    }
    m1 /= float(C);
    m2 /= float(C);
    float* dxr = dx + r * C;
    for (int64_t c = 0; c < C; ++c) dxr[c] = rstd * (dyr[c] * gamma[c] - m1 - xhr[c] * m2);
  }
  constexpr int64_t kChunk = 16;
#pragma omp parallel for schedule(static)
  for (int64_t c0 = 0; c0 < C; c0 += kChunk) {
    const int64_t c1 = std::min(C, c0 + kChunk);
    float g[kChunk] = {}, b[kChunk] = {};
    for (int64_t r = 0; r < R; ++r)
      for (int64_t c = c0; c < c1; ++c) {
        g[c - c0] += dy[r * C + c] * xh[r * C + c];
        b[c - c0] += dy[r * C + c];
      }
    for (int64_t c = c0; c < c1; ++c) {
      dgamma[c] = g[c - c0];
      dbeta[c] = b[c - c0];
    }
  }
}

void gelu_backward(const float* a, const float* dy, float* da, int64_t n) {
  constexpr float kInvSqrt2 = 0.70710678118654752f, kInvSqrt2Pi = 0.39894228040143268f;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float x = a[i];
    const float cdf = 0.5f * (1.f + std::erf(x * kInvSqrt2));
    const float pdf = kInvSqrt2Pi * std::exp(-0.5f * x * x);
    da[i] = dy[i] * (cdf + x * pdf);
  }
}

// Per head h, batched over images: views of [B, N, width] slices of the fused buffers.
namespace {
struct Heads {
  const kernels::HeadLayout& l;
  int64_t B, N, H, ld, ldo, qk;
  Heads(const kernels::HeadLayout& hl, int64_t b, int64_t n)
      : l(hl), B(b), N(n), H(int64_t(hl.qk_dim.size())), ld(hl.qkv_width()), ldo(hl.v_total()),
        qk(hl.qk_total()) {}
  kernels::View qkv_rows(const float* p, int64_t d) const { return {p, {B, N, d}, {N * ld, ld, 1}}; }
  kernels::View qkv_cols(const float* p, int64_t d) const { return {p, {B, d, N}, {N * ld, 1, ld}}; }
  kernels::View out_rows(const float* p, int64_t d) const { return {p, {B, N, d}, {N * ldo, ldo, 1}}; }
  kernels::View probs(const float* p) const { return {p, {B, N, N}, {H * N * N, N, 1}}; }
  kernels::View probs_t(const float* p) const { return {p, {B, N, N}, {H * N * N, 1, N}}; }
};
}  // namespace

void attention_forward(const float* qkv, float* out, float* probs, int64_t B, int64_t N,
                       const kernels::HeadLayout& heads, float scale) {
  Heads v(heads, B, N);
  int64_t qoff = 0, voff = 0;
  for (int64_t h = 0; h < v.H; ++h) {
    const int64_t dq = heads.qk_dim[size_t(h)], dv = heads.v_dim[size_t(h)];
    float* ph = probs + h * N * N;
    if (dq > 0)
      matmul_strided(v.qkv_rows(qkv + qoff, dq), v.qkv_cols(qkv + v.qk + qoff, dq), ph, {B, N, N},
                     {v.H * N * N, N, 1});
    else  // no query/key left: every score is 0, attention is uniform
      for (int64_t b = 0; b < B; ++b) std::fill(ph + b * v.H * N * N, ph + b * v.H * N * N + N * N, 0.f);
    for (int64_t b = 0; b < B; ++b) kernels::softmax_rows(ph + b * v.H * N * N, N, N, scale);
    if (dv > 0)
      matmul_strided(v.probs(ph), v.qkv_rows(qkv + 2 * v.qk + voff, dv), out + voff, {B, N, dv},
                     {N * v.ldo, v.ldo, 1});
    qoff += dq;
    voff += dv;
  }
}

void attention_backward(const float* qkv, const float* probs, const float* dout, float* dqkv,
                        int64_t B, int64_t N, const kernels::HeadLayout& heads, float scale) {
  Heads v(heads, B, N);
  Tensor dp_t = Tensor::empty({B, N, N});
  float* dp = dp_t.f32();
  int64_t qoff = 0, voff = 0;
  for (int64_t h = 0; h < v.H; ++h) {
    const int64_t dq = heads.qk_dim[size_t(h)], dv = heads.v_dim[size_t(h)];
    const float* ph = probs + h * N * N;
    float* dq_out = dqkv + qoff;
    float* dk_out = dqkv + v.qk + qoff;
    if (dv == 0) {  // the head's output is empty: its q and k have no gradient
      for (int64_t r = 0; r < B * N; ++r) {
        std::fill(dq_out + r * v.ld, dq_out + r * v.ld + dq, 0.f);
        std::fill(dk_out + r * v.ld, dk_out + r * v.ld + dq, 0.f);
      }
      qoff += dq;
      continue;
    }
    // dV = P^T dO
    matmul_strided(v.probs_t(ph), v.out_rows(dout + voff, dv), dqkv + 2 * v.qk + voff, {B, N, dv},
                   {N * v.ld, v.ld, 1});
    if (dq > 0) {
      // dP = dO V^T, then dS = P * (dP - <dP, P>_row) * scale, in place
      matmul_strided(v.out_rows(dout + voff, dv), v.qkv_cols(qkv + 2 * v.qk + voff, dv), dp,
                     {B, N, N}, {N * N, N, 1});
#pragma omp parallel for collapse(2) schedule(static)
      for (int64_t b = 0; b < B; ++b)
        for (int64_t i = 0; i < N; ++i) {
          const float* pr = ph + b * v.H * N * N + i * N;
          float* dr = dp + (b * N + i) * N;
          float dot = 0.f;
          for (int64_t j = 0; j < N; ++j) dot += dr[j] * pr[j];
          for (int64_t j = 0; j < N; ++j) dr[j] = pr[j] * (dr[j] - dot) * scale;
        }
      matmul_strided({dp, {B, N, N}, {N * N, N, 1}}, v.qkv_rows(qkv + v.qk + qoff, dq), dq_out,
                     {B, N, dq}, {N * v.ld, v.ld, 1});
      matmul_strided({dp, {B, N, N}, {N * N, 1, N}}, v.qkv_rows(qkv + qoff, dq), dk_out,
                     {B, N, dq}, {N * v.ld, v.ld, 1});
    }
    qoff += dq;
    voff += dv;
  }
}

}  // namespace vs::train
