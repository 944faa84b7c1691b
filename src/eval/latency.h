// Latency and memory of a model's forward pass on random input of a given batch size.
#pragma once
#include <cstdint>

#include "models/vit.h"

namespace vs::eval {

struct Latency {
  int64_t batch = 1, iters = 0;
  int threads = 0;
  double median_ms = 0, p90_ms = 0, mean_ms = 0, images_per_s = 0;
  int64_t peak_rss_bytes = 0;
};

// Runs `warmup` untimed passes, then timed ones until both `min_iters` and `min_seconds` are met.
Latency measure_latency(const models::ViT& model, int64_t batch, int min_iters = 20,
                        double min_seconds = 2.0, int warmup = 3);

int64_t peak_rss_bytes();  // of this process so far (getrusage)

}  // namespace vs::eval
