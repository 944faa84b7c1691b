#include "compress/moments.h"

#include "core/error.h"

namespace vs::compress {
namespace {

using RowMatF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Rows of x minus their mean (returned in `mean`), in float for the product that follows.
RowMatF centred(const float* x, int64_t n, int64_t cols, Eigen::VectorXd& mean) {
  Eigen::Map<const RowMatF> X(x, n, cols);
  mean = X.cast<double>().colwise().mean().transpose();
  return X.rowwise() - mean.transpose().cast<float>();
}

}  // namespace

void Moments::add(const float* x, int64_t n, int64_t cols) {
  if (n <= 0) return;
  if (rows == 0) mean = Eigen::VectorXd::Zero(cols), cgram = Eigen::MatrixXd::Zero(cols, cols);
  check(mean.size() == cols, "calibration moments: rows of a different width");
  Eigen::VectorXd bm;
  const RowMatF Z = centred(x, n, cols, bm);
  const Eigen::MatrixXf p = Z.transpose() * Z;
  const double na = double(rows), nb = double(n), tot = na + nb;
  const Eigen::VectorXd d = bm - mean;
  cgram += p.cast<double>() + (na * nb / tot) * d * d.transpose();
  mean += (nb / tot) * d;
  rows += n;
}

void PairedMoments::add(const float* x, const float* x_orig, int64_t n) {
  if (n <= 0) return;
  Eigen::VectorXd bc, bx;
  const RowMatF Zc = centred(x, n, cc.rows(), bc), Zx = centred(x_orig, n, cx.cols(), bx);
  const Eigen::MatrixXf pcc = Zc.transpose() * Zc, pcx = Zc.transpose() * Zx;  // float GEMMs, centred data
  const double na = double(rows), nb = double(n), tot = na + nb;
  const Eigen::VectorXd dc = bc - mean_c, dx = bx - mean_x;
  cc += pcc.cast<double>() + (na * nb / tot) * dc * dc.transpose();
  cx += pcx.cast<double>() + (na * nb / tot) * dc * dx.transpose();
  mean_c += (nb / tot) * dc;
  mean_x += (nb / tot) * dx;
  rows += n;
}

PairedMoments PairedMoments::of_columns(const Moments& m, const std::vector<int64_t>& cols) {
  if (cols.empty()) {
    PairedMoments p(m.mean.size());
    p.cc = p.cx = m.cgram, p.mean_c = p.mean_x = m.mean, p.rows = m.rows;
    return p;
  }
  PairedMoments p(int64_t(cols.size()), m.mean.size());
  p.cc = m.cgram(cols, cols), p.cx = m.cgram(cols, Eigen::all), p.mean_c = m.mean(cols), p.mean_x = m.mean, p.rows = m.rows;
  return p;
}

LinearFit ridge_refit(const Eigen::MatrixXd& W, const Eigen::VectorXd& b, const PairedMoments& m, double damping) {
  check(m.rows > 0, "refit: no calibration rows");
  check(W.cols() == m.cx.cols() && b.size() == W.rows(), "refit: the layer does not match its calibration moments");
  Eigen::MatrixXd H = m.cc;
  H.diagonal().array() += damping * std::max(H.diagonal().mean(), 1e-30);
  Eigen::LLT<Eigen::MatrixXd> llt(H);  // positive definite for damping > 0
  check(llt.info() == Eigen::Success, "refit: damped X'^T X' is not positive definite (raise the damping)");
  LinearFit f{llt.solve(m.cx * W.transpose()).transpose(), {}};
  f.b = b + W * m.mean_x - f.W * m.mean_c;
  return f;
}

}  // namespace vs::compress
