#include "compress/quant/rotate.h"

#include <random>
#include <vector>

#include "core/error.h"

namespace vs::quant {

kernels::Rotation random_rotation(int64_t d, uint64_t seed) {
  check(d > 0, "rotation: width must be positive");
  kernels::Rotation rot;
  rot.p = d & -d;  // the largest power of two dividing d
  rot.r = d / rot.p;
  std::mt19937_64 rng(seed);
  rot.signs.resize(size_t(d));
  for (auto& s : rot.signs) s = (rng() >> 63) ? -1.f : 1.f;
  std::normal_distribution<double> nd(0.0, 1.0);
  Eigen::MatrixXd g(rot.r, rot.r);
  for (int64_t i = 0; i < rot.r; ++i)
    for (int64_t j = 0; j < rot.r; ++j) g(i, j) = nd(rng);
  Eigen::HouseholderQR<Eigen::MatrixXd> qr(g);
  Eigen::MatrixXd q = qr.householderQ();
  rot.mix.resize(size_t(rot.r * rot.r));
  for (int64_t i = 0; i < rot.r; ++i)
    for (int64_t j = 0; j < rot.r; ++j) rot.mix[size_t(i * rot.r + j)] = float(q(i, j));
  // Q in float is orthogonal to ~1e-7; check_rotation accepts 1e-4.
  kernels::check_rotation(rot, "random_rotation");
  return rot;
}

uint64_t rotation_seed(const std::string& layer_name, uint64_t seed) {
  uint64_t h = 1469598103934665603ull ^ seed;
  for (unsigned char c : layer_name) h = (h ^ c) * 1099511628211ull;
  return h;
}

Tensor rotate_weight(const Tensor& w, const kernels::Rotation& rot) {
  check(w.ndim() == 2 && w.dim(1) == rot.dim(), "rotate_weight: weight columns do not match the rotation");
  Tensor out({w.dim(0), w.dim(1)});
  for (int64_t n = 0; n < w.dim(0); ++n) rot.apply(w.f32() + n * w.dim(1), out.f32() + n * w.dim(1));
  return out;
}

Eigen::MatrixXd rotation_matrix(const kernels::Rotation& rot) {
  const int64_t d = rot.dim();
  Eigen::MatrixXd m(d, d);
  std::vector<float> e(static_cast<size_t>(d), 0.f), row(static_cast<size_t>(d));
  for (int64_t i = 0; i < d; ++i) {
    e[size_t(i)] = 1.f;
    rot.apply(e.data(), row.data());
    e[size_t(i)] = 0.f;
    for (int64_t j = 0; j < d; ++j) m(i, j) = row[size_t(j)];
  }
  return m;
}

}  // namespace vs::quant
