// Quantizers: the exact definitions every other part of vitshrink (calibration, simulated and
// integer execution, saved models) relies on.
//
// Uniform, bits b in 2..8 (16 = "off", the value passes through unchanged):
//   symmetric : q = clamp(round_half_even(x / s), -(2^(b-1) - 1), 2^(b-1) - 1),   x^ = q * s
//               (narrow signed range, zero point 0; s = absmax / (2^(b-1) - 1))
//   asymmetric: q = clamp(round_half_even(x / s) + z, 0, 2^b - 1),                x^ = (q - z) * s
//               (s = (max - min) / (2^b - 1), z = clamp(round(-min / s), 0, 2^b - 1); the range
//               is first widened to include 0 so that 0 is exactly representable)
// All arithmetic is float32: x / s is a true division (not a multiply by 1/s) and
// round_half_even is std::nearbyint under the default rounding mode, so every implementation
// (simulated or integer) can reproduce the codes bit for bit. The zero point uses the same
// rounding.
// Granularity: per tensor (one s, z), per output channel (one per row of a [out, in] weight),
// per group (one per `group` consecutive inputs of each row), per token (one per row of an
// activation [tokens, features], computed at run time).
//
// Log2 (attention probabilities, x in [0, 1]), base 2^(1/tau):
//   code c = clamp(round(-tau * log2(x / s)), 0, 2^b - 1),  x^ = s * 2^(-c / tau);
//   the largest code (2^b - 1) is reserved for 0 (x^ = 0), so very small x round to 0.
//   x^ is float(double(s) * exp2(-double(c) / tau)); x <= 0 and x / s below FLT_MIN (subnormal,
//   reachable only by 8-bit codes with tau <= 2) get the largest code (0). The code
//   is exact for the real-valued definition above (the thresholds 2^(-(c + 1/2) / tau) are
//   irrational, so there are no ties).
//
// Parameters are validated (bits in 2..8 or 16, group > 0 dividing cols, one scale and zero per
// unit, scales positive and finite, zeros in [0, 2^b - 1]); a violation throws vs::Error.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace vs::quant {

enum class Granularity { tensor, channel, group, token };

struct QParams {
  int bits = 8;
  bool symmetric = true;
  Granularity gran = Granularity::tensor;
  int group = 0;                // inputs per group (Granularity::group)
  std::vector<float> scale;     // one per tensor / channel / (row, group) in row-major order
  std::vector<int32_t> zero;    // same count; all 0 when symmetric

  int32_t qmin() const { return symmetric ? -((1 << (bits - 1)) - 1) : 0; }
  int32_t qmax() const { return symmetric ? (1 << (bits - 1)) - 1 : (1 << bits) - 1; }
  bool off() const { return bits >= 16; }
};

// Throws vs::Error unless bits is 2..8 or 16.
void check_bits(int bits);

// Number of (scale, zero) pairs a [rows, cols] tensor needs: 1 (tensor), rows (channel, token),
// rows * cols / group (group). Validates group for Granularity::group.
int64_t scale_count(Granularity g, int64_t rows, int64_t cols, int group);

// Scale and zero point for one range [lo, hi] (lo <= hi). A zero-width range gets scale 1 so
// that dequantisation stays finite. bits 16 gives scale 1, zero 0.
// [min, max] of n values ([0, 0] when n == 0).
void value_range(const float* x, int64_t n, float& lo, float& hi);

void range_to_qparams(float lo, float hi, int bits, bool symmetric, float& scale, int32_t& zero);

// Quantise / dequantise a [rows, cols] tensor with its QParams (tensor, channel = row, group).
// Granularity::token here takes one (scale, zero) per row from p (see token_qparams); only
// fake_quantize derives them on the fly. Not defined for bits 16 (throws).
void quantize(const float* x, int64_t rows, int64_t cols, const QParams& p, int8_t* q_signed,
              uint8_t* q_unsigned);  // exactly one output non-null (signed iff symmetric)
// The inverse map x^ = (q - z) * s; bit-identical to fake_quantize of the original x.
void dequantize(const int8_t* q_signed, const uint8_t* q_unsigned, int64_t rows, int64_t cols,
                const QParams& p, float* y);
// y = dequantize(quantize(x)); y may alias x. For Granularity::token the scales in p are ignored:
// each row uses range_to_qparams(min(row), max(row)) computed at call time (dynamic per token).
void fake_quantize(const float* x, float* y, int64_t rows, int64_t cols, const QParams& p);

// The per-row params fake_quantize uses for Granularity::token, for callers that need the codes.
QParams token_qparams(const float* x, int64_t rows, int64_t cols, int bits, bool symmetric);

struct Log2Params {
  int bits = 4;
  int tau = 1;      // base 2^(1/tau), tau in {1, 2, 4}
  float scale = 1;  // s: the largest representable value
};
// y may alias x. bits 16 = off (copy). Validates bits, tau and scale > 0.
void fake_quantize_log2(const float* x, float* y, int64_t n, const Log2Params& p);
// The codes alone (uint8, 0..2^b - 1), for integer storage of probabilities.
void quantize_log2(const float* x, uint8_t* codes, int64_t n, const Log2Params& p);

}  // namespace vs::quant
