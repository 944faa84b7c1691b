// Pieces of static PTQ shared by every model's pipeline (compress/quant/ptq.h for ViTs,
// compress/quant/sam_ptq.h for SAM): turning calibration statistics into the quantisation of an
// attention module's operands, and of one dense Linear layer.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>

#include "compress/quant/agq.h"
#include "compress/quant/observer.h"
#include "compress/quant/ptq.h"
#include "kernels/attention.h"
#include "nn/quant_linear.h"

namespace vs::quant {

// Calibration statistics of one attention module's operands, and for the probability
// quantizer's search a sample of its probabilities and values.
struct AttnStats {
  ActObserver q, k, v, p;
  AttnSample sample;
};

// The attention quantisation from its statistics (q/k at s.qk_bits, v and probabilities at
// s.prob_bits with s.prob_quantizer); `report` gets the probability quantizers' errors
// ||Q(A) V - A V||^2 on the sample.
kernels::AttnQuant attn_quant(const AttnStats& o, const PtqSettings& s, nlohmann::json& report);

// A dense layer quantised: weights per output channel at wbits (s.weight_observer), inputs at
// abits, per token when `dynamic`, else per tensor from `inputs` (s.act_observer).
std::unique_ptr<nn::QuantLinear> quantize_dense(const nn::DenseLinear& dense, int wbits, int abits, bool dynamic,
                                                const ActObserver* inputs, const PtqSettings& s);

}  // namespace vs::quant
