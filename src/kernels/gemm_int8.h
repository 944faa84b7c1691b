// Integer matrix products with exact int32 results: u8 activations (with a zero point) times s8
// weights, c = sum_k (a - zero_a) * b. Two engines compute the same integers:
//   IntEngine::onednn      - oneDNN's int8 kernels (VNNI vpdpbusd where the CPU has it);
//   IntEngine::float_exact - fp32 GEMMs on the codes, over chunks of K short enough that every
//                            partial sum is an integer below 2^24 in magnitude, so fp32 holds it
//                            exactly in any summation order; the chunks add up in int32.
// Every quantised layer turns the int32 result into floats with one shared epilogue
// (quantize_act.h), so the integer path and the simulated ("fake quant") path give
// bit-identical outputs: the simulated path checks oneDNN's integer kernels against float math.
#pragma once
#include <cstdint>

#include "kernels/gemm.h"

namespace vs::kernels {

enum class IntEngine { onednn, float_exact };

// The widest weight codes whose products with `abits`-bit u8 activations the int8 GEMM computes
// exactly on this CPU. With VNNI (vpdpbusd) that is 8. Without it (plain AVX2, e.g. AMD Zen 3),
// oneDNN uses vpmaddubsw, which sums adjacent u8*s8 products in int16 with saturation:
// 255 * 127 * 2 overflows, so 8-bit activations need weights within 7 bits (255 * 63 * 2 fits);
// activations of 7 bits or fewer take 8-bit weights. (PyTorch's fbgemm answers the same limit
// with 7-bit activations, "reduce_range".)
int int8_exact_weight_bits(int abits);
bool cpu_has_vnni();

// Shapes of one (batched) product: a [batch, M, K] row-major; b [batch, N, K] when b_nk (Linear
// weights, keys: the product takes b^T) else [batch, K, N] (values); c [batch, M, N] int32.
// Row strides lda / ldb / ldc (0: dense) let a product read a head's columns in place; a
// strided product has batch 1.
struct IntGemm {
  int64_t batch = 1, M = 0, N = 0, K = 0;
  bool b_nk = true;
  int64_t lda = 0, ldb = 0, ldc = 0;
  int64_t a_ld() const { return lda ? lda : K; }
  int64_t b_ld() const { return ldb ? ldb : (b_nk ? K : N); }
  int64_t c_ld() const { return ldc ? ldc : N; }
};

// c = (a - zero_a) . b (per batch). zero_a is one zero point for all of a.
// With a weight cache (constant b: Linear weights, b_nk, batch 1), oneDNN gets b once reordered
// into its VNNI-blocked layout instead of repacking it on every call. Layers with a zero point
// pass zero_a = 0 and subtract zero_a * (column sums of b) in their epilogue (Dequant::a_zero),
// which is cheaper than oneDNN's run-time zero-point compensation.
void gemm_u8s8_s32(const IntGemm& g, const uint8_t* a, int32_t zero_a, const int8_t* b,
                   int32_t* c, IntEngine e, WeightCache* wcache = nullptr);

}  // namespace vs::kernels
