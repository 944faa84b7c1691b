// 4-bit packing (layout in pack.h). Signed and unsigned codes share the byte layout; they differ
// only in the range check and in sign extension on unpack.
#include "kernels/pack.h"

#include <string>

#include "core/error.h"

namespace vs::quant {

namespace {

// Packs the low nibbles of n bytes (already range-checked), low nibble first.
std::vector<uint8_t> pack_nibbles(const uint8_t* v, int64_t n) {
  std::vector<uint8_t> out(size_t(int4_bytes(n)));
  int64_t pairs = n / 2;
  for (int64_t i = 0; i < pairs; ++i)
    out[i] = uint8_t((v[2 * i] & 0x0f) | ((v[2 * i + 1] & 0x0f) << 4));
  if (n % 2) out[pairs] = uint8_t(v[n - 1] & 0x0f);
  return out;
}

}  // namespace

std::vector<uint8_t> pack_int4(const int8_t* q, int64_t n) {
  check(n >= 0, "pack_int4: negative element count");
  bool ok = true;
  for (int64_t i = 0; i < n; ++i) ok &= q[i] >= -8 && q[i] <= 7;
  check(ok, "pack_int4: value outside the signed 4-bit range [-8, 7]");
  return pack_nibbles(reinterpret_cast<const uint8_t*>(q), n);
}

void unpack_int4(const uint8_t* p, int64_t n, int8_t* q) {
  check(n >= 0, "unpack_int4: negative element count");
  // Shift the nibble to the top of the byte, then arithmetic-shift back to sign-extend it.
  for (int64_t i = 0; i < n / 2; ++i) {
    q[2 * i] = int8_t(int8_t(p[i] << 4) >> 4);
    q[2 * i + 1] = int8_t(int8_t(p[i]) >> 4);
  }
  if (n % 2) q[n - 1] = int8_t(int8_t(p[n / 2] << 4) >> 4);
}

std::vector<uint8_t> pack_uint4(const uint8_t* q, int64_t n) {
  check(n >= 0, "pack_uint4: negative element count");
  bool ok = true;
  for (int64_t i = 0; i < n; ++i) ok &= q[i] <= 15;
  check(ok, "pack_uint4: value outside the unsigned 4-bit range [0, 15]");
  return pack_nibbles(q, n);
}

void unpack_uint4(const uint8_t* p, int64_t n, uint8_t* q) {
  check(n >= 0, "unpack_uint4: negative element count");
  for (int64_t i = 0; i < n / 2; ++i) {
    q[2 * i] = p[i] & 0x0f;
    q[2 * i + 1] = p[i] >> 4;
  }
  if (n % 2) q[n - 1] = p[n / 2] & 0x0f;
}

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
