// Quantisers for attention probabilities, chosen per attention module on calibration data by the
// error they cause downstream, ||Q(A) V - A V||^2 (summed over heads and calibration images):
//   uniform  : p^ = code * s, s from the activation observer (the classic baseline);
//   log2     : base 2 (tau = 1), s searched (FQ-ViT's log2 quantizer);
//   logsqrt2 : base sqrt(2) (tau = 2), s searched (RepQ-ViT's log-sqrt(2) quantizer);
//   agq      : Adaptive Granularity Quantization (PTQ4SAM, arXiv 2405.03144): tau in {1, 2, 4}
//              and s searched together, per module.
//   auto     : AGQ's candidates plus uniform, per module (not in the paper: on SAM's decoder the
//              image-to-token and self attentions have far lower error uniform, and uniform P.v
//              is one integer GEMM where log2 takes two).
// s is searched over one octave below the largest calibration probability, pmax * 2^(-j/16),
// j = 0..15 (a log2 grid shifted by a whole octave is the same grid with codes shifted by tau,
// so one octave covers every placement). The error uses exactly the levels the integer path
// runs (16-bit fixed point, kernels/log2_quant.h).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace vs::quant {

enum class ProbQuantizer { uniform, log2, logsqrt2, agq, best };
ProbQuantizer parse_prob_quantizer(const std::string& name);  // throws naming the choices
std::string prob_quantizer_name(ProbQuantizer q);

// Calibration samples of one attention module: for a few images, every head's probabilities
// and values.
struct AttnSample {
  int64_t N = 0;                          // tokens (queries)
  int64_t Nk = 0;                         // keys; 0: N (self-attention)
  std::vector<std::vector<float>> probs;  // per (image, head): [N, Nk]
  std::vector<std::vector<float>> v;      // per (image, head): [Nk, v_dim]
};

struct ProbChoice {
  int tau = 0;        // 0 = uniform
  float scale = 1.f;
  double error = 0;   // ||Q(A) V - A V||^2 over the sample
};

// Error of a given choice, and the best log2 choice for each tau (s searched).
double prob_error(const AttnSample& s, int bits, const ProbChoice& c);
std::vector<ProbChoice> search_log2(const AttnSample& s, int bits, const std::vector<int>& taus);

}  // namespace vs::quant
