#include "compress/quant/attn_calib.h"

#include <algorithm>

#include "core/error.h"
#include "kernels/gemm_int8.h"

namespace vs::quant {

kernels::AttnQuant attn_quant(const AttnStats& o, const PtqSettings& s, nlohmann::json& report) {
  kernels::AttnQuant a;
  if (s.qk_bits < 16) {
    a.q_bits = s.qk_bits;
    a.k_bits = std::min(s.qk_bits, kernels::int8_exact_weight_bits(s.qk_bits));  // k is the s8 side
    QParams q = o.q.finalize(a.q_bits, false, s.act_observer, s.percentile);
    a.q_scale = q.scale[0];
    a.q_zero = q.zero[0];
    QParams k = o.k.finalize(a.k_bits, false, s.act_observer, s.percentile);
    a.k_scale = k.scale[0];
    a.k_zero = k.zero[0];
  }
  if (s.prob_bits < 16) {
    a.p_bits = s.prob_bits;
    a.v_bits = std::min(s.qk_bits < 16 ? s.qk_bits : s.abits, kernels::int8_exact_weight_bits(s.prob_bits));
    QParams p = o.p.finalize(a.p_bits, false, s.act_observer, s.percentile);
    check(p.zero[0] == 0, "attention probabilities: expected a zero point of 0 (probabilities are >= 0)");
    a.p_scale = p.scale[0];
    // Every candidate quantizer's error is measured (and reported); the setting picks one.
    const double e_uniform = prob_error(o.sample, a.p_bits, {0, a.p_scale, 0});
    auto per_tau = search_log2(o.sample, a.p_bits, {1, 2, 4});
    ProbChoice agq = *std::min_element(per_tau.begin(), per_tau.end(),
                                       [](const ProbChoice& x, const ProbChoice& y) { return x.error < y.error; });
    report = {{"uniform", e_uniform}, {"log2", per_tau[0].error}, {"logsqrt2", per_tau[1].error},
              {"agq", agq.error}, {"agq_tau", agq.tau}};
    const ProbChoice uniform{0, a.p_scale, e_uniform};
    const ProbChoice pick = s.prob_quantizer == ProbQuantizer::log2       ? per_tau[0]
                            : s.prob_quantizer == ProbQuantizer::logsqrt2 ? per_tau[1]
                            : s.prob_quantizer == ProbQuantizer::agq      ? agq
                            : s.prob_quantizer == ProbQuantizer::best     ? (agq.error < e_uniform ? agq : uniform)
                                                                          : uniform;
    a.p_tau = pick.tau;
    a.p_scale = pick.scale;
    a.v_scale = o.v.finalize(a.v_bits, true, s.act_observer, s.percentile).scale[0];
  }
  return a;
}

std::unique_ptr<nn::QuantLinear> quantize_dense(const nn::DenseLinear& dense, int wb, int ab, bool dyn,
                                                const ActObserver* inputs, const PtqSettings& s) {
  const Tensor& w = dense.weight();
  QParams wq = calibrate_weight(w.f32(), w.dim(0), w.dim(1), wb, true, Granularity::channel, 0, s.weight_observer,
                                s.percentile);
  nn::ActQuant act{ab, dyn, 1.f, 0};
  if (!dyn) {
    check(inputs != nullptr, "quantize_dense: a static layer needs its input statistics");
    QParams aq = inputs->finalize(ab, false, s.act_observer, s.percentile);
    act.scale = aq.scale[0];
    act.zero = aq.zero[0];
  }
  return nn::QuantLinear::from_dense(dense, Tensor::from({w.dim(0)}, wq.scale), wb, act);
}

}  // namespace vs::quant
