// Distillation losses; each returns the loss and writes its gradient with respect to the student.
#pragma once
#include "core/tensor.h"

namespace vs::train {

// Hinton's KD: T^2 * KL(softmax(teacher / T) || softmax(student / T)), averaged over rows.
// grad (same shape as student) = T * (softmax(student / T) - softmax(teacher / T)) / rows.
double kd_loss(const Tensor& student, const Tensor& teacher, float T, Tensor& grad);

// mean((student - target)^2) over all elements; grad = 2 (student - target) / n, scaled by
// `weight` (as is the returned loss).
double mse_loss(const Tensor& student, const Tensor& target, float weight, Tensor& grad);

// The same with row i's squared errors multiplied by row_weight[i] (rows: the last dimension;
// row_weight has numel / last-dim entries): mean(row_weight[i] * (student - target)^2).
double weighted_mse_loss(const Tensor& student, const Tensor& target, const float* row_weight, Tensor& grad);

}  // namespace vs::train
