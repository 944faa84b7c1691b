#include "compress/lowrank/sensitivity.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "compress/logits.h"
#include "core/progress.h"

namespace vs::compress {
namespace {

// Swaps a layer in for its lifetime.
struct Swapped {
  std::unique_ptr<nn::Linear>* slot;
  std::unique_ptr<nn::Linear>& other;
  Swapped(std::unique_ptr<nn::Linear>* s, std::unique_ptr<nn::Linear>& o) : slot(s), other(o) { slot->swap(other); }
  ~Swapped() { slot->swap(other); }
};

}  // namespace

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
