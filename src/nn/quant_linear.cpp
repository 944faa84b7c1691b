#include "nn/quant_linear.h"

#include <algorithm>
#include <atomic>
#include <cmath>

#include "kernels/pack.h"
#include "core/error.h"
#include "kernels/elementwise.h"
#include "kernels/gemm_int8.h"
#include "kernels/quantize_act.h"
#include "kernels/twin_quant.h"

namespace vs::nn {


QuantLinear::QuantLinear(Tensor codes, Tensor wscale, Tensor bias, int wbits, ActQuant act)
    : codes_(std::move(codes)), wscale_(std::move(wscale)), bias_(std::move(bias)), wbits_(wbits), act_(act) {
  check(codes_.dtype() == DType::i8 && codes_.ndim() == 2, "QuantLinear: codes must be int8 [out, in]");
  check(wbits_ >= 2 && wbits_ <= 8, "QuantLinear: weight bits must be 2..8, got " + std::to_string(wbits_));
  check(act_.bits >= 2 && act_.bits <= 8, "QuantLinear: activation bits must be 2..8");
  check(wbits_ <= kernels::int8_exact_weight_bits(act_.bits),
        "QuantLinear: W" + std::to_string(wbits_) + "A" + std::to_string(act_.bits) +
            " cannot run exactly on this CPU (no VNNI: 8-bit activations need weights of at most " +
            std::to_string(kernels::int8_exact_weight_bits(act_.bits)) + " bits)");
  check(wscale_.numel() == codes_.dim(0), "QuantLinear: one weight scale per output channel expected");
  const int64_t N = codes_.dim(0), K = codes_.dim(1);
  if (act_.twin_m > 0) {
    check(!act_.dynamic, "QuantLinear: twin-uniform inputs are static");
    const kernels::TwinQuant t{act_.bits, act_.scale, act_.zero, act_.twin_m};
    kernels::check_twin(t, "QuantLinear");
    check(kernels::twin_fits_int32(t, K, (1 << (wbits_ - 1)) - 1), "QuantLinear: twin-uniform ratio 2^" +
                                                                         std::to_string(act_.twin_m) + " overflows int32 here");
  }
  const int8_t* c = codes_.data<int8_t>();
  const int32_t lim = (1 << (wbits_ - 1)) - 1;
  wsum_ = Tensor({N}, DType::i32);
  for (int64_t n = 0; n < N; ++n) {
    int32_t s = 0;
    for (int64_t k = 0; k < K; ++k) {
      if (std::abs(c[n * K + k]) > lim)  // (no check(): its message would be built per element)
        throw Error("QuantLinear: weight codes outside the symmetric " + std::to_string(wbits_) + "-bit range +-" +
                    std::to_string(lim));
      s += c[n * K + k];
    }
    wsum_.data<int32_t>()[n] = s;
  }
}

std::unique_ptr<QuantLinear> QuantLinear::from_dense(const DenseLinear& d, const Tensor& wscale,
                                                     int wbits, ActQuant act) {
  const Tensor& w = d.weight();
  const int64_t N = w.dim(0), K = w.dim(1);
  const int32_t lim = (1 << (wbits - 1)) - 1;
  Tensor codes({N, K}, DType::i8);
  for (int64_t n = 0; n < N; ++n) {
    const float inv = 1.f / wscale.f32()[n];
    for (int64_t k = 0; k < K; ++k) {
      int32_t q = int32_t(std::nearbyint(w.f32()[n * K + k] * inv));
      codes.data<int8_t>()[n * K + k] = int8_t(std::clamp(q, -lim, lim));
    }
  }
  return std::make_unique<QuantLinear>(codes, wscale.clone(), d.bias(), wbits, act);
}

void QuantLinear::forward(const float* x, float* y, int64_t M, Epilogue ep) const {
  // Tall inputs (SAM's 1x1 convs over 65536 pixels) run in row tiles, so that each tile's codes
  // and int32 results stay in cache between quantisation, GEMM and epilogue instead of going
  // through memory (~67 MB each way for a 65536 x 256 layer). Rows are independent, so the
  // result is the same as one call.
  const int64_t N = out_features(), K = in_features();
  const int64_t tile = row_tile();
  if (M > 4 * tile) {
    for (int64_t m0 = 0; m0 < M; m0 += tile) forward_rows(x + m0 * K, y + m0 * N, std::min(tile, M - m0), ep);
    return;
  }
  forward_rows(x, y, M, ep);
}

void QuantLinear::forward_rows(const float* x, float* y, int64_t M, Epilogue ep) const {
  if (act_.twin_m > 0) {  // two regions, two GEMMs, one epilogue (kernels/twin_quant.h)
    const int64_t N = out_features(), K = in_features();
    Tensor q = Tensor::empty({M, K}, DType::u8), q2 = Tensor::empty({M, K}, DType::u8);
    Tensor acc = Tensor::empty({M, N}, DType::i32), acc2 = Tensor::empty({M, N}, DType::i32);
    const kernels::IntGemm g{1, M, N, K, true};
    kernels::quantize_twin(x, q.data<uint8_t>(), q2.data<uint8_t>(), M, K, {act_.bits, act_.scale, act_.zero, act_.twin_m});
    kernels::gemm_u8s8_s32(g, q.data<uint8_t>(), act_.zero, codes_.data<int8_t>(), acc.data<int32_t>(), int_engine());
    kernels::gemm_u8s8_s32(g, q2.data<uint8_t>(), 0, codes_.data<int8_t>(), acc2.data<int32_t>(), int_engine());
    kernels::combine_twin(acc.data<int32_t>(), acc2.data<int32_t>(), M * N, act_.twin_m);
    kernels::Dequant d = weight_dequant(ep);
    d.a_scale = &act_.scale;
    kernels::dequantize_acc(acc.data<int32_t>(), M, N, d, y, N);
    return;
  }
  InputCodes c = input_codes(M);
  quantize_input(x, M, c);
  forward_codes(c, y, M, ep);
}

void QuantLinear::set_input_rotation(std::shared_ptr<const kernels::Rotation> rot, const std::string& what) {
  if (rot) {
    kernels::check_rotation(*rot, what);
    check(rot->dim() == in_features(), what + ": input rotation of width " + std::to_string(rot->dim()) + " for " +
                                           std::to_string(in_features()) + " inputs");
    check(act_.dynamic && act_.twin_m == 0, what + ": an input rotation needs per-token (dynamic) input scales");
  }
  rot_ = std::move(rot);
}

void QuantLinear::quantize_input(const float* x, int64_t M, InputCodes& c) const {
  // Row by row through encode_row, the function every fused producer calls (per tensor, per token
  // with its zero points subtracted after the GEMM, rotated first where the layer has a rotation).
  const kernels::RowCodes rc = row_codes(c);
  const int64_t K = in_features();
#pragma omp parallel for schedule(static) if (M * K > 16384)
  for (int64_t m = 0; m < M; ++m) kernels::encode_row(x + m * K, K, m, rc);
}

bool QuantLinear::takes_codes(int64_t M) const {
  return act_.twin_m == 0 && M <= 4 * row_tile();
}

int64_t QuantLinear::row_tile() const {
  return std::max<int64_t>(256, (int64_t(1) << 20) / (4 * out_features()));
}

QuantLinear::InputCodes QuantLinear::input_codes(int64_t M) const {
  InputCodes c;
  c.q = Tensor::empty({M, in_features()}, DType::u8);
  if (act_.dynamic) {
    c.scale = Tensor::empty({M});
    c.zero = Tensor::empty({M}, DType::i32);
  }
  return c;
}

kernels::RowCodes QuantLinear::row_codes(InputCodes& c) const {
  kernels::RowCodes r;
  r.q = c.q.data<uint8_t>();
  r.bits = act_.bits;
  r.per_row = act_.dynamic;
  r.scale = act_.scale;
  r.zero = act_.zero;
  r.rot = rot_.get();
  if (act_.dynamic) {
    r.scales = c.scale.f32();
    r.zeros = c.zero.data<int32_t>();
  }
  return r;
}

// The weight side of the dequantisation (per-channel scales, bias, epilogue); callers add the input's.
kernels::Dequant QuantLinear::weight_dequant(Epilogue ep) const {
  kernels::Dequant d;
  d.b_scale = wscale_.f32();
  d.b_per_col = true;
  d.bias = bias_.defined() ? bias_.f32() : nullptr;
  d.ep = ep;
  return d;
}

// The integer GEMM of the input codes, and how its int32 results become floats.
kernels::Dequant QuantLinear::gemm(const InputCodes& in, int64_t M, Epilogue ep, Tensor& acc) const {
  const int64_t N = out_features(), K = in_features();
  acc = Tensor::empty({M, N}, DType::i32);
  kernels::gemm_u8s8_s32({1, M, N, K, true}, in.q.data<uint8_t>(), 0, codes_.data<int8_t>(), acc.data<int32_t>(),
                         int_engine(), packed_.get());
  kernels::Dequant d = weight_dequant(ep);
  d.b_sums = wsum_.data<int32_t>();
  if (act_.dynamic) {
    d.a_scale = in.scale.f32();
    d.a_per_row = true;
    d.a_zero_rows = in.zero.data<int32_t>();
  } else {
    d.a_scale = &act_.scale;
    d.a_zero_all = act_.zero;
  }
  return d;
}

void QuantLinear::forward_codes(const InputCodes& in, float* y, int64_t M, Epilogue ep, bool add) const {
  Tensor acc;
  kernels::Dequant d = gemm(in, M, ep, acc);
  d.add = add;
  kernels::dequantize_acc(acc.data<int32_t>(), M, out_features(), d, y, out_features());
}

void QuantLinear::forward_codes(const InputCodes& in, int64_t M, Epilogue ep, const QuantLinear& next,
                                InputCodes& out) const {
  const kernels::RowCodes rc = next.row_codes(out);
  const int64_t N = out_features();
  forward_codes(in, M, ep, [&](const float* row, int64_t m) { kernels::encode_row(row, N, m, rc); });
}

void QuantLinear::forward_codes(const InputCodes& in, int64_t M, Epilogue ep, const kernels::RowSink& sink) const {
  Tensor acc;
  const kernels::Dequant d = gemm(in, M, ep, acc);
  kernels::dequantize_acc_rows(acc.data<int32_t>(), M, out_features(), d, sink);
}

const QuantLinear* taking_codes(const Linear& l, int64_t M) {
  auto* q = dynamic_cast<const QuantLinear*>(&l);
  return q && q->takes_codes(M) ? q : nullptr;
}

void forward_into(const Linear& l, const float* x, float* y, int64_t M, bool add) {
  if (!add) {
    l.forward(x, y, M);
    return;
  }
  if (auto* q = taking_codes(l, M)) {
    QuantLinear::InputCodes c = q->input_codes(M);
    q->quantize_input(x, M, c);
    q->forward_codes(c, y, M, Epilogue::none, true);
    return;
  }
  Tensor t = Tensor::empty({M, l.out_features()});
  l.forward(x, t.f32(), M);
  kernels::add_inplace(y, t.f32(), M * l.out_features());
}

std::string QuantLinear::kind() const {
  // (Appended piece by piece: GCC 12 warns falsely (-Wrestrict) on the chained operator+.)
  std::string k = "w";
  k += std::to_string(wbits_);
  k += 'a';
  k += std::to_string(act_.bits);
  if (act_.dynamic) k += 'd';
  if (act_.twin_m > 0) {
    k += 't';
    k += std::to_string(act_.twin_m);
  }
  if (rot_) k += 'r';
  return k;
}

int64_t QuantLinear::num_params() const {
  return codes_.numel() + (bias_.defined() ? bias_.numel() : 0);
}

int64_t QuantLinear::bytes() const {
  const int64_t code_bytes = wbits_ < 8 ? codes_.dim(0) * quant::packed_bytes(codes_.dim(1), wbits_) : codes_.numel();
  const int64_t rot_bytes = rot_ ? 4 * (int64_t(rot_->signs.size()) + int64_t(rot_->mix.size())) : 0;
  return code_bytes + 4 * (wscale_.numel() + (bias_.defined() ? bias_.numel() : 0)) + (act_.dynamic ? 0 : 8) + rot_bytes;
}

Tensor QuantLinear::dequantized_weight() const {
  const int64_t N = codes_.dim(0), K = codes_.dim(1);
  Tensor w({N, K});
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) w.f32()[n * K + k] = float(codes_.data<int8_t>()[n * K + k]) * wscale_.f32()[n];
  return w;
}

