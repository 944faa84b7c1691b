// Element types a Tensor can hold. Floats come from checkpoints (f16/bf16 converted to f32 on
// load); integer types carry quantized weights and activations.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace vs {

enum class DType : uint8_t { f32, f16, bf16, i8, u8, i32, i64 };

size_t dtype_size(DType t);
std::string dtype_name(DType t);

// IEEE half / bfloat16 -> float, bit-exact.
float f16_to_f32(uint16_t h);
float bf16_to_f32(uint16_t b);
uint16_t f32_to_bf16(float f);  // round to nearest even

}  // namespace vs
