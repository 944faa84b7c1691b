#include "compress/quant/optm.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "kernels/gemm.h"

namespace vs::quant {

TwinChoice search_twin(const float* x, int64_t rows, float lo, float hi, const float* w, const float* wq, int64_t N,
                       int64_t K, int bits, int32_t wmax, const QParams& uniform) {
  check(bits >= 3 && bits <= 8, "OPT-m: twin-uniform activations need 3..8 bits, got " + std::to_string(bits));
  check(rows > 0, "OPT-m: no calibration sample for this layer");
  const size_t XN = size_t(rows * K), YN = size_t(rows * N);
  std::vector<float> ref(YN), y(YN), xq(XN);
  kernels::linear_f32(x, w, nullptr, ref.data(), rows, N, K);
  auto error = [&] {
    kernels::linear_f32(xq.data(), wq, nullptr, y.data(), rows, N, K);
    double e = 0;
    for (size_t i = 0; i < YN; ++i) e += (double(y[i]) - ref[i]) * (double(y[i]) - ref[i]);
    return e / double(YN);
  };
  TwinChoice best;
  fake_quantize(x, xq.data(), rows, K, uniform);
  best.error = best.error_uniform = error();
  const int32_t hmax = (1 << (bits - 1)) - 1;
  const float top = std::max(hi, 1e-8f);
  for (int m = 1; m <= kernels::kMaxTwinM; ++m)
    for (int a = 10; a >= 2; --a) {
      kernels::TwinQuant t{bits, 0.f, 0, m};
      t.scale = std::ldexp(top * float(a) / 10.f / float(hmax), -m);
      t.zero = std::clamp(int32_t(std::nearbyint(-std::min(lo, 0.f) / t.scale)), 0, hmax);
      if (!kernels::twin_fits_int32(t, K, wmax)) continue;
      for (size_t i = 0; i < XN; ++i) xq[i] = kernels::twin_fake(x[i], t);
      const double e = error();
      if (e < best.error) {
        best.error = e;
        best.m = m;
        best.twin = t;
      }
    }
  return best;
}

}  // namespace vs::quant
