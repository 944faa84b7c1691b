// Sub-byte storage of signed integer codes (weights on disk).
#pragma once
#include <cstdint>
#include <vector>

namespace vs::quant {

// Signed codes of any width 2..8 as one little-endian bit stream: value i (two's complement,
// `bits` wide) occupies stream bits [i * bits, (i + 1) * bits), stream bit j being bit j % 8 of
// byte j / 8; unused high bits of the last byte are 0. At 4 bits: two codes per byte, element 2i
// in the low nibble (the layout of 4-bit files of every earlier version). A 5-bit model's file
// holds 5 bits per weight.
inline int64_t packed_bytes(int64_t n, int bits) { return (n * bits + 7) / 8; }
// Throws vs::Error if bits is outside 2..8, a value lies outside [-2^(bits-1), 2^(bits-1) - 1] or n < 0.
std::vector<uint8_t> pack_bits(const int8_t* q, int64_t n, int bits);
void unpack_bits(const uint8_t* p, int64_t n, int bits, int8_t* q);  // p holds packed_bytes(n, bits) bytes

}  // namespace vs::quant