// On disk: PREFIX.qweight (I8 [out, in] at 8 bits; below, U8 [out, ceil(in * bits / 8)]: each
// row's codes bit-packed, kernels/pack.h - at 4 bits two codes per byte), PREFIX.wscale [out],
// PREFIX.bias, and for static activations PREFIX.ascale [1] and PREFIX.azero (I32 [1]). Bit widths
// live in config.json's "quantization" section.
void QuantLinear::save(const std::string& prefix, StateDict& out) const {
  const int64_t N = codes_.dim(0), K = codes_.dim(1);
  if (wbits_ < 8) {
    const int64_t Kp = quant::packed_bytes(K, wbits_);
    Tensor packed({N, Kp}, DType::u8);
    for (int64_t n = 0; n < N; ++n) {
      auto row = quant::pack_bits(codes_.data<int8_t>() + n * K, K, wbits_);
      std::copy(row.begin(), row.end(), packed.data<uint8_t>() + n * Kp);
    }
    out[prefix + ".qweight"] = packed;
  } else {
    out[prefix + ".qweight"] = codes_;
  }
  out[prefix + ".wscale"] = wscale_;
  if (bias_.defined()) out[prefix + ".bias"] = bias_;
  if (!act_.dynamic) {
    out[prefix + ".ascale"] = Tensor::from({1}, {act_.scale});
    Tensor z({1}, DType::i32);
    z.data<int32_t>()[0] = act_.zero;
    out[prefix + ".azero"] = z;
  }
  if (rot_) {
    out[prefix + ".rot_signs"] = Tensor::from({rot_->dim()}, rot_->signs);
    out[prefix + ".rot_mix"] = Tensor::from({rot_->r, rot_->r}, rot_->mix);
  }
}

