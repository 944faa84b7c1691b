// The linear algebra of low-rank factorisation (Eigen, float64), independent of models.
//
// Activation-aware factorisation: for calibration inputs X (rows x in) and a layer W (out x in),
// the rank-r matrix M minimising ||X W^T - X M^T||_F is M = U_r U_r^T W, where U_r are the top-r
// left singular vectors of W C^{1/2} (C = X^T X), i.e. the top-r principal directions of the
// layer's output Y = X W^T (Eckart-Young on Y, whose best rank-r approximation Y U_r U_r^T is of
// the form X M^T). Factors: A = U_r (out x r), B = U_r^T W (r x in). The squared error at rank r
// is the sum of the discarded squared singular values. No inverse of C is taken, so a
// rank-deficient X (fewer calibration rows than inputs, constant features) is safe: C^{1/2}
// comes from an eigendecomposition with negative round-off eigenvalues clipped to zero.
// Plain SVD is the same with C = I.
#pragma once
#include <Eigen/Dense>
#include <cstdint>

#include "compress/moments.h"

namespace vs::compress {

using Mat = Eigen::MatrixXd;
using Vec = Eigen::VectorXd;

// Principal output directions of a layer: basis (out x k, orthonormal columns, k = min(out, in))
// and energy (k, descending): energy(i) = squared singular value i of W C^{1/2}.
struct OutputSpectrum {
  Mat basis;
  Vec energy;
  // Share of direction i in the mean over output channels of each channel's relative error:
  // channel_share(i) = energy(i) * sum_j basis(j, i)^2 / ||Y_j||^2 / out. Unlike the total
  // error, this is not dominated by the few huge-magnitude channels ViTs have.
  Vec channel_share;
  // ||X W^T - X M_r^T||^2 at rank r (the tail of `energy`); 0 at r >= k.
  double error_at(int64_t r) const { return tail(energy, r); }
  // Mean over output channels of ||Y_j - (X M_r^T)_j||^2 / ||Y_j||^2 at rank r.
  double channel_error_at(int64_t r) const { return tail(channel_share, r); }

 private:
  static double tail(const Vec& v, int64_t r) { return r >= v.size() ? 0.0 : v.tail(v.size() - r).sum(); }
};

// C = nullptr: plain SVD of W (C = I).
OutputSpectrum output_spectrum(const Mat& W, const Mat* C);

// C^{1/2} = V sqrt(max(lambda, 0)) V^T of a symmetric PSD C (round-off-negative eigenvalues
// clipped). inv_root, when given: the pseudo-inverse root (eigenvalues at or below 1e-12 of the
// largest count as zero).
Mat psd_root(const Mat& C, Mat* inv_root = nullptr);

// The rank-r factors of W for this spectrum: A = basis[:, :r], B = A^T W.
struct Factors {
  Mat A, B;  // out x r, r x in
};
Factors factorize(const Mat& W, const OutputSpectrum& s, int64_t r);

// Error compensation in closed form (reduced-rank regression): the rank-r M and free bias b'
// minimising ||X' M^T + b' - (X W^T + b)||_F^2 (X' the compressed model's inputs, X the FP32
// model's; compress/moments.h). Solved as the full-rank ridge least squares M* (ridge_refit),
// then the best rank-r approximation of X'_c M*^T as above; b' = mean(Y) - M mean(X').
struct Refit {
  Factors f;
  Vec bias;
};
Refit refit_low_rank(const Mat& W, const Vec& b, const PairedMoments& m, int64_t r, double damping);

}  // namespace vs::compress
