// Sub-byte storage of integer codes. 4-bit codes go two per byte, element 2i in the low nibble and 2i + 1 in the high nibble (an odd count leaves the last
// high nibble 0). Signed codes are two's-complement nibbles in [-8, 7]; unsigned ones (asymmetric
// quantisation) plain nibbles in [0, 15].
#pragma once
#include <cstdint>
#include <vector>

namespace vs::quant {

// Bytes needed for n 4-bit values.
inline int64_t int4_bytes(int64_t n) { return (n + 1) / 2; }

// Throws vs::Error if a value lies outside the nibble's range or n < 0.
std::vector<uint8_t> pack_int4(const int8_t* q, int64_t n);
void unpack_int4(const uint8_t* p, int64_t n, int8_t* q);  // p holds int4_bytes(n) bytes

std::vector<uint8_t> pack_uint4(const uint8_t* q, int64_t n);
void unpack_uint4(const uint8_t* p, int64_t n, uint8_t* q);

// Signed codes of any width 2..8 as one little-endian bit stream: value i (two's complement,
// `bits` wide) occupies stream bits [i * bits, (i + 1) * bits), stream bit j being bit j % 8 of
// byte j / 8; unused high bits of the last byte are 0. At 4 bits this is exactly pack_int4's
// layout. Used for weight codes on disk (a 5-bit model's file holds 5 bits per weight).
inline int64_t packed_bytes(int64_t n, int bits) { return (n * bits + 7) / 8; }
// Throws vs::Error if bits is outside 2..8, a value lies outside [-2^(bits-1), 2^(bits-1) - 1] or n < 0.
std::vector<uint8_t> pack_bits(const int8_t* q, int64_t n, int bits);
void unpack_bits(const uint8_t* p, int64_t n, int bits, int8_t* q);  // p holds packed_bytes(n, bits) bytes

}  // namespace vs::quant
