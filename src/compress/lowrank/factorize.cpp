#include "compress/lowrank/factorize.h"

#include <algorithm>

#include "core/error.h"

namespace vs::compress {

Mat psd_root(const Mat& C, Mat* inv_root) {
  Eigen::SelfAdjointEigenSolver<Mat> es(C);
  check(es.info() == Eigen::Success, "low-rank: eigendecomposition of X^T X failed");
  const Vec e = es.eigenvalues().cwiseMax(0.0), sq = e.cwiseSqrt();
  if (inv_root) {
    const double floor = std::max(e.maxCoeff(), 1e-300) * 1e-12;
    Vec si = Vec::Zero(e.size());
    for (int64_t i = 0; i < e.size(); ++i)
      if (e(i) > floor) si(i) = 1.0 / sq(i);
    *inv_root = es.eigenvectors() * si.asDiagonal() * es.eigenvectors().transpose();
  }
  return es.eigenvectors() * sq.asDiagonal() * es.eigenvectors().transpose();
}

OutputSpectrum output_spectrum(const Mat& W, const Mat* C) {
  const Mat M = C ? Mat(W * psd_root(*C)) : W;  // W C^{1/2}
  Eigen::BDCSVD<Mat> svd(M, Eigen::ComputeThinU);
  check(svd.info() == Eigen::Success, "low-rank: SVD failed");
  OutputSpectrum s{svd.matrixU(), svd.singularValues().cwiseAbs2(), {}};  // Eigen sorts descending
  // ||Y_j||^2 = sum_i energy(i) basis(j, i)^2; channels with no output energy do not count.
  const Mat sq = s.basis.array().square().matrix();
  const Vec norm2 = sq * s.energy;
  Vec inv = Vec::Zero(norm2.size());
  for (int64_t j = 0; j < norm2.size(); ++j)
    if (norm2(j) > 1e-300) inv(j) = 1.0 / norm2(j);
  s.channel_share = s.energy.cwiseProduct(sq.transpose() * inv) / double(std::max<int64_t>(1, W.rows()));
  return s;
}

Factors factorize(const Mat& W, const OutputSpectrum& s, int64_t r) {
  check(r >= 1 && r <= s.basis.cols(), "low-rank: rank " + std::to_string(r) + " outside 1.." +
                                           std::to_string(s.basis.cols()));
  Mat A = s.basis.leftCols(r);
  Mat B = A.transpose() * W;
  return {std::move(A), std::move(B)};
}

Refit refit_low_rank(const Mat& W, const Vec& b, const PairedMoments& m, int64_t r, double damping) {
  check(m.rows > 0, "low-rank: no calibration rows to refit on");
  const LinearFit full = ridge_refit(W, b, m, damping);  // M* and its bias, full rank
  // The best rank-r approximation of X'_c M*^T, measured on the data itself (no damping).
  Refit out{factorize(full.W, output_spectrum(full.W, &m.cc), r), {}};
  out.bias = W * m.mean_x + b - out.f.A * (out.f.B * m.mean_c);
  return out;
}

}  // namespace vs::compress
