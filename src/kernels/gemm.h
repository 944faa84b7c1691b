// Dense GEMM through oneDNN (the only place, with the other files of src/kernels, that knows it).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

namespace vs::kernels {

enum class Epilogue { none, gelu };  // gelu = exact erf GELU, fused into the GEMM

// Copies of one weight matrix reordered into the blocked layouts oneDNN prefers for large M
// (made once, reused every call). Owned by the layer whose weights they are.
class WeightCache {
 public:
  WeightCache();
  ~WeightCache();
  struct Impl;
  std::unique_ptr<Impl> impl;
};

// y[M,N] = x[M,K] . w[N,K]^T + bias[N] (bias may be null), then the epilogue.
// w is the PyTorch Linear layout (out x in). Primitives are cached per shape. With a cache, large
// batches use weights pre-packed in oneDNN's preferred layout (15-25% faster at M >= 1024 here).
void linear_f32(const float* x, const float* w, const float* bias, float* y, int64_t M,
                int64_t N, int64_t K, Epilogue ep = Epilogue::none, WeightCache* cache = nullptr);

// A strided (batched) matrix product C = A . B for 2- to 4-d operands given as dims + strides
// in elements: A [..., M, K], B [..., K, N], C [..., M, N]. Any strides, so heads are read in
// place from a fused qkv buffer and k^T is just a stride swap. Primitives are cached per layout.
struct View {
  const float* data;
  std::vector<int64_t> dims, strides;
};
void matmul_strided(const View& a, const View& b, float* c, const std::vector<int64_t>& c_dims,
                    const std::vector<int64_t>& c_strides);

}  // namespace vs::kernels
