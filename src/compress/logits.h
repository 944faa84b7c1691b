// Comparing a compressed model's logits with the original model's: the loss the calibration
// searches (mixed precision, low-rank sensitivities) minimise.
#pragma once
#include "core/tensor.h"

namespace vs::compress {

// Mean over rows of KL(softmax(ref) || softmax(logits)), logits [B, C] (float64 arithmetic).
double mean_kl(const Tensor& ref, const Tensor& logits);

}  // namespace vs::compress
