#include "compress/quant/sam_ptq.h"

#include <algorithm>
#include <map>

#include "compress/capture.h"
#include "compress/quant/attn_calib.h"
#include "compress/quant/big.h"
#include "core/error.h"
#include "core/progress.h"
#include "io/image.h"
#include "kernels/gemm_int8.h"
#include "kernels/mha_quant.h"

namespace vs::quant {
namespace {

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

// Rows [rows, width] of a strided operand, densely.
std::vector<float> gather(const float* x, int64_t rows, int64_t width, int64_t ld, int64_t step = 1) {
  std::vector<float> out;
  out.reserve(size_t((rows + step - 1) / step * width));
  for (int64_t r = 0; r < rows; r += step) out.insert(out.end(), x + r * ld, x + r * ld + width);
  return out;
}

// Runs encoder and decoder over the calibration items (what taps and captures observe).
void run_model(const models::SamModel& m, const std::vector<SamCalibItem>& items, bool progress, const std::string& label) {
  Progress bar(label, int64_t(items.size()));
  for (size_t i = 0; i < items.size(); ++i) {
    models::SamImageInput in = m.preprocess(load_image(items[i].image));
    Tensor emb = m.embed(in);
    for (auto& p : items[i].prompts) m.decode(emb, m.to_model_points(p, in));
    if (progress) bar.update(int64_t(i) + 1);
  }
  bar.finish();
}

// Sets `tap` on every module for the lifetime of the object (also on an exception).
struct Tapped {
  std::vector<nn::MhaModule>& mods;
  std::vector<nn::MhaTap> taps;
  Tapped(std::vector<nn::MhaModule>& m, std::vector<nn::MhaTap> t) : mods(m), taps(std::move(t)) {
    for (size_t i = 0; i < mods.size(); ++i) mods[i].core->tap = &taps[i];
  }
  ~Tapped() {
    for (auto& m : mods) m.core->tap = nullptr;
  }
};

// BIG: key statistics of every module on the first kBigItems items, then the flips.
constexpr size_t kBigItems = 8;
constexpr int64_t kBigSampleValues = int64_t(1) << 20;  // per module, spread over the items
nlohmann::json bimodal_integration(models::SamModel& m, std::vector<nn::MhaModule>& mods, const PtqSettings& s,
                                   const std::vector<SamCalibItem>& calib, bool progress) {
  struct Keys {
    std::vector<double> sum;
    int64_t rows = 0;
    std::vector<float> sample;
  };
  std::vector<Keys> keys(mods.size());
  const std::vector<SamCalibItem> first(calib.begin(), calib.begin() + long(std::min(calib.size(), kBigItems)));
  const int64_t per_call = kBigSampleValues / int64_t(first.size() * 2);  // decoder modules run ~2x per item
  {
    std::vector<nn::MhaTap> taps;
    for (size_t i = 0; i < mods.size(); ++i)
      taps.push_back([&, i](const nn::MhaCall& c) {
        Keys& k = keys[i];
        const int64_t w = c.shape.H * c.shape.dqk, rows = c.shape.B * c.shape.Nk;
        k.sum.resize(size_t(w), 0.0);
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t j = 0; j < w; ++j) k.sum[size_t(j)] += c.k[r * c.shape.ldk + j];
        k.rows += rows;
        const int64_t step = std::max<int64_t>(1, rows * w / std::max<int64_t>(1, per_call));
        auto part = gather(c.k, rows, w, c.shape.ldk, step);
        k.sample.insert(k.sample.end(), part.begin(), part.end());
      });
    Tapped t(mods, std::move(taps));
    run_model(m, first, progress, "BIG stats");
  }
  nlohmann::json report = nlohmann::json::object();
  for (size_t i = 0; i < mods.size(); ++i) {
    auto& md = mods[i];
    const int64_t w = int64_t(keys[i].sum.size());
    std::vector<double> mean(keys[i].sum);
    for (double& v : mean) v /= double(std::max<int64_t>(1, keys[i].rows));
    BigDecision d = decide_big(keys[i].sample, w, mean, s.qk_bits, s.act_observer);
    if (!d.flip.empty()) {
      std::vector<int64_t> krows;
      for (int64_t c : d.flip) krows.push_back(md.k_row0 + c);
      if (md.q == md.k) {  // fused qkv: one layer, both sets of rows
        krows.insert(krows.end(), d.flip.begin(), d.flip.end());
        negate_rows(*md.k, krows);
      } else {
        negate_rows(*md.q, d.flip);
        negate_rows(*md.k, krows);
      }
    }
    report[md.name] = {{"bimodal", d.test.bimodal}, {"peaks", {d.test.left_peak, d.test.right_peak}},
                       {"flipped_channels", d.flip.size()}, {"key_mse_before", d.mse_before},
                       {"key_mse_after", d.mse_after}};
  }
  return report;
}

// Attention statistics from one call: q, k, v per tensor, every head's probabilities, and for
// the probability quantizer's search a sample of (probabilities, values) from the first
// kSampleCalls calls of each module, at most kSampleBatch batch entries (windows) per call.
constexpr int64_t kSampleCalls = 8, kSampleBatch = 4;
struct AttnCalib : AttnStats {
  int64_t calls = 0;
  void observe(const nn::MhaCall& c) {
    const auto& s = c.shape;
    const int64_t wq = s.H * s.dqk, wv = s.H * s.dv;
    auto obs = [](ActObserver& o, const std::vector<float>& x, int64_t width) {
      o.observe(x.data(), int64_t(x.size()) / width, width);
    };
    obs(q, gather(c.q, s.B * s.Nq, wq, s.ldq), wq);
    obs(k, gather(c.k, s.B * s.Nk, wq, s.ldk), wq);
    obs(v, gather(c.v, s.B * s.Nk, wv, s.ldv), wv);
    Tensor probs = Tensor::empty({s.B, s.Nq, s.Nk});
    const int64_t stride = std::max<int64_t>(1, s.B / kSampleBatch);
    sample.N = s.Nq;
    sample.Nk = s.Nk;
    for (int64_t h = 0; h < s.H; ++h) {
      kernels::mha_probs_f32(c.q, c.k, probs.f32(), s, c.scale, c.bias, h);
      p.observe(probs.f32(), s.B * s.Nq, s.Nk);
      if (calls >= kSampleCalls) continue;
      for (int64_t b = 0; b < s.B; b += stride) {
        const float* pb = probs.f32() + b * s.Nq * s.Nk;
        sample.probs.emplace_back(pb, pb + s.Nq * s.Nk);
        sample.v.push_back(gather(c.v + b * s.Nk * s.ldv + h * s.dv, s.Nk, s.dv, s.ldv));
      }
    }
    ++calls;
  }
};

}  // namespace

