#include "compress/quant/repq.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace vs::quant {

RepqResult repq_norm_linear(nn::LayerNorm& norm, std::unique_ptr<nn::Linear>& linear, const InputStats& st,
                            int abits) {
  const size_t K = st.lo.size();
  check(K > 0 && int64_t(K) == linear->in_features(), "RepQ: no calibration statistics for this layer");
  std::vector<float> s(K), shift(K);
  std::vector<int32_t> z(K);
  double ssum = 0, zsum = 0;
  for (size_t j = 0; j < K; ++j) {
    range_to_qparams(st.lo[j], st.hi[j], abits, false, s[j], z[j]);
    ssum += s[j];
    zsum += z[j];
  }
  RepqResult r;
  r.tensor_scale = float(ssum / double(K));
  r.tensor_zero = int32_t(std::nearbyint(zsum / double(K)));
  float rmin = INFINITY, rmax = 0;
  for (size_t j = 0; j < K; ++j) {
    shift[j] = -s[j] * float(z[j] - r.tensor_zero);  // the fold subtracts it: X + s_j r2_j
    s[j] /= r.tensor_scale;                          // r1_j
    rmin = std::min(rmin, s[j]);
    rmax = std::max(rmax, s[j]);
  }
  r.scale_spread = double(rmax) / double(rmin);
  fold_norm_linear(norm, linear, shift, s);
  return r;
}

}  // namespace vs::quant
