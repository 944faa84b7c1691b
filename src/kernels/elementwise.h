// Row-wise normalisation and activations (vectorised, OpenMP over rows).
#pragma once
#include <cstdint>

#include "kernels/quantize_act.h"

namespace vs::kernels {

// y[r,:] = (x[r,:] - mean) / sqrt(var + eps) * gamma + beta, for rows r < R of width C.
// x and y may alias.
void layernorm(const float* x, const float* gamma, const float* beta, float* y, int64_t R,
               int64_t C, float eps);
// The same rows written as a following layer's input codes (kernels/quantize_act.h), in one pass:
// bit-identical to layernorm, then quantize_u8 / quantize_u8_per_row.
void layernorm_to_codes(const float* x, const float* gamma, const float* beta, int64_t R, int64_t C, float eps,
                        const RowCodes& out);

// In place: x[r,:] = softmax(scale * x[r,:]).
void softmax_rows(float* x, int64_t R, int64_t C, float scale = 1.f);
// One row of it, on the calling thread (for fused row passes; the same arithmetic).
void softmax_row(float* x, int64_t C, float scale);
// The same for a row whose maximum the caller already has (found while writing the row).
void softmax_row_with_max(float* x, int64_t C, float row_max, float scale);

// In place exact GELU: x * 0.5 * (1 + erf(x / sqrt 2)) (where no GEMM/conv epilogue can do it:
// after a residual add or a LayerNorm in SAM).
void gelu(float* x, int64_t n);

// y[i] += x[i]  (residual connections)
void add_inplace(float* y, const float* x, int64_t n);

}  // namespace vs::kernels
