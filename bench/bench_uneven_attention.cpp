// Cost of the uneven-head attention path (after structured pruning heads have different q/k and
// v widths, and kernels::attention_f32 runs one product per head instead of one batched product
// over all heads). Times the float attention core on random q/k/v for ViT-Ti's layout (3 heads of
// 64, uniform path) against the same totals split unevenly (63/64/65 q/k, 65/64/63 v: same MACs,
// per-head path), and, to separate the path from the odd widths, the uniform layout forced through
// the per-head path (kernels::mha_quant one head at a time with every point float, which is what
// attention_f32 does for uneven heads). The three run interleaved so that load from other
// processes hits them alike. Prints one JSON line per batch size: median ms of each.
//   bench_uneven_attention [--tokens 197] [--iters 50] [--threads 2]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "core/threading.h"
#include "kernels/attention.h"
#include "kernels/mha_quant.h"

using namespace vs;

int main(int argc, char** argv) {
  int tokens = 197, iters = 50, threads = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    int v = std::atoi(argv[i + 1]);
    if (k == "--tokens") tokens = v;
    else if (k == "--iters") iters = v;
    else if (k == "--threads") threads = v;
    else {
      std::fprintf(stderr, "bench_uneven_attention: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  set_num_threads(threads);
  const kernels::HeadLayout uniform{{64, 64, 64}, {64, 64, 64}}, uneven{{63, 64, 65}, {65, 64, 63}};
  const float scale = 0.125f;
  for (int64_t B : {1, 8}) {
    const int64_t N = tokens, W = uniform.qkv_width();
    Tensor qkv({B, N, W}), out({B, N, uniform.v_total()});
    uint32_t s = 1;
    for (int64_t i = 0; i < qkv.numel(); ++i) {
      s = s * 1664525u + 1013904223u;
      qkv.f32()[i] = float(int32_t(s >> 8) - (1 << 23)) / float(1 << 23);
    }
    std::vector<double> ms[3];  // uniform (batched path), uniform per head, uneven (per head)
    for (int it = 0; it < iters + 3; ++it)
      for (int u = 0; u < 3; ++u) {
        auto t0 = std::chrono::steady_clock::now();
        if (u == 1)  // the per-head loop attention_quant runs for uneven heads, on the uniform layout
          for (int64_t h = 0; h < 3; ++h) {
            const kernels::MhaShape one{B, N, N, 1, 64, 64, W, W, W, uniform.v_total()};
            kernels::mha_quant(qkv.f32() + h * 64, qkv.f32() + 192 + h * 64, qkv.f32() + 384 + h * 64,
                               out.f32() + h * 64, one, scale, nullptr, kernels::AttnQuant{},
                               kernels::IntEngine::onednn);
          }
        else
          kernels::attention_f32(qkv.f32(), out.f32(), B, N, u ? uneven : uniform, scale);
        double dt = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        if (it >= 3) ms[u].push_back(dt);  // 3 warm-up rounds
      }
    double med[3];
    for (int u = 0; u < 3; ++u) {
      std::sort(ms[u].begin(), ms[u].end());
      med[u] = ms[u][ms[u].size() / 2];
    }
    std::printf("{\"batch\": %lld, \"tokens\": %d, \"threads\": %d, \"iters\": %d, \"uniform_ms\": %.3f, "
                "\"uniform_per_head_ms\": %.3f, \"uneven_ms\": %.3f, \"uneven_over_uniform\": %.3f}\n",
                (long long)B, tokens, threads, iters, med[0], med[1], med[2], med[2] / med[0]);
  }
  return 0;
}
