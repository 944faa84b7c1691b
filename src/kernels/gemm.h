// Dense GEMM through oneDNN (the only place, with the other files of src/kernels, that knows it).
#pragma once
#include <cstdint>

namespace vs::kernels {

enum class Epilogue { none, gelu };  // gelu = exact erf GELU, fused into the GEMM

// y[M,N] = x[M,K] . w[N,K]^T + bias[N] (bias may be null), then the epilogue.
// w is the PyTorch Linear layout (out x in). Primitives are cached per shape.
void linear_f32(const float* x, const float* w, const float* bias, float* y, int64_t M,
                int64_t N, int64_t K, Epilogue ep = Epilogue::none);

// Row-major BLAS sgemm: C = alpha * op(A) . op(B) + beta * C with leading dimensions, so that
// strided sub-matrices (one head of a qkv buffer) are used in place. Single-threaded when
// called inside a parallel region.
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc);

}  // namespace vs::kernels
