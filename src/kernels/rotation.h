// An orthogonal rotation of a layer's input channels, applied to each input row at run time
// before the row is quantised (QuaRot, Ashkboos et al. 2024, for the inputs of ViT Linears):
// y = x W^T = (x R)(W R)^T, so the layer stores W R and quantises x R, whose channels are mixed
// evenly - a few outlier channels no longer set every token's range.
//   R = diag(signs) (Q kron H_p / sqrt(p)),  d = r * p, p a power of two, Q an r x r orthogonal
// matrix, H_p the Sylvester-Hadamard matrix. Index i = b * p + a (b < r, a < p), so x R is r^2
// axpys of length p followed by fast Walsh-Hadamard transforms of r contiguous blocks:
// O(d (r + log2 p)) per row instead of d^2 (768 = 3 * 256: ~9 k flops, not 590 k).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace vs::kernels {

struct Rotation {
  int64_t r = 1, p = 1;
  std::vector<float> signs;  // d values, each +1 or -1
  std::vector<float> mix;    // Q, r x r row-major, orthogonal

  int64_t dim() const { return r * p; }
  // y = x R (x and y of dim() values, distinct).
  void apply(const float* x, float* y) const;
};

// Throws vs::Error naming `what` unless r * p is consistent, p a power of two, signs +-1 and
// mix orthogonal (to 1e-4).
void check_rotation(const Rotation& rot, const std::string& what);

}  // namespace vs::kernels
