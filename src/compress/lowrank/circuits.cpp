#include "compress/lowrank/circuits.h"

#include "core/error.h"

namespace vs::compress {
namespace {

// Rows [first, first + n) of qkv with the bias as a last column (zero without a bias).
Mat rows_with_bias(const Mat& w, const Vec& b, int64_t first, int64_t n, int64_t width) {
  Mat r = Mat::Zero(n, width);
  r.leftCols(w.cols()) = w.middleRows(first, n);
  if (b.size()) r.col(w.cols()) = b.segment(first, n);
  return r;
}

}  // namespace

void KeyWeights::add(const float* x_in, const float* qkv_out, int64_t images, int64_t tokens, int64_t in,
                     const kernels::HeadLayout& layout, float scale) {
  const size_t H = layout.qk_dim.size();
  if (xx.empty()) {
    xx.assign(H, Mat::Zero(in, in));
    x.assign(H, Vec::Zero(in));
    w.assign(H, 0.0);
  }
  check(xx.size() == H && xx[0].rows() == in, "key weights: batches of different attention shapes");
  using MatF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const Eigen::Map<const MatF> X(x_in, images * tokens, in);
  Eigen::MatrixXf probs(tokens * tokens, images);  // [images][queries][keys], row-major per image
  for (size_t h = 0; h < H; ++h) {
    if (layout.qk_dim[h] == 0) continue;
    kernels::attention_probs_f32(qkv_out, probs.data(), images, tokens, layout, scale, int64_t(h));
    Eigen::VectorXf a(images * tokens);  // attention received, per key token
    for (int64_t b = 0; b < images; ++b)
      a.segment(b * tokens, tokens) =
          Eigen::Map<const MatF>(probs.data() + b * tokens * tokens, tokens, tokens).colwise().sum().transpose();
    const MatF Xs = a.cwiseSqrt().asDiagonal() * X;
    xx[h] += (Xs.transpose() * Xs).cast<double>();
    x[h] += (X.transpose() * a).cast<double>();
    w[h] += double(a.sum());
  }
}

Mat KeyWeights::centred(size_t h) const {
  check(h < w.size() && w[h] > 0, "key weights: no attention recorded for this head");
  return xx[h] - x[h] * x[h].transpose() / w[h];
}

AttentionCircuits attention_circuits(const Mat& qkv_w, const Vec& qkv_b, const Mat& proj_w, const Vec& proj_b,
                                     const kernels::HeadLayout& layout, const Mat& xtx, const Vec& xsum,
                                     double rows, const Mat& yty, bool activation_aware, const KeyWeights* keys) {
  const int64_t in = qkv_w.cols(), H = int64_t(layout.qk_dim.size());
  check(qkv_w.rows() == layout.qkv_width() && proj_w.cols() == layout.v_total() && yty.rows() == layout.v_total(),
        "attention circuits: qkv / proj shapes do not match the head layout");
  AttentionCircuits c;
  c.qkv_bias = qkv_b.size() > 0;
  c.in = in;
  c.proj_bias = proj_b;
  // The input's second moment with the constant 1 that carries the biases.
  const int64_t n = in + (c.qkv_bias ? 1 : 0);
  Mat C = Mat::Identity(n, n);
  if (activation_aware) {
    C.topLeftCorner(in, in) = xtx;
    if (c.qkv_bias) {
      C.block(0, in, in, 1) = xsum;
      C.block(in, 0, 1, in) = xsum.transpose();
      C(in, in) = rows;
    }
  }
  Mat Cih;
  const Mat Ch = psd_root(C, &Cih);
  const int64_t k0 = layout.qk_total(), v0 = 2 * layout.qk_total();
  int64_t qo = 0, vo = 0;  // head offsets in the q (and k) block and in the v block / proj columns
  for (int64_t h = 0; h < H; ++h) {
    const int64_t dq = layout.qk_dim[size_t(h)], dv = layout.v_dim[size_t(h)];
    HeadCircuits hc;
    if (dq > 0) {
      const Mat q = rows_with_bias(qkv_w, qkv_b, qo, dq, in + 1).leftCols(n);
      const Mat k = rows_with_bias(qkv_w, qkv_b, k0 + qo, dq, in + 1).leftCols(n);
      // SVD of C^1/2 q^T k C^1/2 through the d x d core: (q C^1/2)^T = Qa Ra, likewise Qb Rb.
      // The key side's root: C, or C_k (KeyWeights) with the constant input's row and column zero
      // (a key bias only shifts each query's scores).
      Mat Ckh = Ch, Ckih = Cih;
      if (keys && activation_aware) {
        Mat Ck = Mat::Zero(n, n);
        Ck.topLeftCorner(in, in) = keys->centred(size_t(h));
        Ckh = psd_root(Ck, &Ckih);
      }
      Eigen::HouseholderQR<Mat> qa((q * Ch).transpose()), qb((k * Ckh).transpose());
      const Mat Qa = qa.householderQ() * Mat::Identity(n, dq), Qb = qb.householderQ() * Mat::Identity(n, dq);
      const Mat Ra = qa.matrixQR().topRows(dq).triangularView<Eigen::Upper>();
      const Mat Rb = qb.matrixQR().topRows(dq).triangularView<Eigen::Upper>();
      Eigen::JacobiSVD<Mat> svd(Ra * Rb.transpose(), Eigen::ComputeFullU | Eigen::ComputeFullV);
      const Vec sq = svd.singularValues().cwiseSqrt();
      hc.q = Mat::Zero(dq, in + 1);
      hc.k = Mat::Zero(dq, in + 1);
      hc.q.leftCols(n) = sq.asDiagonal() * (Qa * svd.matrixU()).transpose() * Cih;
      hc.k.leftCols(n) = sq.asDiagonal() * (Qb * svd.matrixV()).transpose() * Ckih;
      hc.qk_energy = svd.singularValues().cwiseAbs2();
    }
    if (dv > 0) {
      const Mat v = rows_with_bias(qkv_w, qkv_b, v0 + vo, dv, in + 1);
      const Mat o = proj_w.middleCols(vo, dv);
      // Step 2's activation-aware factorisation of proj's head columns on the head's y.
      const Mat Cy = yty.block(vo, vo, dv, dv);
      OutputSpectrum sp = output_spectrum(o, activation_aware ? &Cy : nullptr);
      hc.o = std::move(sp.basis);        // [out, min(out, dv)]
      hc.v = hc.o.transpose() * o * v;   // U^T O V~
      hc.ov_energy = std::move(sp.energy);
      check(hc.o.cols() == dv, "attention circuits: a head's value width exceeds the output width");
    }
    c.heads.push_back(std::move(hc));
    qo += dq;
    vo += dv;
  }
  return c;
}

AttentionWeights attention_at(const AttentionCircuits& c, const std::vector<int64_t>& qk, const std::vector<int64_t>& v,
                              bool pad) {
  const size_t H = c.heads.size();
  check(qk.size() == H && v.size() == H, "attention circuits: one rank per head expected");
  AttentionWeights w;
  for (size_t h = 0; h < H; ++h) {
    const auto& hc = c.heads[h];
    check(qk[h] >= 0 && qk[h] <= hc.q.rows() && v[h] >= 0 && v[h] <= hc.v.rows(),
          "attention circuits: rank beyond a head's width");
    w.layout.qk_dim.push_back(pad ? hc.q.rows() : qk[h]);
    w.layout.v_dim.push_back(pad ? hc.v.rows() : v[h]);
  }
  const int64_t out = c.proj_bias.size();
  Mat qkv = Mat::Zero(w.layout.qkv_width(), c.in + 1);
  w.proj_w = Mat::Zero(out, w.layout.v_total());
  const int64_t k0 = w.layout.qk_total(), v0 = 2 * w.layout.qk_total();
  int64_t qo = 0, vo = 0;
  for (size_t h = 0; h < H; ++h) {
    const auto& hc = c.heads[h];
    qkv.middleRows(qo, qk[h]) = hc.q.topRows(qk[h]);
    qkv.middleRows(k0 + qo, qk[h]) = hc.k.topRows(qk[h]);
    qkv.middleRows(v0 + vo, v[h]) = hc.v.topRows(v[h]);
    w.proj_w.middleCols(vo, v[h]) = hc.o.leftCols(v[h]);
    qo += w.layout.qk_dim[h];
    vo += w.layout.v_dim[h];
  }
  w.qkv_w = qkv.leftCols(c.in);
  if (c.qkv_bias) w.qkv_b = qkv.col(c.in);
  w.proj_b = c.proj_bias;
  return w;
}

}  // namespace vs::compress
