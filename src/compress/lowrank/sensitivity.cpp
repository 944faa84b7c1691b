#include "compress/lowrank/sensitivity.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/progress.h"

namespace vs::compress {
namespace {

// log softmax of one row, in float64.
std::vector<double> log_softmax(const float* x, int64_t n) {
  const double mx = *std::max_element(x, x + n);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(double(x[i]) - mx);
  const double lse = mx + std::log(sum);
  std::vector<double> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[size_t(i)] = double(x[i]) - lse;
  return out;
}

// Swaps a layer in for its lifetime.
struct Swapped {
  std::unique_ptr<nn::Linear>* slot;
  std::unique_ptr<nn::Linear>& other;
  Swapped(std::unique_ptr<nn::Linear>* s, std::unique_ptr<nn::Linear>& o) : slot(s), other(o) { slot->swap(other); }
  ~Swapped() { slot->swap(other); }
};

}  // namespace

double mean_kl(const Tensor& ref, const Tensor& logits) {
  check(ref.shape() == logits.shape() && ref.ndim() == 2, "mean_kl: logits of different shapes");
  const int64_t B = ref.dim(0), C = ref.dim(1);
  double total = 0;
  for (int64_t b = 0; b < B; ++b) {
    auto p = log_softmax(ref.f32() + b * C, C), q = log_softmax(logits.f32() + b * C, C);
    for (int64_t c = 0; c < C; ++c) total += std::exp(p[size_t(c)]) * (p[size_t(c)] - q[size_t(c)]);
  }
  return total / double(std::max<int64_t>(B, 1));
}

std::vector<double> swap_kl(const models::ViT& model, const Tensor& images, const Tensor& ref,
                            std::vector<LayerSwap>& swaps, bool progress) {
  std::vector<double> kl;
  Progress bar("sensitivity", int64_t(swaps.size()));
  for (auto& s : swaps) {
    Swapped on(s.slot, s.replacement);
    kl.push_back(mean_kl(ref, model.forward(images)));
    if (progress) bar.update(int64_t(kl.size()));
  }
  bar.finish();
  return kl;
}

double joint_swap_kl(const models::ViT& model, const Tensor& images, const Tensor& ref, std::vector<LayerSwap>& swaps) {
  std::vector<std::unique_ptr<Swapped>> on;  // all put back when this returns or throws
  for (auto& s : swaps) on.push_back(std::make_unique<Swapped>(s.slot, s.replacement));
  return mean_kl(ref, model.forward(images));
}

}  // namespace vs::compress
