#include "kernels/attention.h"

#include <algorithm>
#include <numeric>

#include "kernels/elementwise.h"
#include "kernels/gemm.h"

namespace vs::kernels {

int64_t HeadLayout::qk_total() const { return std::accumulate(qk_dim.begin(), qk_dim.end(), int64_t(0)); }
int64_t HeadLayout::v_total() const { return std::accumulate(v_dim.begin(), v_dim.end(), int64_t(0)); }

void attention_f32(const float* qkv, float* out, int64_t B, int64_t N, const HeadLayout& heads,
                   float scale) {
  const int64_t H = int64_t(heads.qk_dim.size());
  const int64_t ld = heads.qkv_width(), ldo = heads.v_total(), qk_total = heads.qk_total();
  std::vector<int64_t> qoff(H), voff(H);
  for (int64_t h = 1; h < H; ++h) {
    qoff[h] = qoff[h - 1] + heads.qk_dim[h - 1];
    voff[h] = voff[h - 1] + heads.v_dim[h - 1];
  }
  // Tiles of query rows so that batch 1 with few heads still feeds every thread, and the score
  // tile (rows x N floats) stays in L2.
  constexpr int64_t kRows = 48;
  const int64_t tiles = (N + kRows - 1) / kRows;
#pragma omp parallel
  {
    std::vector<float> scores(size_t(kRows * N));
#pragma omp for collapse(3) schedule(dynamic)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t t = 0; t < tiles; ++t) {
          const int64_t r0 = t * kRows, rows = std::min(kRows, N - r0);
          const float* base = qkv + b * N * ld;
          const float* q = base + r0 * ld + qoff[h];
          const float* k = base + qk_total + qoff[h];
          const float* v = base + 2 * qk_total + voff[h];
          float* o = out + (b * N + r0) * ldo + voff[h];
          if (heads.v_dim[h] == 0) continue;  // nothing to write for this head
          if (heads.qk_dim[h] == 0)  // no query/key left: all scores 0, uniform attention
            std::fill(scores.begin(), scores.begin() + rows * N, 0.f);
          else
            sgemm(false, true, rows, N, heads.qk_dim[h], 1.f, q, ld, k, ld, 0.f, scores.data(), N);
          softmax_rows(scores.data(), rows, N, scale);
          sgemm(false, false, rows, heads.v_dim[h], N, 1.f, scores.data(), N, v, ld, 0.f, o, ldo);
        }
  }
}

}  // namespace vs::kernels
