// Trainable layers, each with its forward (keeping what backward needs) and backward side by
// side. They are built from the inference layers of a loaded model (src/nn) and turned back into
// them, so a trained model is an ordinary model folder again.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "kernels/attention.h"
#include "nn/block.h"
#include "nn/quant_linear.h"

namespace vs::train {

struct Param {
  std::string name;  // timm spelling, e.g. "blocks.0.attn.qkv.weight"
  Tensor value, grad;
  bool decay = true;  // weight decay applies (matrices); not to biases, norms, tokens
};
Param make_param(std::string name, const Tensor& value, bool decay);  // clones value

// A Linear layer under training. Dense layers train their weights directly. A QuantLinear trains
// float latent weights (initialised to its dequantised codes) through a straight-through fake
// quantiser with the layer's own per-channel scales and bits; its inputs are fake-quantised as
// the layer does at run time (static scale / zero point, or per token). Gradients pass where the
// value was not clipped. to_linear() rounds the latent weights back to codes with the same scales.
// A low-rank layer (nn::LowRankLinear) is two of these in a row: this object is its `up` factor
// and owns its `down` factor (each dense or quantised, as the layer's factors are).
class TrainLinear {
 public:
  TrainLinear() = default;
  TrainLinear(const nn::Linear& layer, const std::string& name);

  Tensor forward(const Tensor& x);                   // x [M, in] -> [M, out]; keeps x
  Tensor backward(const Tensor& dy, bool need_dx);  // sets weight/bias grads; returns dx or {}
  std::unique_ptr<nn::Linear> to_linear() const;
  void collect(std::vector<Param*>& out);
  int64_t in_features() const { return down_ ? down_->in_features() : w_.value.dim(1); }
  int64_t out_features() const { return w_.value.dim(0); }
  bool quantised() const { return quant_ || (down_ && down_->quantised()); }
  bool low_rank() const { return down_ != nullptr; }

  // Block reconstruction (compress/reconstruct), quantised layers only. learn_rounding: AdaRound
  // (train/learned_quant.h) - weights = s * clamp(floor(w / s) + h(alpha), -lim, lim) from the
  // weights before rounding (`float_weight`), alpha trained, the latent weights fixed; to_linear()
  // rounds hard (alpha >= 0 rounds up). learn_act_scale: the static input quantiser's step size
  // is a parameter (LSQ), zero point fixed; to_linear() keeps the learned value. Both parameters
  // are returned by learned() and not by collect().
  void learn_rounding(const Tensor& float_weight);
  bool learn_act_scale();  // false (nothing to learn) for per-token inputs
  void learned(std::vector<Param*>& rounding, std::vector<Param*>& scales);

 private:
  Param w_, b_;
  bool quant_ = false;
  int wbits_ = 0;
  Tensor wscale_;   // [out]
  nn::ActQuant act_;
  Tensor x_, xmask_, wq_, wmask_;  // cached GEMM input, STE masks (1 = passes), quantised weight
  Param alpha_, ascale_;           // AdaRound logits [out, in], LSQ step size [1] (when learned)
  Tensor wfloor_, xraw_;           // floor(w / s); the input before quantisation (LSQ)
  Tensor codes() const;            // the integer weight codes to_linear() stores
  std::unique_ptr<TrainLinear> down_;  // low-rank layers: the first factor (this is the second)
  // One factor (or the whole layer when not low rank).
  Tensor forward_own(const Tensor& x);
  Tensor backward_own(const Tensor& dy, bool need_dx);
  std::unique_ptr<nn::Linear> own_linear() const;
};

struct TrainLayerNorm {
  Param w, b;
  float eps = 1e-6f;
  Tensor x_;
  TrainLayerNorm() = default;
  TrainLayerNorm(const nn::LayerNorm& ln, const std::string& name);
  Tensor forward(const Tensor& x);
  Tensor backward(const Tensor& dy);
  nn::LayerNorm to_layernorm() const { return {w.value.clone(), b.value.clone(), eps}; }
};

// x += ls1 * proj(attn(qkv(norm1(x)))); x += ls2 * fc2(gelu(fc1(norm2(x)))).
// Quantised attention operands (q/k, v, probabilities: nn::Attention::quant) are fake-quantised
// as kernels::attention_quant quantises them, with straight-through gradients; scales fixed.
struct TrainBlock {
  TrainLayerNorm norm1, norm2;
  TrainLinear qkv, proj, fc1, fc2;
  kernels::HeadLayout heads;
  float scale = 1.f;
  kernels::AttnQuant aq;
  std::string prefix;  // "blocks.N"
  Param ls1, ls2;  // LayerScale gammas; value undefined when the block has none
  int64_t B = 0, N = 0;
  Tensor qkv_out_, qkv_mask_, probs_, probs_q_, pre_gelu_, y1_, y2_;
  // Learned step sizes (LSQ, block reconstruction) of q, k, v and uniform probabilities, each [1]
  // when learned; qkv_raw_ keeps the unquantised qkv output for their gradients.
  Param q_scale, k_scale, v_scale, p_scale;
  Tensor qkv_raw_;

  TrainBlock(const nn::Block& blk, const std::string& prefix);
  Tensor forward(const Tensor& x, int64_t B, int64_t N);  // x [B*N, C] -> new tensor
  Tensor backward(const Tensor& dy);                      // dL/dx
  void collect(std::vector<Param*>& out);
  nn::Block to_block() const;
  // Block reconstruction: learn every static step size of the block (Linear inputs, q, k, v,
  // uniform probabilities; LSQ), and list what is learned (rounding: the Linear layers' AdaRound
  // logits, see TrainLinear::learn_rounding).
  void learn_scales();
  void learned(std::vector<Param*>& rounding, std::vector<Param*>& scales);

 private:
  kernels::AttnQuant attention_quant() const;  // aq with the learned step sizes
};

}  // namespace vs::train
