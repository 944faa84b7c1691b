// QuantLinear: a Linear whose weights are stored as integer codes (int8, or int4 packed two per
// byte on disk) with one scale per output channel (symmetric), and whose input is quantised to
// u8 codes (asymmetric) - statically with a calibrated scale / zero point, or dynamically per
// token. It runs as a real integer GEMM (oneDNN u8 x s8 -> s32, then one dequantisation pass with
// bias and GELU fused), or, in ExecMode::simulated, with the same integers computed in float
// (fake quantisation); the two give bit-identical outputs (nn/exec_mode.h).
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "kernels/quantize_act.h"
#include "nn/exec_mode.h"
#include "nn/linear.h"
#include "nn/params.h"

namespace vs::nn {


struct ActQuant {
  int bits = 8;          // 2..8
  bool dynamic = false;  // per-token range computed at run time (no calibration)
  float scale = 1.f;     // static only
  int32_t zero = 0;      // static only
  int twin_m = 0;        // > 0: twin-uniform input (kernels/twin_quant.h): scale, zero = s1, z1; s2 = 2^m s1
};

class QuantLinear final : public Linear {
 public:
  // codes: i8 [out, in] with |code| <= 2^(wbits-1) - 1; wscale: [out]; bias: [out] or undefined.
  QuantLinear(Tensor codes, Tensor wscale, Tensor bias, int wbits, ActQuant act);
  // Quantises a dense layer's weights per output channel with the given scales.
  static std::unique_ptr<QuantLinear> from_dense(const DenseLinear& d, const Tensor& wscale,
                                                 int wbits, ActQuant act);
  // Reads what save() wrote (wbits and act come from config.json).
  static std::unique_ptr<QuantLinear> load(ParamReader& p, const std::string& prefix,
                                           int64_t out, int64_t in, int wbits, ActQuant act);

  using Linear::forward;
  void forward(const float* x, float* y, int64_t M, Epilogue ep) const override;
  int64_t in_features() const override { return codes_.dim(1); }
  int64_t out_features() const override { return codes_.dim(0); }
  std::string kind() const override;  // "w8a8", "w4a8d" (d = dynamic)...
  int64_t num_params() const override;
  int64_t bytes() const override;     // codes at wbits (int4 packed) + fp32 scales and bias
  int64_t macs_per_row() const override { return codes_.numel(); }
  void save(const std::string& prefix, StateDict& out) const override;

  // A rotation of the input channels (kernels/rotation.h): the stored weights are W R, and every
  // input row is rotated before it is quantised. Per-token (dynamic) inputs only: static scales
  // are calibrated on unrotated inputs. Errors name `what` (the file and tensor when loading).
  void set_input_rotation(std::shared_ptr<const kernels::Rotation> rot, const std::string& what = "QuantLinear");
  const kernels::Rotation* input_rotation() const { return rot_.get(); }

  int wbits() const { return wbits_; }
  const ActQuant& act() const { return act_; }
  Tensor dequantized_weight() const;  // codes * scale, [out, in]

  // forward() in two halves, so that whatever produces the input (a LayerNorm, the previous
  // QuantLinear) can write this layer's input codes in its own pass, while each row is in L1,
  // instead of writing floats that are read again to be quantised (nn/block.cpp). Bit-identical
  // to forward(). Not for twin-uniform inputs, nor for inputs tall enough for forward()'s tiling.
  struct InputCodes {
    Tensor q;            // u8 [M, in]
    Tensor scale, zero;  // [M] each when the input is quantised per token
  };
  bool takes_codes(int64_t M) const;
  InputCodes input_codes(int64_t M) const;              // uninitialised buffers for M rows
  kernels::RowCodes row_codes(InputCodes& c) const;     // where a producer writes them
  void quantize_input(const float* x, int64_t M, InputCodes& c) const;  // forward()'s own first half
  // add: y += the output (a residual connection, in the dequantisation pass; Epilogue::none only).
  void forward_codes(const InputCodes& in, float* y, int64_t M, Epilogue ep, bool add = false) const;
  // The same, with the output written as `next`'s input codes (e.g. fc1 -> GELU -> fc2).
  void forward_codes(const InputCodes& in, int64_t M, Epilogue ep, const QuantLinear& next, InputCodes& out) const;
  // The same, each output row handed to sink(row, m) as floats in an L1 buffer (e.g. qkv -> the
  // attention operands' codes).
  void forward_codes(const InputCodes& in, int64_t M, Epilogue ep, const kernels::RowSink& sink) const;

 private:
  void forward_rows(const float* x, float* y, int64_t M, Epilogue ep) const;  // one tile of forward()
  int64_t row_tile() const;
  kernels::Dequant weight_dequant(Epilogue ep) const;
  kernels::Dequant gemm(const InputCodes& in, int64_t M, Epilogue ep, Tensor& acc) const;

  Tensor codes_, wscale_, bias_, wsum_;  // wsum_: per-row sum of codes (zero-point correction)
  // codes_ reordered once into oneDNN's VNNI layout (the integer engine's packed copy).
  std::shared_ptr<kernels::WeightCache> packed_ = std::make_shared<kernels::WeightCache>();
  int wbits_;
  ActQuant act_;
  std::shared_ptr<const kernels::Rotation> rot_;
};

// `l` as a QuantLinear that takes its input as codes for M rows, or null.
const QuantLinear* taking_codes(const Linear& l, int64_t M);

// l.forward(x, y, M), or with `add` y += l's output (fused into the dequantisation when l takes codes).
void forward_into(const Linear& l, const float* x, float* y, int64_t M, bool add);

}  // namespace vs::nn
