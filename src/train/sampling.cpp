#include "train/sampling.h"

#include <numeric>

namespace vs::train {

std::mt19937_64 rng_for(uint64_t seed, uint64_t what, uint64_t step) {
  std::seed_seq seq{uint32_t(seed), uint32_t(seed >> 32), uint32_t(what), uint32_t(step), uint32_t(step >> 32)};
  return std::mt19937_64(seq);
}

std::vector<size_t> batch_indices(uint64_t seed, int64_t step, int64_t batch, size_t n) {
  std::vector<size_t> out;
  int64_t cached_epoch = -1;
  std::vector<size_t> perm(n);
  for (int64_t k = step * batch; k < (step + 1) * batch; ++k) {
    const int64_t epoch = k / int64_t(n);
    if (epoch != cached_epoch) {
      std::iota(perm.begin(), perm.end(), size_t(0));
      auto rng = rng_for(seed, 1, uint64_t(epoch));
      for (size_t i = n; i > 1; --i) std::swap(perm[i - 1], perm[rng() % i]);  // Fisher-Yates
      cached_epoch = epoch;
    }
    out.push_back(perm[size_t(k % int64_t(n))]);
  }
  return out;
}

}  // namespace vs::train
