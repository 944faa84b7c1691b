#include "compress/quant/agq.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "kernels/gemm.h"
#include "kernels/log2_quant.h"
#include "kernels/quantize_act.h"

namespace vs::quant {

ProbQuantizer parse_prob_quantizer(const std::string& name) {
  if (name == "uniform") return ProbQuantizer::uniform;
  if (name == "log2") return ProbQuantizer::log2;
  if (name == "logsqrt2") return ProbQuantizer::logsqrt2;
  if (name == "agq") return ProbQuantizer::agq;
  if (name == "auto") return ProbQuantizer::best;
  throw Error("unknown probability quantizer '" + name + "' (choose uniform, log2, logsqrt2, agq or auto)");
}

std::string prob_quantizer_name(ProbQuantizer q) {
  switch (q) {
    case ProbQuantizer::uniform: return "uniform";
    case ProbQuantizer::log2: return "log2";
    case ProbQuantizer::logsqrt2: return "logsqrt2";
    case ProbQuantizer::agq: return "agq";
    default: return "auto";
  }
}

namespace {

// Q(A) as the integer path computes it, in float.
void quantized_probs(const std::vector<float>& a, int bits, const ProbChoice& c, std::vector<float>& out) {
  const int64_t n = int64_t(a.size());
  std::vector<uint8_t> codes(a.size());
  out.resize(a.size());
  if (c.tau == 0) {
    kernels::quantize_u8(a.data(), codes.data(), 1, n, n, c.scale, 0, bits);
    for (int64_t i = 0; i < n; ++i) out[size_t(i)] = float(codes[size_t(i)]) * c.scale;
    return;
  }
  kernels::Log2Grid g = kernels::make_log2_grid(c.scale, c.tau, bits);
  uint16_t table[256];
  kernels::log2_fixed_table(g, table);
  kernels::log2_codes(a.data(), codes.data(), n, g);
  const float unit = float(double(c.scale) * std::exp2(-15.0));
  for (int64_t i = 0; i < n; ++i) out[size_t(i)] = float(table[codes[size_t(i)]]) * unit;
}

void times_v(const std::vector<float>& a, const std::vector<float>& v, int64_t N, int64_t Nk, int64_t dv,
             std::vector<float>& y) {
  y.resize(size_t(N * dv));
  kernels::matmul_strided({a.data(), {N, Nk}, {Nk, 1}}, {v.data(), {Nk, dv}, {dv, 1}}, y.data(), {N, dv}, {dv, 1});
}

}  // namespace

double prob_error(const AttnSample& s, int bits, const ProbChoice& c) {
  double err = 0;
  std::vector<float> qa, ref, got;
  const int64_t Nk = s.Nk > 0 ? s.Nk : s.N;
  for (size_t i = 0; i < s.probs.size(); ++i) {
    const int64_t dv = int64_t(s.v[i].size()) / Nk;
    if (dv == 0) continue;
    times_v(s.probs[i], s.v[i], s.N, Nk, dv, ref);
    quantized_probs(s.probs[i], bits, c, qa);
    times_v(qa, s.v[i], s.N, Nk, dv, got);
    for (size_t j = 0; j < ref.size(); ++j) err += std::pow(double(got[j]) - double(ref[j]), 2);
  }
  return err;
}

std::vector<ProbChoice> search_log2(const AttnSample& s, int bits, const std::vector<int>& taus) {
  float pmax = 0;
  for (auto& p : s.probs)
    if (!p.empty()) pmax = std::max(pmax, *std::max_element(p.begin(), p.end()));
  if (!(pmax > 0)) pmax = 1;
  std::vector<ProbChoice> best;
  for (int tau : taus) {
    ProbChoice b{tau, pmax, INFINITY};
    for (int j = 0; j < 16; ++j) {
      ProbChoice c{tau, float(double(pmax) * std::exp2(-j / 16.0)), 0};
      c.error = prob_error(s, bits, c);
      if (c.error < b.error) b = c;  // ties keep the larger s
    }
    best.push_back(b);
  }
  return best;
}

}  // namespace vs::quant
