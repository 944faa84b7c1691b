#include "train/ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/tensor.h"
#include "kernels/elementwise.h"
#include "kernels/fastmath.h"
#include "kernels/gemm.h"
#include "kernels/log2_quant.h"
#include "kernels/quantize_act.h"
#include "train/learned_quant.h"

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

void fake_quantize_u8(const float* x, float* y, float* mask, int64_t n, float scale, int32_t zero, int bits) {
  Tensor codes = Tensor::empty({n}, DType::u8);
  kernels::quantize_u8(x, codes.data<uint8_t>(), 1, n, n, scale, zero, bits);
  const uint8_t* q = codes.data<uint8_t>();
  const float lo = float(-zero) * scale, hi = float((1 << bits) - 1 - zero) * scale;
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    y[i] = float(int32_t(q[i]) - zero) * scale;
    if (mask) mask[i] = x[i] >= lo && x[i] <= hi ? 1.f : 0.f;
  }
}

void gelu_backward(const float* a, const float* dy, float* da, int64_t n) {
  constexpr float kInvSqrt2 = 0.70710678118654752f, kInvSqrt2Pi = 0.39894228040143268f;
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float x = a[i];
    const float cdf = 0.5f * (1.f + kernels::fast_erf(x * kInvSqrt2));
    const float pdf = kInvSqrt2Pi * kernels::fast_exp(-0.5f * x * x);
    da[i] = dy[i] * (cdf + x * pdf);
  }
}

// Heads are processed in groups of equal width: all heads in one batched product when they are
// uniform, else one head at a time. Views are 4-d [B, heads in group, rows, cols] into the fused
// qkv / output buffers and the probabilities [B, H, N, N].
namespace {
struct Group {
  int64_t h0, count, dq, dv, qoff, voff;
};
std::vector<Group> head_groups(const kernels::HeadLayout& l) {
  const int64_t H = int64_t(l.qk_dim.size());
  if (l.uniform()) return {{0, H, l.qk_dim[0], l.v_dim[0], 0, 0}};
  std::vector<Group> g;
  int64_t qoff = 0, voff = 0;
  for (int64_t h = 0; h < H; ++h) {
    g.push_back({h, 1, l.qk_dim[size_t(h)], l.v_dim[size_t(h)], qoff, voff});
    qoff += l.qk_dim[size_t(h)];
    voff += l.v_dim[size_t(h)];
  }
  return g;
}
struct Views {
  int64_t B, N, H, ld, ldo, qk;
  Views(const kernels::HeadLayout& l, int64_t b, int64_t n)
      : B(b), N(n), H(int64_t(l.qk_dim.size())), ld(l.qkv_width()), ldo(l.v_total()), qk(l.qk_total()) {}
  // [B, g, N, d] rows of the qkv buffer (head stride d), and the same transposed [B, g, d, N]
  kernels::View rows(const float* p, const Group& g, int64_t d) const { return {p, {B, g.count, N, d}, {N * ld, d, ld, 1}}; }
  kernels::View cols(const float* p, const Group& g, int64_t d) const { return {p, {B, g.count, d, N}, {N * ld, d, 1, ld}}; }
  kernels::View out(const float* p, const Group& g, int64_t d) const { return {p, {B, g.count, N, d}, {N * ldo, d, ldo, 1}}; }
  kernels::View probs(const float* p, const Group& g, bool t) const {
    return {p, {B, g.count, N, N}, {H * N * N, N * N, t ? 1 : N, t ? N : 1}};
  }
  std::vector<int64_t> dims(const Group& g, int64_t d) const { return {B, g.count, N, d}; }
  std::vector<int64_t> qkv_strides(int64_t d) const { return {N * ld, d, ld, 1}; }
};
// Pq for n probabilities (see ProbQuant).
void quantize_probs(const float* p, float* out, int64_t n, const ProbQuant& pq) {
  if (pq.tau == 0) {
    fake_quantize_u8(p, out, nullptr, n, pq.scale, 0, pq.bits);
    return;
  }
  const kernels::Log2Grid g = kernels::make_log2_grid(pq.scale, pq.tau, pq.bits);
  uint16_t table[256];
  kernels::log2_fixed_table(g, table);
  std::vector<uint8_t> codes(static_cast<size_t>(n));
  kernels::log2_codes(p, codes.data(), n, g);
  const float unit = pq.scale / 32768.f;  // table levels are 2^15-based fixed point
  for (int64_t i = 0; i < n; ++i) out[i] = float(table[codes[size_t(i)]]) * unit;
}

}  // namespace

