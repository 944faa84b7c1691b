#include "eval/latency.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <vector>

#include "core/threading.h"

namespace vs::eval {

int64_t peak_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return int64_t(u.ru_maxrss) * 1024;
}

Latency measure_latency(const models::ViT& model, int64_t batch, int min_iters,
                        double min_seconds, int warmup) {
  const int64_t S = model.cfg.img_size;
  Tensor x({batch, model.cfg.in_chans, S, S});
  std::mt19937 rng(0);
  std::normal_distribution<float> nd;
  for (int64_t i = 0; i < x.numel(); ++i) x.f32()[i] = nd(rng);
  for (int i = 0; i < warmup; ++i) model.forward(x);
  std::vector<double> ms;
  auto start = std::chrono::steady_clock::now();
  while (int(ms.size()) < min_iters ||
         std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < min_seconds) {
    auto t0 = std::chrono::steady_clock::now();
    model.forward(x);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    if (ms.size() >= 10000) break;
  }
  std::vector<double> sorted = ms;
  std::sort(sorted.begin(), sorted.end());
  Latency r;
  r.batch = batch;
  r.iters = int64_t(ms.size());
  r.threads = num_threads();
  r.median_ms = sorted[sorted.size() / 2];
  r.p90_ms = sorted[std::min(sorted.size() - 1, sorted.size() * 9 / 10)];
  double sum = 0;
  for (double v : ms) sum += v;
  r.mean_ms = sum / double(ms.size());
  r.images_per_s = double(batch) * 1000.0 / r.median_ms;
  r.peak_rss_bytes = peak_rss_bytes();
  return r;
}

}  // namespace vs::eval
