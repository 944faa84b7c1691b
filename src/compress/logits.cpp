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

}  // namespace vs::compress
