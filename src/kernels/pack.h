// Sub-byte storage for 4-bit codes. int8 codes are stored as they are; 4-bit codes go two per
// byte, element 2i in the low nibble and 2i + 1 in the high nibble (an odd count leaves the last
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

}  // namespace vs::quant
