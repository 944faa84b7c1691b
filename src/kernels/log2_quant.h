// The log2 quantizer's codes, at kernel level (the definition is in compress/quant/quantizer.h):
//   c = clamp(round(-tau * log2(x / s)), 0, 2^b - 1), the largest code standing for 0.
// For r = x / s = m * 2^e with m in [1, 2): round(-tau * log2 r) = -tau * e - #{k : m > 2^((k + 1/2) / tau)},
// so comparing the mantissa with tau precomputed thresholds gives the code exactly (no log, no
// ties) and vectorises. Used by the quantizer library and by quantised attention at run time.
#pragma once
#include <cstdint>

namespace vs::kernels {

struct Log2Grid {
  int tau = 1, bits = 4;
  float scale = 1.f;
  int32_t cmax = 15;
  float thr[4] = {};  // smallest float above 2^((k + 1/2) / tau), k = 0..tau-1
};
// Validates nothing: callers check tau in {1, 2, 4}, bits in 2..8, scale > 0.
Log2Grid make_log2_grid(float scale, int tau, int bits);

// codes[i] for x[i]; zero, negatives, NaN and values below FLT_MIN relative to s take cmax.
void log2_codes(const float* x, uint8_t* codes, int64_t n, const Log2Grid& g);
// The same on the calling thread (for fused row passes).
void log2_codes_row(const float* x, uint8_t* codes, int64_t n, const Log2Grid& g);

// Integer execution of a product with log2-coded probabilities: 2^(-c / tau) in 16-bit fixed
// point, table[c] = round(2^(15 - c / tau)) (table[cmax] = 0), so P.v = s * 2^-15 * sum table[c] v.
// Exact for tau = 1 and c <= 15; otherwise within 2^-16 of the level (relative to s). The
// simulated path uses the same table, so both agree bit for bit.
void log2_fixed_table(const Log2Grid& g, uint16_t* table);  // table[cmax + 1]

}  // namespace vs::kernels
