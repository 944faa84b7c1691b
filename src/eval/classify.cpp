#include "eval/classify.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fmt/format.h>

#include "compress/logits.h"
#include "core/error.h"
#include "core/progress.h"

namespace vs::eval {

std::vector<std::pair<int, float>> topk(const float* row, int n, int k) {
  std::vector<int> idx(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) idx[size_t(i)] = i;
  k = std::min(k, n);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int a, int b) {
    return row[a] > row[b] || (row[a] == row[b] && a < b);
  });
  std::vector<std::pair<int, float>> out;
  for (int i = 0; i < k; ++i) out.emplace_back(idx[size_t(i)], row[idx[size_t(i)]]);
  return out;
}

Accuracy evaluate(const models::ViT& model, const std::vector<Sample>& samples, int batch,
                  bool progress, const models::ViT* reference) {
  check(batch > 0, "batch size must be positive");
  check(!reference || (reference->cfg.num_classes == model.cfg.num_classes && reference->cfg.pre == model.cfg.pre),
        "the reference model has other classes or another input preprocessing than the model");
  auto t0 = std::chrono::steady_clock::now();
  Progress bar("eval", int64_t(samples.size()));
  Accuracy a;
  int64_t c1 = 0, c5 = 0, agree = 0;
  double kl_sum = 0, ref_seconds = 0;
  const int K = int(model.cfg.num_classes);
  for (size_t s = 0; s < samples.size(); s += size_t(batch)) {
    size_t e = std::min(samples.size(), s + size_t(batch));
    std::vector<std::string> paths;
    for (size_t i = s; i < e; ++i) {
      check(samples[i].label < K, samples[i].path + ": label " + std::to_string(samples[i].label) +
                                      " is outside the model's " + std::to_string(K) + " classes");
      paths.push_back(samples[i].path);
    }
    const Tensor images = load_batch(paths, model.cfg.pre);
    Tensor logits = model.forward(images);
    std::vector<int> pred;  // top-1 class of each image
    for (size_t i = s; i < e; ++i) {
      auto top = topk(logits.f32() + (i - s) * size_t(K), K, 5);
      pred.push_back(top[0].first);
      const bool right = top[0].first == samples[i].label;
      c1 += right;
      a.image_top1.push_back(right);
      for (auto& [c, v] : top) c5 += c == samples[i].label;
    }
    if (reference) {
      const auto r0 = std::chrono::steady_clock::now();
      const Tensor ref = reference->forward(images);
      ref_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - r0).count();
      for (double kl : compress::row_kl(ref, logits)) {
        a.image_kl.push_back(kl);
        kl_sum += kl;
      }
      for (size_t i = s; i < e; ++i) agree += topk(ref.f32() + (i - s) * size_t(K), K, 1)[0].first == pred[i - s];
    }
    if (progress)
      bar.update(int64_t(e), fmt::format("top1 {:.2f}%", 100.0 * double(c1) / double(e)));
  }
  bar.finish();
  a.images = int64_t(samples.size());
  a.top1 = 100.0 * double(c1) / double(a.images);
  a.top5 = 100.0 * double(c5) / double(a.images);
  a.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() - ref_seconds;
  if (reference) {
    a.has_reference = true;
    a.kl = kl_sum / double(std::max<int64_t>(a.images, 1));
    a.agreement = 100.0 * double(agree) / double(std::max<int64_t>(a.images, 1));
  }
  return a;
}

}  // namespace vs::eval
