// Low rank of an attention module's per-head circuits instead of its Linear layers.
//
// Head h's scores are a bilinear form of the block's normalised input x~ = [x; 1] (the 1 carries
// the biases): s_ij = x~_i^T Q_h^T K_h x~_j with Q_h, K_h the head's [d_qk, in + 1] rows of qkv.
// The rank-r form minimising the summed squared score error over all token pairs of the
// calibration data, sum_ij (x~_i^T (B - B') x~_j)^2 = ||C^1/2 (B - B') C^1/2||_F^2 (C = sum x~ x~^T),
// is B' = C^-1/2 [C^1/2 B C^1/2]_r C^-1/2 (Eckart-Young after whitening both sides). Written as
// q' = S^1/2 U^T C^-1/2, k' = S^1/2 V^T C^-1/2 for the SVD U S V^T of C^1/2 B C^1/2, the head keeps
// its first r rows of q' and k': a head with r-wide queries and keys, no extra GEMM.
//
// The head's value path into the block is O_h V~_h y-wise: proj's columns O_h [out, d_v] applied
// to y_h = P_h (x~ V~_h^T), whose rows are what proj reads (so C_y = the head's block of proj's
// input Gram). The rank-r map minimising ||O_h y - O' y|| over the data is U_r U_r^T O_h with U the
// left singular vectors of O_h C_y^1/2 (the activation-aware factorisation of factorize.h): the
// head keeps v' = U_r^T O_h V~_h (r rows of v, bias included) and proj columns U_r.
//
// At full rank both are the same function on the calibration data's span, so a model can be put in
// these bases first, and a head cut to rank r by zeroing the rows beyond r (the same scores and
// outputs as dropping them): the KL probes of the rank allocation run on that.
#pragma once
#include <cstdint>
#include <vector>

#include "compress/lowrank/factorize.h"
#include "kernels/attention.h"

namespace vs::compress {

struct HeadCircuits {
  Mat q, k;      // [d_qk, in + 1] each (weights | bias), rows by falling singular value
  Mat v;         // [d_v, in + 1]
  Mat o;         // [out, d_v], proj's columns for v's rows
  Vec qk_energy;  // squared singular values of C^1/2 B C^1/2 (the summed squared score error's tail)
  Vec ov_energy;  // squared singular values of O_h C_y^1/2 (the output error's tail)
};

// Softmax-aware weights of the key side of the q/k fit (`qk_fit attention`). A score error
// reaches the attention output through the softmax, whose Jacobian for query i is
// diag(p_i) - p_i p_i^T: an error on key j counts in proportion to p_ij, and a constant shift of a
// query's scores counts not at all. Summed over queries (a Kronecker approximation of that
// metric: queries keep the plain Gram), key j weighs a_j = sum_i p_ij, the attention it receives,
// measured from the attention-weighted mean key:
//   C_k = sum_j a_j (x_j - mu)(x_j - mu)^T,  mu = sum_j a_j x_j / sum_j a_j.
// The plain fit weighs every (query, key) pair alike, so it spends rank on keys no query attends
// to and on per-query shifts the softmax ignores.
struct KeyWeights {
  std::vector<Mat> xx;        // per head: sum_j a_j x_j x_j^T [in, in]
  std::vector<Vec> x;         // per head: sum_j a_j x_j
  std::vector<double> w;      // per head: sum_j a_j
  // One batch of `images` x `tokens` rows: x_in [rows, in] the attention's input (qkv's input),
  // qkv_out [rows, layout.qkv_width()] its qkv output, scale the attention's score scale.
  void add(const float* x_in, const float* qkv_out, int64_t images, int64_t tokens, int64_t in,
           const kernels::HeadLayout& layout, float scale);
  Mat centred(size_t h) const;  // C_k of head h
};

struct AttentionCircuits {
  std::vector<HeadCircuits> heads;  // removed heads (width 0) kept as empty entries
  Vec proj_bias;
  bool qkv_bias = true;             // false: biases stay zero (C without the constant input)
  int64_t in = 0;
};

// qkv_w [2 * qk_total + v_total, in], qkv_b (empty when the model has no qkv bias), proj_w
// [out, v_total], proj_b [out]; xtx, xsum, rows: X^T X, column sums and row count of qkv's input;
// yty: proj's input Gram [v_total, v_total]. activation_aware false: C = I and C_y = I (plain SVD).
// keys (activation-aware only): the key side of every head's q/k fit is whitened by its C_k
// (KeyWeights) instead of C; the fit is then unique only up to per-query score shifts.
AttentionCircuits attention_circuits(const Mat& qkv_w, const Vec& qkv_b, const Mat& proj_w, const Vec& proj_b,
                                     const kernels::HeadLayout& layout, const Mat& xtx, const Vec& xsum,
                                     double rows, const Mat& yty, bool activation_aware,
                                     const KeyWeights* keys = nullptr);

// The attention at per-head ranks (qk[h] <= d_qk, v[h] <= d_v of the circuits). pad: every head
// keeps its full width with the rows beyond its rank zero (the layout does not change).
struct AttentionWeights {
  Mat qkv_w, proj_w;
  Vec qkv_b, proj_b;
  kernels::HeadLayout layout;
};
AttentionWeights attention_at(const AttentionCircuits& c, const std::vector<int64_t>& qk, const std::vector<int64_t>& v,
                              bool pad);

}  // namespace vs::compress
