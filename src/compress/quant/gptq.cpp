#include "compress/quant/gptq.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace vs::quant {
namespace {

using MatD = Eigen::MatrixXd;

// tr(E H E^T): the summed squared output error of weight error E over the calibration inputs.
double output_error(const MatD& E, const MatD& H) { return (E * H).cwiseProduct(E).sum(); }

}  // namespace

GptqResult gptq_quantize(const Tensor& w, const float* scale, int bits, const Eigen::MatrixXd& gram,
                         const GptqSettings& s) {
  const int64_t out = w.dim(0), in = w.dim(1);
  check(gram.rows() == in && gram.cols() == in, "GPTQ: the calibration Gram does not match the layer's input width");
  check(bits >= 2 && bits <= 8, "GPTQ: weight bits must be 2..8");
  const double lim = double((1 << (bits - 1)) - 1);
  MatD W(out, in);
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i) W(o, i) = double(w.f32()[o * in + i]);
  Eigen::VectorXd inv_scale(out), sc(out);
  for (int64_t o = 0; o < out; ++o) {
    sc(o) = double(scale[o]);
    inv_scale(o) = double(1.f / scale[o]);  // from_dense's arithmetic: w * (1 / s), half-even
  }
  // Codes of one column (as from_dense would round them), as dequantised values.
  auto quant_col = [&](const Eigen::VectorXd& c) {
    Eigen::VectorXd q(out);
    for (int64_t o = 0; o < out; ++o)
      q(o) = std::clamp(double(std::nearbyint(float(c(o)) * float(inv_scale(o)))), -lim, lim) * sc(o);
    return q;
  };

  // Inputs that are always 0 carry no information: unit diagonal keeps H invertible.
  MatD H = gram;
  for (int64_t i = 0; i < in; ++i)
    if (H(i, i) <= 0) H(i, i) = 1;
  Eigen::PermutationMatrix<Eigen::Dynamic> P(in);
  P.setIdentity();
  if (s.act_order) {
    int* idx = P.indices().data();
    std::stable_sort(idx, idx + in, [&](int a, int b) { return H(a, a) > H(b, b); });
  }
  MatD Wp = W * P;                       // column i of Wp is column perm[i] of W
  MatD Hp = P.transpose() * H * P;
  Hp.diagonal().array() += s.damping * Hp.diagonal().mean();
  // U: upper Cholesky factor of H^-1 (H^-1 = U^T U).
  Eigen::LLT<MatD> llt(Hp);
  check(llt.info() == Eigen::Success, "GPTQ: the damped calibration Gram is not positive definite");
  const MatD Hinv = llt.solve(MatD::Identity(in, in));
  Eigen::LLT<MatD> llt_inv(Hinv);
  check(llt_inv.info() == Eigen::Success, "GPTQ: H^-1 is not positive definite");
  const MatD U = llt_inv.matrixU();

  // Lazy batches of columns: errors are applied inside the block column by column, and to the
  // columns after it in one product.
  constexpr int64_t kBlock = 128;
  MatD Q(out, in);
  for (int64_t b0 = 0; b0 < in; b0 += kBlock) {
    const int64_t nb = std::min(kBlock, in - b0);
    MatD Err(out, nb);
    for (int64_t j = 0; j < nb; ++j) {
      const int64_t i = b0 + j;
      const Eigen::VectorXd c = Wp.col(i);
      const Eigen::VectorXd q = quant_col(c);
      Q.col(i) = q;
      const Eigen::VectorXd e = (c - q) / U(i, i);
      Err.col(j) = e;
      if (j + 1 < nb) Wp.block(0, i + 1, out, nb - j - 1).noalias() -= e * U.block(i, i + 1, 1, nb - j - 1);
    }
    if (b0 + nb < in) Wp.rightCols(in - b0 - nb).noalias() -= Err * U.block(b0, b0 + nb, nb, in - b0 - nb);
  }
  const MatD Qo = Q * P.transpose();  // back to the original column order

  GptqResult r;
  MatD Rtn(out, in);
  for (int64_t i = 0; i < in; ++i) Rtn.col(i) = quant_col(W.col(i));
  r.error_rtn = output_error(W - Rtn, gram);
  r.error_gptq = output_error(W - Qo, gram);
  r.weight = Tensor::empty({out, in});
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i) r.weight.f32()[o * in + i] = float(Qo(o, i));
  return r;
}

}  // namespace vs::quant
