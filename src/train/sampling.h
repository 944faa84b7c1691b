// Reproducible random draws for training loops: every draw of step s derives from (seed, stream,
// s) alone, so a run can stop and resume anywhere and get the same numbers.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

namespace vs::train {

// A generator for step `step` of stream `what`, from the seed alone (no carried state).
std::mt19937_64 rng_for(uint64_t seed, uint64_t what, uint64_t step);

// The indices (into n items) of batch `step`: consecutive slices of per-epoch shuffles
// (stream 1 of the seed).
std::vector<size_t> batch_indices(uint64_t seed, int64_t step, int64_t batch, size_t n);

}  // namespace vs::train
