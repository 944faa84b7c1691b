// Latency of a SAM model's image encoder (one 1024x1024 image), for bench/bench_sam_vs_ort.sh.
// Usage: bench_sam_encoder MODEL_DIR THREADS ITERS  -> one JSON line {"threads", "ms": [...]}
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "core/error.h"
#include "core/threading.h"
#include "models/sam.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: bench_sam_encoder MODEL_DIR THREADS ITERS\n");
    return 2;
  }
  try {
    vs::set_num_threads(std::atoi(argv[2]));
    const int iters = std::atoi(argv[3]);
    vs::models::SamModel m = vs::models::SamModel::load(argv[1]);
    const int64_t S = m.encoder.cfg.img_size;
    vs::Tensor x({3, S, S});
    for (int64_t i = 0; i < x.numel(); ++i) x.f32()[i] = std::sin(float(i));  // same input as ort_sam.js bench
    for (int i = 0; i < 2; ++i) m.encoder.forward(x);  // warm-up (primitive creation, weight packing)
    std::printf("{\"vitshrink\": \"fp32\", \"threads\": %d, \"ms\": [", vs::num_threads());
    for (int i = 0; i < iters; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      m.encoder.forward(x);
      double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      std::printf("%s%.3f", i ? ", " : "", ms);
    }
    std::printf("]}\n");
  } catch (const vs::Error& e) {
    std::fprintf(stderr, "bench_sam_encoder: %s\n", e.what());
    return 1;
  }
  return 0;
}