nlohmann::json quantize_sam(models::SamModel& model, const PtqSettings& s, const std::vector<SamCalibItem>& calib,
                            bool progress) {
  for (int b : {s.wbits, s.abits, s.qk_bits, s.prob_bits}) check_bits(b);
  check(!s.dynamic && !s.smoothquant, "SAM quantisation: --dynamic and --sq-b are not supported (static PTQ only)");
  check(s.wbits <= 8 && s.abits <= 8, "SAM quantisation: integer execution needs weight and activation bits <= 8");
  check(!calib.empty(), "SAM quantisation needs calibration images (--calib DIR --split FILE)");
  for (auto& it : calib) check(!it.prompts.empty(), it.image + ": calibration image without a prompt");
  auto layers = model.linears();
  for (auto& [name, slot] : layers)
    check(dynamic_cast<nn::DenseLinear*>(slot->get()) != nullptr,
          "layer '" + name + "' is already quantised; quantise the float model");
  for (auto& k : s.keep_float)
    check(std::any_of(layers.begin(), layers.end(), [&](auto& l) { return l.first == k; }),
          "--keep-float: no Linear layer named '" + k + "' (see `vitshrink info`)");
  auto mods = model.attentions();
  const bool quant_attn = s.qk_bits < 16 || s.prob_bits < 16;

  // 0. BIG, before anything is observed.
  nlohmann::json big_report;
  if (s.big) {
    check(s.qk_bits < 16, "BIG needs quantised keys (--attn-bits < 16)");
    big_report = bimodal_integration(model, mods, s, calib, progress);
  }

  // 1. Calibration: every Linear's input, every attention module's operands.
  std::map<std::string, ActObserver> observers;
  std::vector<AttnCalib> attn(quant_attn ? mods.size() : 0);
  {
    compress::Capture cap(layers, [&](const compress::Captured& c) { observers.at(c.name).observe(c.x, c.rows, c.in); });
    for (auto& n : cap.names()) observers[n];  // made up front: the callback only looks up
    std::vector<nn::MhaTap> taps;
    std::vector<nn::MhaModule> tapped;
    for (size_t i = 0; i < attn.size(); ++i) {
      taps.push_back([&, i](const nn::MhaCall& c) { attn[i].observe(c); });
      tapped.push_back(mods[i]);
    }
    Tapped t(tapped, std::move(taps));
    run_model(model, calib, progress, "calibrate");
  }

  // 2. Linear layers.
  nlohmann::json per_layer = nlohmann::json::object();
  for (auto& [name, slot] : layers) {
    if (std::find(s.keep_float.begin(), s.keep_float.end(), name) != s.keep_float.end()) continue;
    const auto* dense = dynamic_cast<const nn::DenseLinear*>(slot->get());
    const int ab = s.abits, wb = std::min(s.wbits, kernels::int8_exact_weight_bits(ab));  // see gemm_int8.h
    const bool dyn = std::any_of(s.dynamic_for.begin(), s.dynamic_for.end(), [&](auto& suf) { return ends_with(name, suf); });
    check(dyn || observers.at(name).count() > 0, "layer '" + name + "' was never run during calibration");
    *slot = quantize_dense(*dense, wb, ab, dyn, dyn ? nullptr : &observers.at(name), s);
    per_layer[name] = {{"wbits", wb}, {"abits", ab}, {"dynamic", dyn}};
  }

  // 3. Attention operands.
  nlohmann::json per_attn = nlohmann::json::object();
  for (size_t i = 0; i < attn.size(); ++i) {
    nlohmann::json errors;
    const kernels::AttnQuant& a = mods[i].core->quant = attn_quant(attn[i], s, errors);
    per_attn[mods[i].name] = {{"q_bits", a.q_bits}, {"k_bits", a.k_bits}, {"v_bits", a.v_bits},
                              {"p_bits", a.p_bits}, {"p_tau", a.p_tau}};
    if (!errors.is_null()) per_attn[mods[i].name]["prob_error"] = errors;
  }
  std::vector<std::string> float_points{
      "convolutions (stem, MBConv and patch-merging depthwise, local_conv, neck.2, output upscaling, mask downscaling)",
      "LayerNorm", "GELU / ReLU", "softmax input", "residual adds", "relative position biases",
      "hypernetwork x upscaled embedding product"};
  if (s.qk_bits >= 16) float_points.insert(float_points.begin(), "attention q, k");
  if (s.prob_bits >= 16) float_points.insert(float_points.begin(), "attention v, probabilities");
  return {{"method", "static"},
          {"model", "sam"},
          {"requested", {{"wbits", s.wbits}, {"abits", s.abits}}},
          {"cpu_vnni", kernels::cpu_has_vnni()},
          {"weights", {{"granularity", "channel"}, {"symmetric", true}, {"observer", observer_name(s.weight_observer)}}},
          {"activations", {{"granularity", "tensor"}, {"symmetric", false}, {"observer", observer_name(s.act_observer)}}},
          {"float_points", float_points},
          {"probabilities", prob_quantizer_name(s.prob_quantizer)},
          {"calibration_images", int64_t(calib.size())},
          {"layers", per_layer},
          {"big", big_report.is_null() ? nlohmann::json("off") : big_report},
          {"attention", per_attn}};
}

}  // namespace vs::quant
