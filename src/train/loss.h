// Distillation losses; each returns the loss and writes its gradient with respect to the student.
#pragma once
#include "core/tensor.h"

namespace vs::train {

// Hinton's KD: T^2 * KL(softmax(teacher / T) || softmax(student / T)), averaged over rows.
// grad (same shape as student) = T * (softmax(student / T) - softmax(teacher / T)) / rows.
double kd_loss(const Tensor& student, const Tensor& teacher, float T, Tensor& grad);

// mean((student - target)^2) over all elements; grad = 2 (student - target) / n, scaled by
// `weight` (as is the returned loss). row_weight (optional, numel / last-dim entries): row i's
// squared errors (rows: the last dimension) multiplied by row_weight[i].
double mse_loss(const Tensor& student, const Tensor& target, float weight, Tensor& grad,
                const float* row_weight = nullptr);

}  // namespace vs::train
