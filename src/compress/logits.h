// Comparing a compressed model's logits with the original model's: the loss the calibration
// searches (mixed precision, low-rank sensitivities) minimise.
#pragma once
#include <vector>

#include "core/tensor.h"

namespace vs::compress {

// Mean over rows of KL(softmax(ref) || softmax(logits)), logits [B, C] (float64 arithmetic).
double mean_kl(const Tensor& ref, const Tensor& logits);

// The same KL for each row separately (e.g. to compare two models image by image).
std::vector<double> row_kl(const Tensor& ref, const Tensor& logits);

// Two models' per-image losses on the same images: the mean of b - a and its standard error.
// Paired, so the images' own difficulty (shared by both) cancels; a difference within ~2 SE is
// what two draws of noise give.
struct PairedDifference {
  double mean = 0, se = 0;
  double z() const { return se > 0 ? mean / se : 0.0; }
};
PairedDifference paired_difference(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace vs::compress
