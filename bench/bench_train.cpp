// Training-step throughput of vitshrink's engine: forward + backward + clip + AdamW update on
// random images against fixed random teacher logits (KD loss, T = 1), the same step that
// bench/bench_train_vs_pytorch.py times in PyTorch. Prints one JSON line.
//   bench_train MODEL [--batch 32] [--iters 5] [--warmup 2] [--threads 2]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/threading.h"
#include "models/load.h"
#include "train/loss.h"
#include "train/optim.h"
#include "train/vit.h"

using namespace vs;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_train MODEL [--batch B] [--iters N] [--warmup W] [--threads T]\n");
    return 2;
  }
  std::string model = argv[1];
  int batch = 32, iters = 5, warmup = 2, threads = 2;
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    int v = std::atoi(argv[i + 1]);
    if (k == "--batch") batch = v;
    else if (k == "--iters") iters = v;
    else if (k == "--warmup") warmup = v;
    else if (k == "--threads") threads = v;
    else {
      std::fprintf(stderr, "bench_train: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  try {
    set_num_threads(threads);
    auto m = models::load_model(model);
    train::TrainViT net(m);
    auto params = net.params();
    train::AdamW opt(params, {});
    Tensor x({batch, m.cfg.in_chans, m.cfg.img_size, m.cfg.img_size}), target({batch, m.cfg.num_classes});
    uint32_t s = 1;
    auto rnd = [&] { s = s * 1664525u + 1013904223u; return float(int32_t(s >> 8) - (1 << 23)) / float(1 << 23); };
    for (int64_t i = 0; i < x.numel(); ++i) x.f32()[i] = rnd();
    for (int64_t i = 0; i < target.numel(); ++i) target.f32()[i] = 3.f * rnd();
    std::vector<double> ms;
    double loss = 0;
    for (int it = 0; it < warmup + iters; ++it) {
      auto t0 = std::chrono::steady_clock::now();
      Tensor logits = net.forward(x), g;
      loss = train::kd_loss(logits, target, 1.f, g);
      net.backward(g);
      train::clip_grad_norm(params, 1.0);
      opt.step(1e-4);
      double dt = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      if (it >= warmup) ms.push_back(dt);
    }
    std::sort(ms.begin(), ms.end());
    const double med = ms[ms.size() / 2];
    std::printf("{\"engine\": \"vitshrink\", \"batch\": %d, \"threads\": %d, \"iters\": %d, \"median_ms\": %.1f, "
                "\"min_ms\": %.1f, \"max_ms\": %.1f, \"images_per_s\": %.2f, \"last_loss\": %.5f}\n",
                batch, threads, iters, med, ms.front(), ms.back(), batch * 1000.0 / med, loss);
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_train: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
