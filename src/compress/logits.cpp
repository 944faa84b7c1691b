#include "compress/logits.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"

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

// Adds KL(softmax(ref row) || softmax(logits row)) to acc term by term (mean_kl accumulates all
// rows in one sum, and the searches' decisions depend on its last bits).
void add_row_kl(const float* ref, const float* logits, int64_t C, double& acc) {
  auto p = log_softmax(ref, C), q = log_softmax(logits, C);
  for (int64_t c = 0; c < C; ++c) acc += std::exp(p[size_t(c)]) * (p[size_t(c)] - q[size_t(c)]);
}

}  // namespace

std::vector<double> row_kl(const Tensor& ref, const Tensor& logits) {
  check(ref.shape() == logits.shape() && ref.ndim() == 2, "row_kl: logits of different shapes");
  const int64_t B = ref.dim(0), C = ref.dim(1);
  std::vector<double> out(static_cast<size_t>(B), 0.0);
  for (int64_t b = 0; b < B; ++b) add_row_kl(ref.f32() + b * C, logits.f32() + b * C, C, out[size_t(b)]);
  return out;
}

double mean_kl(const Tensor& ref, const Tensor& logits) {
  check(ref.shape() == logits.shape() && ref.ndim() == 2, "mean_kl: logits of different shapes");
  const int64_t B = ref.dim(0), C = ref.dim(1);
  double total = 0;
  for (int64_t b = 0; b < B; ++b) add_row_kl(ref.f32() + b * C, logits.f32() + b * C, C, total);
  return total / double(std::max<int64_t>(B, 1));
}

PairedDifference paired_difference(const std::vector<double>& a, const std::vector<double>& b) {
  check(a.size() == b.size() && !a.empty(), "paired_difference: two equally long, non-empty lists needed");
  const double n = double(a.size());
  double mean = 0;
  for (size_t i = 0; i < a.size(); ++i) mean += b[i] - a[i];
  mean /= n;
  double ss = 0;
  for (size_t i = 0; i < a.size(); ++i) ss += (b[i] - a[i] - mean) * (b[i] - a[i] - mean);
  return {mean, a.size() > 1 ? std::sqrt(ss / (n - 1) / n) : 0.0};
}

}  // namespace vs::compress
