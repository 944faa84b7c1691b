#include "nn/mha_core.h"

#include "kernels/mha_quant.h"
#include "nn/attention.h"
#include "nn/exec_mode.h"

namespace vs::nn {

void MhaCore::forward(const float* q, const float* k, const float* v, float* out, const kernels::MhaShape& s,
                      float scale, const float* bias) const {
  if (tap) (*tap)(MhaCall{q, k, v, s, scale, bias});
  if (quant.any())
    kernels::mha_quant(q, k, v, out, s, scale, bias, quant, int_engine());
  else
    kernels::mha_f32(q, k, v, out, s, scale, bias);
}

void MhaCore::load(ParamReader& p, const std::string& prefix) {
  if (auto it = p.attn_specs.find(prefix); it != p.attn_specs.end()) quant = load_attn_quant(p, prefix, it->second);
}

void MhaCore::save(const std::string& prefix, StateDict& out) const { save_attn_quant(prefix, quant, out); }

}  // namespace vs::nn
