// The attention core softmax(scale * q k^T + bias) v of a module whose q, k, v come from separate
// places (SAM: TinyViT's windows, the mask decoder's self / cross attention), float or with the
// quantisation points of kernels::AttnQuant. A calibration stage may set `tap` to see every
// call's operands (the compress/capture.h idea for attention).
#pragma once
#include <functional>
#include <memory>
#include <string>

#include "kernels/attention.h"
#include "kernels/mha.h"
#include "nn/linear.h"
#include "nn/params.h"

namespace vs::nn {

struct MhaCall {
  const float *q, *k, *v;
  kernels::MhaShape shape;
  float scale;
  const float* bias;  // [H, Nq, Nk] or null
};
using MhaTap = std::function<void(const MhaCall&)>;

struct MhaCore {
  kernels::AttnQuant quant;     // default: float
  const MhaTap* tap = nullptr;  // set only while calibrating

  void forward(const float* q, const float* k, const float* v, float* out, const kernels::MhaShape& s,
               float scale, const float* bias = nullptr) const;
  // PREFIX.{q_scale, q_zero, k_scale, k_zero, v_scale, p_scale} as p.attn_specs[prefix] says
  // (nn/attention.h's format).
  void load(ParamReader& p, const std::string& prefix);
  void save(const std::string& prefix, StateDict& out) const;
};

// One attention module as compression stages see it: its core, and the projections whose
// output rows are the queries (rows 0..w-1 of *q) and keys (rows k_row0..k_row0+w-1 of *k); a
// fused qkv projection has q == k and k_row0 = w.
struct MhaModule {
  std::string name;  // e.g. "image_encoder.layers.1.blocks.0.attn"
  MhaCore* core;
  std::unique_ptr<Linear>* q;
  std::unique_ptr<Linear>* k;
  int64_t k_row0 = 0;
};

}  // namespace vs::nn
