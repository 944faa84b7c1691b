// How much the model's output moves when one Linear layer is swapped for an approximation: the
// greedy rank allocation's per-layer error proxy (output error of the layer alone) says nothing
// about how much the logits care about that layer, so it is calibrated by measuring, once per
// layer, the KL divergence of the model's output from FP32 with only that layer replaced.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "compress/logits.h"
#include "core/tensor.h"
#include "models/vit.h"
#include "nn/linear.h"

namespace vs::compress {

struct LayerSwap {
  std::unique_ptr<nn::Linear>* slot;
  std::unique_ptr<nn::Linear> replacement;
};

// For each swap, in turn: puts `replacement` into `slot`, runs `images` through the model, puts
// the original back (also on an exception), and records mean_kl(ref, swapped logits); ref: the
// unswapped model's logits on `images`.
std::vector<double> swap_kl(const models::ViT& model, const Tensor& images, const Tensor& ref,
                            std::vector<LayerSwap>& swaps, bool progress);
// The same with every swap in place at once: one KL for the whole set.
double joint_swap_kl(const models::ViT& model, const Tensor& images, const Tensor& ref, std::vector<LayerSwap>& swaps);

}  // namespace vs::compress