void attention_forward(const float* qkv, float* out, float* probs, int64_t B, int64_t N,
                       const kernels::HeadLayout& heads, float scale, const ProbQuant& pq,
                       float* probs_q) {
  const bool quant_p = pq.bits < 16;
  Views v(heads, B, N);
  for (const Group& g : head_groups(heads)) {
    float* ph = probs + g.h0 * N * N;
    if (g.dq > 0)
      matmul_strided(v.rows(qkv + g.qoff, g, g.dq), v.cols(qkv + v.qk + g.qoff, g, g.dq), ph, v.dims(g, N),
                     {v.H * N * N, N * N, N, 1});
    else  // no query/key left: every score is 0, attention is uniform
      for (int64_t b = 0; b < B; ++b) std::fill(ph + b * v.H * N * N, ph + b * v.H * N * N + g.count * N * N, 0.f);
    for (int64_t b = 0; b < B; ++b) kernels::softmax_rows(ph + b * v.H * N * N, g.count * N, N, scale);
    float* pv = quant_p ? probs_q + g.h0 * N * N : ph;  // what multiplies v
    if (quant_p)
      for (int64_t b = 0; b < B; ++b)
        quantize_probs(ph + b * v.H * N * N, pv + b * v.H * N * N, g.count * N * N, pq);
    if (g.dv > 0)
      matmul_strided(v.probs(pv, g, false), v.rows(qkv + 2 * v.qk + g.voff, g, g.dv), out + g.voff, v.dims(g, g.dv),
                     {N * v.ldo, g.dv, v.ldo, 1});
  }
}

void attention_backward(const float* qkv, const float* probs, const float* dout, float* dqkv,
                        int64_t B, int64_t N, const kernels::HeadLayout& heads, float scale,
                        const ProbQuant& pq, const float* probs_q, double* p_scale_grad) {
  const bool quant_p = pq.bits < 16;
  // probabilities above are clipped (log2: code 0 is the level s itself)
  const float p_hi = pq.tau > 0 ? pq.scale : float((1 << pq.bits) - 1) * pq.scale;
  const bool lsq = quant_p && pq.tau == 0 && p_scale_grad != nullptr;
  std::vector<double> lsq_rows;  // per-row partial sums, added in order (deterministic)
  if (lsq) *p_scale_grad = 0;
  Views v(heads, B, N);
  std::vector<Group> groups = head_groups(heads);
  int64_t most = 0;
  for (auto& g : groups) most = std::max(most, g.count);
  Tensor dp_t = Tensor::empty({B, most, N, N});
  float* dp = dp_t.f32();
  for (const Group& g : groups) {
    const float* ph = probs + g.h0 * N * N;
    float* dq_out = dqkv + g.qoff;
    float* dk_out = dqkv + v.qk + g.qoff;
    if (g.dv == 0) {  // the head's output is empty: its q and k have no gradient
      for (int64_t r = 0; r < B * N; ++r) {
        std::fill(dq_out + r * v.ld, dq_out + r * v.ld + g.count * g.dq, 0.f);
        std::fill(dk_out + r * v.ld, dk_out + r * v.ld + g.count * g.dq, 0.f);
      }
      continue;
    }
    // dV = P^T dO
    matmul_strided(v.probs(quant_p ? probs_q + g.h0 * N * N : ph, g, true), v.out(dout + g.voff, g, g.dv), dqkv + 2 * v.qk + g.voff,
                   v.dims(g, g.dv), v.qkv_strides(g.dv));
    if (g.dq == 0) continue;
    // dP = dO V^T, then dS = P * (dP - <dP, P>_row) * scale, in place
    const std::vector<int64_t> dp_strides{g.count * N * N, N * N, N, 1};
    matmul_strided(v.out(dout + g.voff, g, g.dv), v.cols(qkv + 2 * v.qk + g.voff, g, g.dv), dp, v.dims(g, N),
                   dp_strides);
    if (lsq) lsq_rows.assign(size_t(B * g.count * N), 0.0);
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t i = 0; i < g.count * N; ++i) {
        const float* pr = ph + b * v.H * N * N + i * N;
        float* dr = dp + (b * g.count * N + i) * N;
        if (lsq) lsq_rows[size_t(b * g.count * N + i)] = lsq_scale_grad(pr, dr, N, pq.scale, 0, pq.bits);
        if (quant_p)
          for (int64_t j = 0; j < N; ++j) dr[j] = pr[j] <= p_hi ? dr[j] : 0.f;
        float dot = 0.f;
        for (int64_t j = 0; j < N; ++j) dot += dr[j] * pr[j];
        for (int64_t j = 0; j < N; ++j) dr[j] = pr[j] * (dr[j] - dot) * scale;
      }
    for (double r : lsq_rows) *p_scale_grad += r;
    // dQ = dS K, dK = dS^T Q
    matmul_strided({dp, v.dims(g, N), dp_strides}, v.rows(qkv + v.qk + g.qoff, g, g.dq), dq_out, v.dims(g, g.dq),
                   v.qkv_strides(g.dq));
    matmul_strided({dp, v.dims(g, N), {g.count * N * N, N * N, 1, N}}, v.rows(qkv + g.qoff, g, g.dq), dk_out,
                   v.dims(g, g.dq), v.qkv_strides(g.dq));
  }
}

}  // namespace vs::train