std::unique_ptr<QuantLinear> QuantLinear::load(ParamReader& p, const std::string& prefix, int64_t N,
                                               int64_t K, int wbits, ActQuant act) {
  Tensor q = p.get_any(prefix + ".qweight");
  Tensor codes({N, K}, DType::i8);
  const int64_t Kp = quant::packed_bytes(K, wbits);
  // Files of earlier versions stored 5- to 7-bit codes one per byte (I8) and 2- to 3-bit codes
  // as 4-bit ones: both are still read.
  const int64_t legacy_kp = quant::packed_bytes(K, 4);
  if (wbits < 8 && q.dtype() == DType::u8 && (q.shape() == Shape{N, Kp} || (wbits < 4 && q.shape() == Shape{N, legacy_kp}))) {
    const int stored = q.dim(1) == Kp ? wbits : 4;
    for (int64_t n = 0; n < N; ++n)
      quant::unpack_bits(q.data<uint8_t>() + n * q.dim(1), K, stored, codes.data<int8_t>() + n * K);
  } else {
    check(q.dtype() == DType::i8 && q.shape() == Shape{N, K} && wbits > 4,
          p.source() + ": tensor '" + prefix + ".qweight' should be " +
              (wbits < 8 ? "U8 " + shape_str({N, Kp}) + " (" + std::to_string(wbits) + "-bit codes, bit-packed)"
                         : "I8 " + shape_str({N, K})));
    codes = q;
  }
  Tensor ws = p.get(prefix + ".wscale", {N});
  Tensor bias = p.has(prefix + ".bias") ? p.get(prefix + ".bias", {N}) : Tensor();
  if (!act.dynamic) {
    act.scale = p.get(prefix + ".ascale", {1}).f32()[0];
    Tensor z = p.get_any(prefix + ".azero");
    check(z.dtype() == DType::i32 && z.numel() == 1, p.source() + ": tensor '" + prefix + ".azero' should be I32 [1]");
    act.zero = z.data<int32_t>()[0];
    check(act.scale > 0 && std::isfinite(act.scale), p.source() + ": '" + prefix + ".ascale' is not a positive number");
    check(act.zero >= 0 && act.zero < (1 << (act.twin_m > 0 ? act.bits - 1 : act.bits)),
          p.source() + ": '" + prefix + ".azero' is outside the code range");
  }
  for (int64_t n = 0; n < N; ++n)
    check(ws.f32()[n] > 0 && std::isfinite(ws.f32()[n]), p.source() + ": '" + prefix + ".wscale' has a non-positive scale");
  std::unique_ptr<QuantLinear> layer;
  try {  // the constructor checks the codes' range and the bit widths; its errors get the file's name
    layer = std::make_unique<QuantLinear>(codes, ws, bias, wbits, act);
  } catch (const Error& e) {
    throw Error(p.source() + ": '" + prefix + "': " + e.what());
  }
  if (p.has(prefix + ".rot_signs")) {  // PREFIX.rot_signs [in], PREFIX.rot_mix [r, r]
    Tensor sg = p.get(prefix + ".rot_signs", {K}), mx = p.get_any(prefix + ".rot_mix");
    check(mx.dtype() == DType::f32 && mx.ndim() == 2 && mx.dim(0) == mx.dim(1) && mx.dim(0) > 0 && K % mx.dim(0) == 0,
          p.source() + ": tensor '" + prefix + ".rot_mix' should be F32 [r, r] with r dividing " + std::to_string(K));
    auto rot = std::make_shared<kernels::Rotation>();
    rot->r = mx.dim(0);
    rot->p = K / rot->r;
    rot->signs.assign(sg.f32(), sg.f32() + K);
    rot->mix.assign(mx.f32(), mx.f32() + mx.numel());
    layer->set_input_rotation(std::move(rot), p.source() + ": '" + prefix + "'");
  }
  return layer;
}

}  // namespace vs::nn

namespace vs::nn {

std::unique_ptr<Linear> load_linear(ParamReader& p, const std::string& prefix, int64_t out,
                                    int64_t in, bool bias) {
  auto it = p.linear_specs.find(prefix);
  if (it != p.linear_specs.end() && it->second.wbits > 0) {
    check(!bias || p.has(prefix + ".bias"), p.source() + ": missing tensor '" + prefix + ".bias'");
    ActQuant act{it->second.abits, it->second.dynamic, 1.f, 0, it->second.twin_m};
    return QuantLinear::load(p, prefix, out, in, it->second.wbits, act);
  }
  Tensor b = bias || p.has(prefix + ".bias") ? p.get(prefix + ".bias", {out}) : Tensor();
  return std::make_unique<DenseLinear>(p.get(prefix + ".weight", {out, in}), b);
}

}  // namespace vs::nn
