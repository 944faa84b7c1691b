#include "train/loss.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"

namespace vs::train {

// log-softmax of one row at temperature T, in double
static void log_softmax(const float* x, int64_t n, float T, std::vector<double>& out) {
  double mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, double(x[i]) / T);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(double(x[i]) / T - mx);
  const double lse = mx + std::log(sum);
  for (int64_t i = 0; i < n; ++i) out[size_t(i)] = double(x[i]) / T - lse;
}

double kd_loss(const Tensor& student, const Tensor& teacher, float T, Tensor& grad) {
  check(student.shape() == teacher.shape() && student.ndim() == 2, "kd_loss: student and teacher logits differ in shape");
  const int64_t R = student.dim(0), K = student.dim(1);
  grad = Tensor::empty(student.shape());
  std::vector<double> ls(static_cast<size_t>(K)), lt(static_cast<size_t>(K));
  double total = 0;
  for (int64_t r = 0; r < R; ++r) {
    log_softmax(student.f32() + r * K, K, T, ls);
    log_softmax(teacher.f32() + r * K, K, T, lt);
    for (int64_t k = 0; k < K; ++k) {
      const double pt = std::exp(lt[size_t(k)]), ps = std::exp(ls[size_t(k)]);
      total += pt * (lt[size_t(k)] - ls[size_t(k)]);
      grad.f32()[r * K + k] = float(double(T) * (ps - pt) / double(R));
    }
  }
  return double(T) * T * total / double(R);
}

double mse_loss(const Tensor& student, const Tensor& target, float weight, Tensor& grad, const float* row_weight) {
  check(student.shape() == target.shape() && (!row_weight || student.ndim() >= 1), "mse_loss: shapes differ");
  const int64_t n = student.numel(), C = row_weight ? student.dim(student.ndim() - 1) : 1;
  grad = Tensor::empty(student.shape());
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double w = row_weight ? double(row_weight[i / C]) : 1.0, d = double(student.f32()[i]) - target.f32()[i];
    total += w * d * d;
    grad.f32()[i] = float(2.0 * weight * w * d / double(n));
  }
  return weight * total / double(n);
}

}  // namespace vs::train
