// Low rank of an MLP's hidden activations instead of its Linear layers.
//
// fc1 and fc2 are wide (ViT-Ti: 192 x 768), so a rank-r factorisation of either costs r (in + out)
// = 960 r parameters and saves only below r = 154 of 192: greedy allocation left every MLP dense
// and took the whole budget from attention. The MLP's cheap structure is its hidden activation
// matrix H (tokens x hidden, after GELU): an interpolative decomposition H ~ H_S T, with S a set
// of r hidden units and T (r x hidden) fitted by least squares, is a rank-r factorisation whose
// one factor is r columns of H itself (Chee et al., "Model Preserving Compression for Neural
// Networks", NeurIPS 2022). fc2 H^T then becomes (fc2 T^T) H_S^T: fc1 keeps the rows of S, fc2
// gets r refitted columns, and the MLP is r units wide, r (in + 1 + out) = 385 r parameters and no
// extra GEMM. (The resulting model is the same shape as a structurally pruned MLP's.)
//
// S: units are removed one at a time, each time the one whose removal, with fc2 refitted on the
// rest, adds least to fc2's squared output error on the calibration tokens (Optimal Brain
// Surgeon; compress/prune/scores.h's refit order); T, i.e. fc2's new columns and bias: ridge
// least squares towards the original fc2 on the same hidden activations (compress/moments.h).
#pragma once
#include <cstdint>
#include <vector>

#include "compress/lowrank/factorize.h"
#include "compress/moments.h"

namespace vs::compress {

struct MlpUnits {
  Mat w1, w2;                   // fc1 [hidden, in], fc2 [out, hidden] as they are
  Vec b1, b2;
  Moments hidden;               // fc2's input (the hidden activations) on the calibration tokens
  double damping = 0;           // ridge, x mean(diag) of the centred Gram
  std::vector<int64_t> order;   // units from first removed to last
  Vec error;                    // error(k): fc2's squared output error with the first k removed (k = 0..hidden)
  double energy = 0;            // fc2's centred output energy (error relative to it: error / energy)
  int64_t width() const { return w1.rows(); }
};

MlpUnits mlp_units(const Mat& w1, const Vec& b1, const Mat& w2, const Vec& b2, const Moments& hidden, double damping);

// The MLP with `r` units kept (1 <= r <= width; in their original order) and fc2 refitted. pad:
// all units stay, fc2's columns of the removed ones zero (the same function; for probes).
struct MlpWeights {
  Mat w1, w2;
  Vec b1, b2;
};
MlpWeights mlp_at(const MlpUnits& u, int64_t r, bool pad);

}  // namespace vs::compress
