#include "compress/prune/calib_stats.h"

#include <algorithm>

#include "compress/capture.h"
#include "core/error.h"
#include "core/progress.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"

namespace vs::prune {
namespace {

void add_col_sumsq(std::vector<double>& acc, const float* x, int64_t rows, int64_t cols) {
  acc.resize(size_t(cols), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) acc[size_t(c)] += double(x[r * cols + c]) * x[r * cols + c];
}

// X^T X [cols, cols] of X [rows, cols] with row stride ld: transposed once, then oneDNN's plain
// GEMM (strided transposed operands fall onto a slow reference path).
Tensor xtx(const float* x, int64_t rows, int64_t cols, int64_t ld) {
  Tensor xt = Tensor::empty({cols, rows}), g = Tensor::empty({cols, cols});
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) xt.f32()[c * rows + r] = x[r * ld + c];
  kernels::linear_f32(xt.f32(), xt.f32(), nullptr, g.f32(), cols, cols, rows);
  return g;
}


// Adds the second-order attention KL statistic of every head (BlockStats::qk_m) for B images:
// with Q, K [T, d] the head's queries and keys, P = softmax(scale Q K^T) and Kbar = P K,
//   M += scale^2 (sum_t (q_t q_t^T) o (K^T diag(P_t) K) - (Q o Kbar)^T (Q o Kbar)).
// The first term is computed as sum_t q_ti q_tj (P B)_t,ij with B_s,ij = k_si k_sj (one GEMM).
void add_qk_stats(BlockStats& s, const kernels::HeadLayout& L, float scale, const float* y, int64_t B, int64_t T) {
  const int64_t ld = L.qkv_width(), qt = L.qk_total();
  s.qk_m.resize(L.qk_dim.size());
  int64_t off = 0;
  for (size_t h = 0; h < L.qk_dim.size(); ++h) {
    const int64_t d = L.qk_dim[h];
    s.qk_m[h].resize(size_t(d * d), 0.0);
    if (d == 0) continue;
    Tensor q = Tensor::empty({T, d}), k = Tensor::empty({T, d}), kt = Tensor::empty({d, T}), p = Tensor::empty({T, T});
    Tensor kbar = Tensor::empty({T, d}), bt = Tensor::empty({d * d, T}), pb = Tensor::empty({T, d * d});
    for (int64_t b = 0; b < B; ++b) {
      const float* rows = y + b * T * ld;
      for (int64_t t = 0; t < T; ++t)
        for (int64_t j = 0; j < d; ++j) {
          q.f32()[t * d + j] = rows[t * ld + off + j];
          k.f32()[t * d + j] = kt.f32()[j * T + t] = rows[t * ld + qt + off + j];
        }
      kernels::linear_f32(q.f32(), k.f32(), nullptr, p.f32(), T, T, d);  // Q K^T
      kernels::softmax_rows(p.f32(), T, T, scale);
      kernels::linear_f32(p.f32(), kt.f32(), nullptr, kbar.f32(), T, d, T);  // P K
      for (int64_t i = 0; i < d; ++i)
        for (int64_t j = 0; j < d; ++j)
          for (int64_t t = 0; t < T; ++t) bt.f32()[(i * d + j) * T + t] = kt.f32()[i * T + t] * kt.f32()[j * T + t];
      kernels::linear_f32(p.f32(), bt.f32(), nullptr, pb.f32(), T, d * d, T);  // P B
      std::vector<double> m1(size_t(d * d), 0.0);
      for (int64_t t = 0; t < T; ++t) {
        const float* qr = q.f32() + t * d;
        const float* pr = pb.f32() + t * d * d;
        for (int64_t i = 0; i < d; ++i)
          for (int64_t j = 0; j < d; ++j) m1[size_t(i * d + j)] += double(qr[i]) * qr[j] * pr[i * d + j];
      }
      for (int64_t i = 0; i < T * d; ++i) kbar.f32()[i] *= q.f32()[i];  // Q o Kbar
      Tensor m2 = xtx(kbar.f32(), T, d, d);
      const double s2 = double(scale) * scale;
      for (int64_t i = 0; i < d * d; ++i) s.qk_m[h][size_t(i)] += s2 * (m1[size_t(i)] - m2.f32()[i]);
    }
    off += d;
  }
}

}  // namespace

CalibStats collect_stats(models::ViT& model, const std::vector<Tensor>& calib, bool progress) {
  check(!calib.empty(), "pruning scores need calibration images (--calib)");
  CalibStats st;
  st.blocks.resize(model.blocks.size());
  const int64_t T = model.cfg.num_tokens();
  compress::Capture cap(model, [&](const compress::Captured& c) {
    if (c.name == "head") return add_col_sumsq(st.head_in_sq, c.x, c.rows, c.in);
    const size_t b = size_t(std::stoi(c.name.substr(7)));  // "blocks.N.xxx"
    BlockStats& s = st.blocks[b];
    const std::string what = c.name.substr(c.name.find('.', 7) + 1);
    if (what == "attn.qkv") {
      add_col_sumsq(s.qkv_in_sq, c.x, c.rows, c.in);
      add_qk_stats(s, model.blocks[b].attn.heads, model.blocks[b].attn.scale, c.y, c.rows / T, T);
    } else if (what == "attn.proj") {
      s.ctx.add(c.x, c.rows, c.in);
    } else if (what == "mlp.fc1") {
      add_col_sumsq(s.fc1_in_sq, c.x, c.rows, c.in);
    } else if (what == "mlp.fc2") {
      s.hidden.add(c.x, c.rows, c.in);
    }
  }, [](const std::string& n) { return n == "head" || n.rfind("blocks.", 0) == 0; });
  Progress bar("calibrate", int64_t(calib.size()));
  for (size_t i = 0; i < calib.size(); ++i) {
    model.forward(calib[i]);
    st.images += calib[i].dim(0);
    if (progress) bar.update(int64_t(i + 1));
  }
  bar.finish();
  return st;
}

}  // namespace vs::prune
