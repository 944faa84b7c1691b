// Bit packing of signed codes (layout in pack.h).
#include "kernels/pack.h"

#include <string>

#include "core/error.h"

namespace vs::quant {

std::vector<uint8_t> pack_bits(const int8_t* q, int64_t n, int bits) {
  check(n >= 0, "pack_bits: negative element count");
  check(bits >= 2 && bits <= 8, "pack_bits: width must be 2..8 bits");
  const int lo = -(1 << (bits - 1)), hi = (1 << (bits - 1)) - 1;
  bool ok = true;
  for (int64_t i = 0; i < n; ++i) ok &= q[i] >= lo && q[i] <= hi;
  check(ok, "pack_bits: value outside the signed " + std::to_string(bits) + "-bit range");
  std::vector<uint8_t> out(size_t(packed_bytes(n, bits)), 0);
  const uint32_t mask = (1u << bits) - 1;
  for (int64_t i = 0; i < n; ++i) {  // a value spans at most two bytes (bits <= 8)
    const int64_t bit = i * bits;
    const uint32_t v = (uint32_t(uint8_t(q[i])) & mask) << (bit % 8);
    out[size_t(bit / 8)] |= uint8_t(v);
    if (v >> 8) out[size_t(bit / 8 + 1)] |= uint8_t(v >> 8);
  }
  return out;
}

void unpack_bits(const uint8_t* p, int64_t n, int bits, int8_t* q) {
  check(n >= 0, "unpack_bits: negative element count");
  check(bits >= 2 && bits <= 8, "unpack_bits: width must be 2..8 bits");
  const int64_t nbytes = packed_bytes(n, bits);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t bit = i * bits, byte = bit / 8;
    uint32_t v = p[byte];
    if (byte + 1 < nbytes) v |= uint32_t(p[byte + 1]) << 8;
    // Move the value's top bit to bit 31, then arithmetic-shift back to sign-extend it.
    q[i] = int8_t(int32_t(v << (32 - bits - bit % 8)) >> (32 - bits));
  }
}

}  // namespace vs::quant
