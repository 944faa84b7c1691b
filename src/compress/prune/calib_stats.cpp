#include "compress/prune/calib_stats.h"

#include <algorithm>

#include "compress/capture.h"
#include "core/error.h"
#include "core/progress.h"
#include "kernels/gemm.h"

namespace vs::prune {
namespace {

void add_col_sum(std::vector<double>& acc, const float* x, int64_t rows, int64_t cols) {
  acc.resize(size_t(cols), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) acc[size_t(c)] += x[r * cols + c];
}

void add_col_sumsq(std::vector<double>& acc, const float* x, int64_t rows, int64_t cols) {
  acc.resize(size_t(cols), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) acc[size_t(c)] += double(x[r * cols + c]) * x[r * cols + c];
}

// X^T X [cols, cols] of X [rows, cols] with row stride ld: transposed once, then oneDNN's plain
// GEMM (strided transposed operands fall onto a slow reference path).
Tensor gram(const float* x, int64_t rows, int64_t cols, int64_t ld) {
  Tensor xt = Tensor::empty({cols, rows}), g = Tensor::empty({cols, cols});
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) xt.f32()[c * rows + r] = x[r * ld + c];
  kernels::linear_f32(xt.f32(), xt.f32(), nullptr, g.f32(), cols, cols, rows);
  return g;
}

void add_qk_stats(BlockStats& s, const kernels::HeadLayout& L, const float* y, int64_t B, int64_t T) {
  const int64_t ld = L.qkv_width(), qt = L.qk_total();
  s.qk_m.resize(L.qk_dim.size());
  int64_t off = 0;
  for (size_t h = 0; h < L.qk_dim.size(); ++h) {
    const int64_t d = L.qk_dim[h];
    s.qk_m[h].resize(size_t(d * d), 0.0);
    if (d == 0) continue;
    Tensor kc = Tensor::empty({B, T, d});  // keys minus their mean over tokens, per image
    for (int64_t b = 0; b < B; ++b) {
      const float* k = y + b * T * ld + qt + off;
      float* o = kc.f32() + b * T * d;
      for (int64_t j = 0; j < d; ++j) {
        double mean = 0;
        for (int64_t t = 0; t < T; ++t) mean += k[t * ld + j];
        mean /= double(T);
        for (int64_t t = 0; t < T; ++t) o[t * d + j] = float(k[t * ld + j] - mean);
      }
    }
    for (int64_t b = 0; b < B; ++b) {
      Tensor gq = gram(y + b * T * ld + off, T, d, ld), gk = gram(kc.f32() + b * T * d, T, d, d);
      for (int64_t i = 0; i < d * d; ++i) s.qk_m[h][size_t(i)] += double(gq.f32()[i]) * gk.f32()[i];
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
      add_qk_stats(s, model.blocks[b].attn.heads, c.y, c.rows / T, T);
    } else if (what == "attn.proj") {
      Tensor g = gram(c.x, c.rows, c.in, c.in);
      s.ctx_gram.resize(size_t(c.in * c.in), 0.0);
      for (int64_t i = 0; i < c.in * c.in; ++i) s.ctx_gram[size_t(i)] += g.f32()[i];
      add_col_sum(s.ctx_mean, c.x, c.rows, c.in);
    } else if (what == "mlp.fc1") {
      add_col_sumsq(s.fc1_in_sq, c.x, c.rows, c.in);
    } else if (what == "mlp.fc2") {
      add_col_sumsq(s.hidden_sq, c.x, c.rows, c.in);
      add_col_sum(s.hidden_mean, c.x, c.rows, c.in);
    }
  }, [](const std::string& n) { return n == "head" || n.rfind("blocks.", 0) == 0; });
  Progress bar("calibrate", int64_t(calib.size()));
  for (size_t i = 0; i < calib.size(); ++i) {
    model.forward(calib[i]);
    st.images += calib[i].dim(0);
    if (progress) bar.update(int64_t(i + 1));
  }
  bar.finish();
  const double tokens = double(st.images * T);
  for (auto& s : st.blocks)
    for (auto* v : {&s.hidden_mean, &s.ctx_mean})
      for (auto& x : *v) x /= tokens;
  return st;
}

}  // namespace vs::prune
