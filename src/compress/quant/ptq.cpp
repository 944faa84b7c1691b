#include "compress/quant/ptq.h"

#include <algorithm>
#include <chrono>
#include <fmt/format.h>
#include <cmath>
#include <functional>
#include <map>
#include <tuple>

#include "compress/capture.h"
#include "compress/logits.h"
#include "compress/moments.h"
#include "compress/quant/agq.h"
#include "compress/quant/attn_calib.h"
#include "compress/quant/big.h"
#include "compress/quant/gptq.h"
#include "compress/quant/mixed.h"
#include "compress/quant/optm.h"
#include "compress/quant/repq.h"
#include "compress/quant/rotate.h"
#include "compress/quant/smoothquant.h"
#include "core/error.h"
#include "core/progress.h"
#include "kernels/attention.h"
#include "kernels/gemm_int8.h"
#include "io/preprocess.h"
#include "nn/quant_linear.h"

namespace vs::quant {
namespace {

bool is_edge(const std::string& name) {
  return name == "patch_embed.proj" || name == "head" || name == "head_dist";
}

// Calibration statistics of one attention module's operands, and for the probability
// quantizer's search a sample of its probabilities and values (first kSampleImages images).
constexpr int64_t kSampleImages = 8;
struct AttnObservers : AttnStats {
  nn::Attention* attn = nullptr;
  int64_t images = 0;

  // qkv: the qkv projection's output [B*N, qkv_width] for B images of N tokens.
  void observe(const float* qkv, int64_t rows, int64_t N) {
    const auto& hl = attn->heads;
    const int64_t B = rows / N, ld = hl.qkv_width(), qk = hl.qk_total(), vt = hl.v_total();
    std::vector<float> part;
    auto take = [&](ActObserver& o, int64_t col0, int64_t width) {
      part.resize(size_t(rows * width));
      for (int64_t r = 0; r < rows; ++r)
        std::copy(qkv + r * ld + col0, qkv + r * ld + col0 + width, part.begin() + r * width);
      o.observe(part.data(), rows, width);
    };
    take(q, 0, qk);
    take(k, qk, qk);
    take(v, 2 * qk, vt);
    std::vector<float> probs(size_t(B * N * N));
    const int64_t keep = std::min(B, kSampleImages - images);
    sample.N = N;
    for (int64_t h = 0, voff = 0; h < int64_t(hl.qk_dim.size()); voff += hl.v_dim[size_t(h)], ++h) {
      const int64_t dv = hl.v_dim[size_t(h)];
      if (dv == 0) continue;
      kernels::attention_probs_f32(qkv, probs.data(), B, N, hl, attn->scale, h);
      p.observe(probs.data(), B * N, N);
      for (int64_t b = 0; b < keep; ++b) {
        sample.probs.emplace_back(probs.begin() + b * N * N, probs.begin() + (b + 1) * N * N);
        std::vector<float> vh(size_t(N * dv));
        for (int64_t t = 0; t < N; ++t)
          std::copy(qkv + (b * N + t) * ld + 2 * qk + voff, qkv + (b * N + t) * ld + 2 * qk + voff + dv,
                    vh.begin() + t * dv);
        sample.v.push_back(std::move(vh));
      }
    }
    images += keep;
  }
};

// Runs the model over the images in batches (what Capture callbacks observe).
void forward_images(models::ViT& model, const std::vector<std::string>& images, int batch, bool progress,
                    const std::string& label) {
  Progress bar(label, int64_t(images.size()));
  for (size_t i = 0; i < images.size(); i += size_t(batch)) {
    size_t e = std::min(images.size(), i + size_t(batch));
    std::vector<std::string> paths(images.begin() + long(i), images.begin() + long(e));
    model.forward(load_batch(paths, model.cfg.pre));
    if (progress) bar.update(int64_t(e));
  }
  bar.finish();
}

// BIG (compress/quant/big.h) on every attention module: key statistics from the first
// kBigImages calibration images, then the flips. Returns the per-module report.
constexpr size_t kBigImages = 32, kBigSampleImages = 8;
nlohmann::json bimodal_integration(models::ViT& model, const PtqSettings& s, const std::vector<std::string>& images,
                                   bool progress) {
  struct Keys {
    std::vector<double> sum;
    int64_t rows = 0;
    std::vector<float> sample;
  };
  const size_t nb = model.blocks.size();
  std::vector<Keys> keys(nb);
  const int64_t sample_rows = int64_t(kBigSampleImages) * model.cfg.num_tokens();
  {
    compress::Capture cap(
        model,
        [&](const compress::Captured& c) {
          const size_t b = size_t(std::stoul(c.name.substr(7)));  // "blocks.N.attn.qkv"
          const auto& hl = model.blocks[b].attn.heads;
          const int64_t qk = hl.qk_total(), ld = hl.qkv_width();
          Keys& k = keys[b];
          k.sum.resize(size_t(qk), 0.0);
          for (int64_t r = 0; r < c.rows; ++r) {
            const float* kr = c.y + r * ld + qk;
            for (int64_t j = 0; j < qk; ++j) k.sum[size_t(j)] += kr[j];
            if (k.rows + r < sample_rows) k.sample.insert(k.sample.end(), kr, kr + qk);
          }
          k.rows += c.rows;
        },
        [](const std::string& n) { return n.size() > 9 && n.compare(n.size() - 9, 9, ".attn.qkv") == 0; });
    std::vector<std::string> first(images.begin(), images.begin() + long(std::min(images.size(), kBigImages)));
    forward_images(model, first, s.batch, progress, "BIG stats");
  }
  nlohmann::json report = nlohmann::json::object();
  for (size_t b = 0; b < nb; ++b) {
    auto& attn = model.blocks[b].attn;
    const int64_t qk = attn.heads.qk_total();
    std::vector<double> mean(keys[b].sum);
    for (double& m : mean) m /= double(std::max<int64_t>(1, keys[b].rows));
    BigDecision d = decide_big(keys[b].sample, qk, mean, s.qk_bits, s.act_observer);
    if (!d.flip.empty()) apply_big(attn, d.flip);
    report["blocks." + std::to_string(b) + ".attn"] = {
        {"bimodal", d.test.bimodal}, {"peaks", {d.test.left_peak, d.test.right_peak}},
        {"flipped_channels", d.flip.size()}, {"key_mse_before", d.mse_before}, {"key_mse_after", d.mse_after}};
  }
  return report;
}

// A reparameterisation folded into norm1 -> attn.qkv and norm2 -> mlp.fc1 of every block (SQ-b,
// RepQ): input statistics over all calibration images, then `fold` layer by layer; returns the
// per-layer reports.
constexpr int64_t kSmoothSampleImages = 8;
constexpr int64_t kTwinSampleImages = 4;  // OPT-m's search sample
using NormFold = std::function<nlohmann::json(nn::LayerNorm&, std::unique_ptr<nn::Linear>&, const InputStats&)>;
nlohmann::json fold_into_norms(models::ViT& model, const PtqSettings& s, const std::vector<std::string>& images,
                               bool progress, const std::string& label, const NormFold& fold) {
  auto selected = [](const std::string& n) {
    auto ends = [&](const std::string& suf) { return n.size() > suf.size() && n.compare(n.size() - suf.size(), suf.size(), suf) == 0; };
    return ends(".attn.qkv") || ends(".mlp.fc1");
  };
  std::map<std::string, InputStats> stats;
  const int64_t sample_rows = kSmoothSampleImages * model.cfg.num_tokens();
  {
    compress::Capture cap(model, [&](const compress::Captured& c) { stats.at(c.name).observe(c.x, c.rows, c.in, sample_rows); },
                          selected);
    for (auto& n : cap.names()) stats[n];
    forward_images(model, images, s.batch, progress, label + " stats");
  }
  nlohmann::json report = nlohmann::json::object();
  for (size_t b = 0; b < model.blocks.size(); ++b) {
    auto& blk = model.blocks[b];
    const std::string p = "blocks." + std::to_string(b);
    for (auto [norm, lin, name] : {std::tuple{&blk.norm1, &blk.attn.qkv, p + ".attn.qkv"},
                                   std::tuple{&blk.norm2, &blk.mlp.fc1, p + ".mlp.fc1"}})
      report[name] = fold(*norm, *lin, stats.at(name));
  }
  return report;
}

nlohmann::json smooth_quant(models::ViT& model, const PtqSettings& s, const std::vector<std::string>& images,
                            bool progress) {
  return fold_into_norms(model, s, images, progress, "SQ-b", [&](nn::LayerNorm& norm, std::unique_ptr<nn::Linear>& lin,
                                                                  const InputStats& st) -> nlohmann::json {
    SmoothResult r = smooth_norm_linear(norm, lin, st, s.wbits, s.abits, s.weight_observer, s.act_observer);
    return {{"alpha", r.alpha < 0 ? nlohmann::json("off") : nlohmann::json(r.alpha)},
            {"output_mse_before", r.error_before}, {"output_mse_after", r.error_after}};
  });
}

nlohmann::json repq(models::ViT& model, const PtqSettings& s, const std::vector<std::string>& images, bool progress) {
  return fold_into_norms(model, s, images, progress, "RepQ", [&](nn::LayerNorm& norm, std::unique_ptr<nn::Linear>& lin,
                                                                  const InputStats& st) -> nlohmann::json {
    RepqResult r = repq_norm_linear(norm, lin, st, s.abits);
    return {{"scale_spread", r.scale_spread}, {"tensor_scale", r.tensor_scale}, {"tensor_zero", r.tensor_zero}};
  });
}

bool ends_with(const std::string& n, const std::string& suf) {
  return n.size() >= suf.size() && n.compare(n.size() - suf.size(), suf.size(), suf) == 0;
}

// GPTQ's Gram weighs every token alike: each input row is scaled to unit RMS before it is added.
// ViT-Ti's LayerNorm outputs have a few tokens with massive activations; in the raw Gram they
// dominate, and GPTQ then fits those tokens at the expense of all others (measured on ViT-Ti W4A8
// with SQ-b: raw Gram 48.17 top-1, RTN 73.05, unit-RMS rows 77.64).
void add_unit_rms_rows(compress::Moments& m, const float* x, int64_t rows, int64_t cols) {
  std::vector<float> xn(x, x + rows * cols);
  for (int64_t r = 0; r < rows; ++r) {
    float* xr = xn.data() + r * cols;
    double ss = 0;
    for (int64_t j = 0; j < cols; ++j) ss += double(xr[j]) * xr[j];
    const float f = ss > 0 ? float(1.0 / std::sqrt(ss / double(cols))) : 0.f;
    for (int64_t j = 0; j < cols; ++j) xr[j] *= f;
  }
  m.add(xn.data(), rows, cols);
}

}  // namespace

PtqSettings::MixedSearch parse_mixed_search(const std::string& name) {
  using MS = PtqSettings::MixedSearch;
  if (name == "greedy") return MS::greedy;
  if (name == "greedy-isolated") return MS::greedy_isolated;
  if (name == "knapsack") return MS::knapsack;
  throw Error("unknown mixed-precision search '" + name + "' (expected greedy, greedy-isolated or knapsack)");
}

std::string mixed_search_name(PtqSettings::MixedSearch search) {
  switch (search) {
    case PtqSettings::MixedSearch::greedy: return "greedy";
    case PtqSettings::MixedSearch::greedy_isolated: return "greedy-isolated";
    case PtqSettings::MixedSearch::knapsack: return "knapsack";
  }
  return "?";
}

nlohmann::json quantize_model(models::ViT& model, const PtqSettings& s,
                              const std::vector<std::string>& calib_images, bool progress,
                              FloatLayers* replaced) {
  check_bits(s.wbits);
  check_bits(s.abits);
  check_bits(s.edge_bits);
  check_bits(s.qk_bits);
  check_bits(s.prob_bits);
  check(s.dynamic || !calib_images.empty(), "static quantisation needs calibration images (--calib)");
  auto layers = model.linears();
  auto keep = [&](const std::string& name) {
    return std::find(s.keep_float.begin(), s.keep_float.end(), name) != s.keep_float.end();
  };
  for (auto& k : s.keep_float) {
    bool known = std::any_of(layers.begin(), layers.end(), [&](auto& l) { return l.first == k; });
    check(known, "--keep-float: no Linear layer named '" + k + "' (see `vitshrink info`)");
  }
  for (auto& [name, slot] : layers)
    check(dynamic_cast<nn::DenseLinear*>(slot->get()) != nullptr,
          "layer '" + name + "' is already quantised; quantise the float model");

  // 0. BIG: sign flips of bimodal key channels (and their queries), before anything is observed.
  nlohmann::json big_report;
  auto dense_block_layers = [&] {
    for (auto& b : model.blocks)
      if (!dynamic_cast<nn::DenseLinear*>(b.attn.qkv.get()) || !dynamic_cast<nn::DenseLinear*>(b.mlp.fc1.get()))
        return false;
    return true;
  };
  if (s.big || s.smoothquant)
    check(dense_block_layers(), "--big and --sq-b need dense attn.qkv and mlp.fc1 layers (not low-rank)");
  if (s.big) {
    check(!s.dynamic && s.qk_bits < 16, "BIG needs static quantisation with quantised keys (not --dynamic, --attn-bits < 16)");
    big_report = bimodal_integration(model, s, calib_images, progress);
  }

  // 0b. SQ-b (smoothing with bias) or RepQ (per-channel scales made per-tensor), folded into the
  // LayerNorms and the layers after them.
  nlohmann::json sq_report, repq_report;
  check(!(s.smoothquant && s.repq), "--sq-b and --repq both reparameterise the LayerNorm outputs: choose one");
  if (s.repq) check(dense_block_layers(), "--repq needs dense attn.qkv and mlp.fc1 layers (not low-rank)");
  if (s.smoothquant || s.repq)
    check(!s.dynamic, std::string(s.repq ? "RepQ" : "SQ-b") + " needs static quantisation (calibrated activation ranges), not --dynamic");
  if (s.smoothquant) sq_report = smooth_quant(model, s, calib_images, progress);
  if (s.repq) repq_report = repq(model, s, calib_images, progress);

  const bool mixed = s.avg_bits > 0;
  auto in_mixed = [&](const std::string& name) { return mixed && !is_edge(name) && !keep(name); };
  if (mixed) {
    check(!s.dynamic, "mixed precision needs static quantisation (--avg-bits without --dynamic)");
    check(!s.mp_candidates.empty() && s.mp_images > 0, "mixed precision: candidate bits and images needed");
    for (int b : s.mp_candidates) check(b >= 2 && b <= 8, "mixed precision: candidate bits must be 2..8, got " + std::to_string(b));
  }
  const int top_bits = mixed ? *std::max_element(s.mp_candidates.begin(), s.mp_candidates.end()) : 0;

  // 1. Calibration: observe every Linear's input, and the attention operands (from the qkv
  // projections' outputs), over the calibration images; OPT-m keeps a sample of the fc2 inputs.
  std::map<std::string, ActObserver> observers;
  std::map<std::string, AttnObservers> attn_obs;  // by qkv layer name
  std::map<std::string, std::vector<float>> twin_sample;  // by fc2 layer name
  const int64_t twin_rows = kTwinSampleImages * model.cfg.num_tokens();
  const bool quant_attn = !s.dynamic && (s.qk_bits < 16 || s.prob_bits < 16);
  if (quant_attn)
    for (size_t i = 0; i < model.blocks.size(); ++i)
      attn_obs["blocks." + std::to_string(i) + ".attn.qkv"].attn = &model.blocks[i].attn;
  if (s.opt_m) check(!s.dynamic, "OPT-m needs static quantisation (calibrated activation ranges), not --dynamic");
  if (s.gptq) check(!calib_images.empty(), "GPTQ needs calibration images (--calib)");
  std::map<std::string, compress::Moments> input_moments;  // GPTQ's input Grams, by layer name
  if (!s.dynamic || s.gptq) {
    const int64_t N = model.cfg.num_tokens();
    compress::Capture cap(model, [&](const compress::Captured& c) {
      if (s.gptq) add_unit_rms_rows(input_moments.at(c.name), c.x, c.rows, c.in);
      if (s.dynamic) return;  // (GPTQ only)
      observers.at(c.name).observe(c.x, c.rows, c.in);
      // The qkv output: a low-rank qkv reports it from its second factor, "blocks.N.attn.qkv.up".
      const bool up = c.name.size() > 3 && c.name.compare(c.name.size() - 3, 3, ".up") == 0;
      if (auto it = attn_obs.find(up ? c.name.substr(0, c.name.size() - 3) : c.name); it != attn_obs.end())
        it->second.observe(c.y, c.rows, N);
      if (s.opt_m && ends_with(c.name, ".mlp.fc2")) {
        auto& t = twin_sample[c.name];
        const int64_t take = std::min(c.rows, twin_rows - int64_t(t.size()) / c.in);
        if (take > 0) t.insert(t.end(), c.x, c.x + take * c.in);
      }
    });
    for (auto& n : cap.names()) {  // made up front: the callback only looks up
      observers[n];
      if (s.gptq) input_moments[n];
    }
    forward_images(model, calib_images, s.batch, progress, "calibrate");
  }
  std::map<std::string, Eigen::MatrixXd> grams;
  for (auto& [name, m] : input_moments) grams[name] = m.gram();
  input_moments.clear();

  // --rotate: a layer's R, its weights W R, and (in `grams`) its Gram turned into R^T G R, the
  // Gram of the rotated inputs - made once per layer, although mixed precision quantises a layer
  // at several bit widths (always from the same float layer).
  struct RotatedLayer {
    std::shared_ptr<const kernels::Rotation> rot;
    std::unique_ptr<nn::DenseLinear> dense;
  };
  std::map<std::string, RotatedLayer> rotated_layers;
  auto rotated_layer = [&](const std::string& name, const nn::DenseLinear& dense) -> const RotatedLayer& {
    auto [it, fresh] = rotated_layers.try_emplace(name);
    if (fresh) {
      it->second.rot = std::make_shared<kernels::Rotation>(random_rotation(dense.in_features(), rotation_seed(name)));
      it->second.dense = std::make_unique<nn::DenseLinear>(rotate_weight(dense.weight(), *it->second.rot), dense.bias());
      if (auto g = grams.find(name); g != grams.end()) {
        const Eigen::MatrixXd r = rotation_matrix(*it->second.rot);
        g->second = r.transpose() * g->second * r;
      }
    }
    return it->second;
  };

  // The quantised version of one dense layer at (wb, ab); `info` gets its config.json entry.
  auto quantize_layer = [&](const std::string& name, const nn::DenseLinear& dense, int wb, int ab,
                            nlohmann::json& info) -> std::unique_ptr<nn::Linear> {
    if (wb <= 8) wb = std::min(wb, kernels::int8_exact_weight_bits(ab));  // see gemm_int8.h
    check(wb <= 8 && ab <= 8, "layer '" + name + "': integer execution needs weight and activation bits <= 8 (16 = leave float)");
    const bool dyn = s.dynamic || std::any_of(s.dynamic_for.begin(), s.dynamic_for.end(),
                                              [&](const std::string& suf) { return ends_with(name, suf); });
    // --rotate (compress/quant/rotate.h): per-token inputs are quantised as x R, the weights as W R.
    const RotatedLayer* rl = s.rotate && dyn ? &rotated_layer(name, dense) : nullptr;
    const nn::DenseLinear& base = rl ? *rl->dense : dense;
    const Tensor& w = base.weight();
    QParams wq = calibrate_weight(w.f32(), w.dim(0), w.dim(1), wb, true, Granularity::channel, 0,
                                  s.weight_observer, s.percentile);
    nlohmann::json gptq_info;
    std::unique_ptr<nn::DenseLinear> rounded;  // GPTQ's weights (exact codes * scales), else `base`
    if (auto g = grams.find(name); g != grams.end()) {
      GptqResult r = gptq_quantize(w, wq.scale.data(), wb, g->second, {s.gptq_damping, true});
      rounded = std::make_unique<nn::DenseLinear>(r.weight, base.bias());
      gptq_info = {{"output_error_rtn", r.error_rtn}, {"output_error", r.error_gptq}};
    }
    const nn::DenseLinear& src = rounded ? *rounded : base;
    nn::ActQuant act{ab, dyn, 1.f, 0};
    info = {{"wbits", wb}, {"abits", ab}, {"dynamic", dyn}};
    if (!dyn) {
      QParams aq = observers.at(name).finalize(ab, false, s.act_observer, s.percentile);
      act.scale = aq.scale[0];
      act.zero = aq.zero[0];
      if (s.opt_m && ab >= 3 && twin_sample.count(name)) {  // OPT-m (compress/quant/optm.h)
        auto layer = nn::QuantLinear::from_dense(src, Tensor::from({w.dim(0)}, wq.scale), wb, act);
        const Tensor wdq = layer->dequantized_weight();
        const auto& xs = twin_sample.at(name);
        const ActObserver& o = observers.at(name);
        TwinChoice t = search_twin(xs.data(), int64_t(xs.size()) / w.dim(1), o.min(), o.max(), w.f32(), wdq.f32(),
                                   w.dim(0), w.dim(1), ab, (1 << (wb - 1)) - 1, aq);
        info["opt_m"] = {{"m", t.m}, {"output_mse", t.error}, {"output_mse_uniform", t.error_uniform}};
        if (t.m > 0) {
          act = {ab, false, t.twin.scale, t.twin.zero, t.m};
          info["twin_m"] = t.m;
        }
      }
    }
    if (!gptq_info.is_null()) info["gptq"] = gptq_info;
    auto q = nn::QuantLinear::from_dense(src, Tensor::from({w.dim(0)}, wq.scale), wb, act);
    if (rl) {
      q->set_input_rotation(rl->rot);
      info["rotated"] = true;
    }
    return q;
  };

  // 2. Replace each Linear by its quantised version (mixed precision: at the highest candidate,
  // keeping the float layer for the search).
  nlohmann::json per_layer = nlohmann::json::object();
  std::vector<std::pair<std::string, std::unique_ptr<nn::Linear>*>> mp_layers;
  std::map<std::string, std::unique_ptr<nn::Linear>> mp_dense;
  Tensor mp_images, mp_ref, check_images, check_ref;  // (mixed precision's search and check images)
  if (mixed) {  // the reference logits of the float model (every fold above keeps its function)
    std::vector<std::string> first(calib_images.begin(),
                                   calib_images.begin() + long(std::min(calib_images.size(), size_t(s.mp_images))));
    mp_images = load_batch(first, model.cfg.pre);
    mp_ref = model.forward(mp_images);
    const size_t from = first.size(), to = std::min(calib_images.size(), from + size_t(std::max(0, s.mp_check_images)));
    if (to > from) {
      check_images = load_batch({calib_images.begin() + long(from), calib_images.begin() + long(to)}, model.cfg.pre);
      check_ref = model.forward(check_images);
    }
  }
  for (auto& [name, slot] : layers) {
    const int ab = in_mixed(name) && s.mp_bits != PtqSettings::MixedBits::weights ? top_bits : is_edge(name) ? s.edge_bits : s.abits;
    const int wb = in_mixed(name) ? top_bits : is_edge(name) ? s.edge_bits : s.wbits;
    if (keep(name) || (wb >= 16 && ab >= 16)) continue;
    auto* dense = dynamic_cast<nn::DenseLinear*>(slot->get());
    std::unique_ptr<nn::Linear> q = quantize_layer(name, *dense, wb, ab, per_layer[name]);
    if (in_mixed(name)) {
      mp_layers.emplace_back(name, slot);
      mp_dense[name] = std::move(*slot);
    } else if (replaced) {  // block reconstruction starts from the float weights (reconstruct/)
      (*replaced)[name] = std::move(*slot);
    }
    *slot = std::move(q);
  }

  // 3. Attention operands.
  nlohmann::json per_attn = nlohmann::json::object();
  for (auto& [qkv_name, o] : attn_obs) {
    const std::string name = qkv_name.substr(0, qkv_name.size() - 4);  // "blocks.N.attn"
    nlohmann::json errors;
    const kernels::AttnQuant& a = o.attn->quant = attn_quant(o, s, errors);
    per_attn[name] = {{"q_bits", a.q_bits}, {"k_bits", a.k_bits}, {"v_bits", a.v_bits}, {"p_bits", a.p_bits},
                      {"p_tau", a.p_tau}};
    if (!errors.is_null()) per_attn[name]["prob_error"] = errors;
  }

  // 4. Greedy mixed precision (compress/quant/mixed.h): candidates built once per (layer, wbits,
  // abits). Items: one per layer (tied / weights), or a layer's weight bits (items 0..L-1) and
  // its input bits (items L..2L-1) as two groups (separate).
  nlohmann::json mp_report;
  if (mixed && !mp_layers.empty()) {
    using MB = PtqSettings::MixedBits;
    const auto t0 = std::chrono::steady_clock::now();
    const size_t L = mp_layers.size();
    std::map<std::tuple<size_t, int, int>, std::unique_ptr<nn::Linear>> built;
    std::map<std::tuple<size_t, int, int>, nlohmann::json> built_info;
    std::vector<int> cur_w(L, top_bits), cur_a(L, s.mp_bits == MB::weights ? s.abits : top_bits);
    for (size_t l = 0; l < L; ++l) built_info[{l, cur_w[l], cur_a[l]}] = per_layer[mp_layers[l].first];  // (a step back to the start)
    auto candidate = [&](size_t l, int wb, int ab) -> std::unique_ptr<nn::Linear>& {
      auto& c = built[{l, wb, ab}];
      if (!c) {
        const std::string& name = mp_layers[l].first;
        c = quantize_layer(name, dynamic_cast<const nn::DenseLinear&>(*mp_dense.at(name)), wb, ab,
                           built_info[{l, wb, ab}]);
      }
      return c;
    };
    // Item i at b: its layer and the (wbits, abits) that layer gets.
    auto bits_of = [&](size_t i, int b) {
      const size_t l = i % L;
      const bool input_item = i >= L;
      const int wb = input_item ? cur_w[l] : b;
      const int ab = input_item ? b : s.mp_bits == MB::tied ? b : cur_a[l];
      return std::tuple<size_t, int, int>{l, wb, ab};
    };
    std::vector<int64_t> weights;
    std::vector<int> group;
    for (int g = 0; g < (s.mp_bits == MB::separate ? 2 : 1); ++g)
      for (auto& [name, slot] : mp_layers) {
        weights.push_back((*slot)->macs_per_row());
        group.push_back(g);
      }
    // A candidate changes one block, so the blocks before it are not rerun: block_in[k] holds
    // block k's input on mp_images under the current assignment (valid for k < valid).
    std::vector<size_t> block_of(L);
    for (size_t l = 0; l < L; ++l) {
      const std::string& name = mp_layers[l].first;
      block_of[l] = name.rfind("blocks.", 0) == 0 ? std::stoul(name.substr(7)) : 0;
    }
    std::vector<Tensor> block_in(model.blocks.size() + 1);
    size_t valid = 0;
    auto kl_from = [&](size_t k) {
      if (valid == 0) block_in[valid++] = model.embed(mp_images);
      const int64_t T = model.cfg.num_tokens(), B = block_in[0].dim(0) / T;
      for (; valid <= k; ++valid) {
        block_in[valid] = block_in[valid - 1].clone();
        model.blocks[valid - 1].forward(block_in[valid].f32(), B, T);
      }
      return compress::mean_kl(mp_ref, model.forward_from(block_in[k].clone(), k));
    };
    auto loss_with = [&](size_t i, int b) {
      auto [l, wb, ab] = bits_of(i, b);
      std::swap(*mp_layers[l].second, candidate(l, wb, ab));
      const double kl = kl_from(block_of[l]);
      std::swap(*mp_layers[l].second, candidate(l, wb, ab));
      return kl;
    };
    auto set = [&](size_t i, int b) {
      auto [l, wb, ab] = bits_of(i, b);
      valid = std::min(valid, block_of[l] + 1);  // later blocks' inputs change
      std::unique_ptr<nn::Linear>& slot = *mp_layers[l].second;
      built[{l, cur_w[l], cur_a[l]}] = std::move(slot);
      slot = std::move(candidate(l, wb, ab));
      per_layer[mp_layers[l].first] = built_info.at({l, wb, ab});
      cur_w[l] = wb;
      cur_a[l] = ab;
    };
    int ub = 0;  // the uniform width: the largest candidate <= the target
    for (int c : s.mp_candidates)
      if (c <= s.avg_bits) ub = std::max(ub, c);
    const bool isolated = s.mp_search != PtqSettings::MixedSearch::greedy;
    const std::string search_name = mixed_search_name(s.mp_search);
    check(!isolated || ub > 0, fmt::format("mixed precision: the {} search is compared with uniform bits and needs a candidate <= --avg-bits", search_name));
    // The isolated searches measure each item alone in the float model (mixed.h says why): every candidate
    // is built first, then the mixed layers are swapped for their float versions and the attention
    // quantisers switched off until restore().
    std::vector<kernels::AttnQuant> attn_saved;
    if (isolated) {
      for (size_t i = 0; i < weights.size(); ++i)
        for (int c : s.mp_candidates)
          if (auto [l, wb, ab] = bits_of(i, c); wb != cur_w[l] || ab != cur_a[l]) candidate(l, wb, ab);
      for (size_t l = 0; l < L; ++l) {
        std::unique_ptr<nn::Linear>& slot = *mp_layers[l].second;
        built[{l, cur_w[l], cur_a[l]}] = std::move(slot);
        slot = std::move(mp_dense.at(mp_layers[l].first));
      }
      for (auto& [qkv_name, o] : attn_obs) attn_saved.push_back(std::exchange(o.attn->quant, kernels::AttnQuant{}));
      valid = 0;
    }
    auto restore = [&] {
      size_t a = 0;
      for (auto& [qkv_name, o] : attn_obs) o.attn->quant = attn_saved[a++];
      for (size_t l = 0; l < L; ++l) {
        std::unique_ptr<nn::Linear>& slot = *mp_layers[l].second;
        mp_dense.at(mp_layers[l].first) = std::move(slot);
        slot = std::move(built.at({l, cur_w[l], cur_a[l]}));
      }
      valid = 0;
    };
    const double start = kl_from(0);  // (every item at the highest candidate; isolated searches: the float model)
    const auto others = int64_t(weights.size() * (s.mp_candidates.size() - 1));
    Progress bar(isolated ? "mixed precision sensitivities" : "mixed precision steps", isolated ? int64_t(weights.size() * s.mp_candidates.size()) : others);
    auto tick = [&](int64_t step) { if (progress) bar.update(step); };
    const auto allocation = s.mp_search == PtqSettings::MixedSearch::knapsack ? IsolatedAllocation::knapsack : IsolatedAllocation::greedy;
    MixedResult r = isolated ? isolated_mixed_precision(allocation, weights, s.mp_candidates, s.avg_bits, start, loss_with, set, restore,
                                                    [&] { return kl_from(0); }, std::vector<int>(weights.size(), ub), tick, group)
                         : greedy_mixed_precision(weights, s.mp_candidates, s.avg_bits, start, loss_with, set, tick, group);
    bar.finish();
    // The check against uniform bits on images the search did not see (PtqSettings::mp_check_images).
    nlohmann::json check_report = "off";
    if (s.mp_check_images <= 0) {
      // (off)
    } else if (!r.reached) {
      check_report = "skipped: target not reached";
    } else if (isolated && !r.kept_chosen) {
      check_report = "skipped: the search already kept uniform bits";
    } else if (!check_images.defined()) {
      check_report = "skipped: no calibration images beyond the search's";
    } else if (ub == 0) {
      check_report = "skipped: no candidate at or below the target";
    } else {
      const Tensor logits_mixed = model.forward(check_images);
      const double kl_mixed = compress::mean_kl(check_ref, logits_mixed);
      for (size_t i = 0; i < weights.size(); ++i) set(i, ub);
      const Tensor logits_uniform = model.forward(check_images);
      const double kl_uniform = compress::mean_kl(check_ref, logits_uniform);
      const bool keep_uniform = kl_uniform < kl_mixed;
      if (!keep_uniform)
        for (size_t i = 0; i < weights.size(); ++i) set(i, r.bits[i]);
      // How sure: the per-image difference's standard error (a |z| below ~2 is noise either way).
      const auto diff = compress::paired_difference(compress::row_kl(check_ref, logits_uniform),
                                                compress::row_kl(check_ref, logits_mixed));
      check_report = {{"images", check_images.dim(0)}, {"uniform_bits", ub}, {"kl_mixed", kl_mixed},
                      {"kl_uniform", kl_uniform}, {"mixed_minus_uniform", diff.mean}, {"se", diff.se}, {"z", diff.z()},
                      {"kept", keep_uniform ? "uniform" : "mixed"}};
      if (progress)
        fmt::print(stderr, "mixed precision check on {} held-out calibration images: KL {:.4f} mixed vs {:.4f} uniform {}-bit "
                   "(difference {:+.4f} +- {:.4f}, z {:+.1f}{}) -> {} kept\n", check_images.dim(0), kl_mixed, kl_uniform, ub,
                   diff.mean, diff.se, diff.z(), std::abs(diff.z()) < 2 ? ": within noise" : "",
                   keep_uniform ? "uniform" : "mixed");
    }
    nlohmann::json steps = nlohmann::json::array(), bits = nlohmann::json::object();
    for (auto& st : r.steps)
      steps.push_back({{"layer", mp_layers[st.layer % L].first}, {"what", st.layer >= L ? "input" : "weights"},
                       {"from", st.from}, {"to", st.to}, {"kl_increase", st.loss_increase}, {"avg_bits", st.avg_bits}});
    for (size_t l = 0; l < L; ++l) bits[mp_layers[l].first] = {{"wbits", cur_w[l]}, {"abits", cur_a[l]}};
    const char* mode = s.mp_bits == MB::tied ? "tied" : s.mp_bits == MB::weights ? "weights" : "separate";
    mp_report = {{"candidates", s.mp_candidates}, {"varies", mode}, {"search", search_name}, {"target_avg_bits", s.avg_bits},
                 {"avg_wbits", average_bits(cur_w, std::vector<int64_t>(weights.begin(), weights.begin() + long(L)))},
                 {"avg_abits", average_bits(cur_a, std::vector<int64_t>(weights.begin(), weights.begin() + long(L)))},
                 {"reached", r.reached}, {"images", mp_images.dim(0)}, {"kl_start", isolated ? r.baseline_loss : start}, {"kl_final", r.loss},
                 {"measurements", r.measurements},
                 {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()},
                 {"check", check_report}, {"bits", bits}, {"steps", steps}};
    if (isolated) {
      double sum_uniform = 0;  // the allocation's objective at uniform bits, beside its optimum
      for (auto& item : r.sensitivity)
        for (auto& [c, d] : item) sum_uniform += c == ub ? d : 0.0;
      auto item_name = [&](size_t i) {
        return mp_layers[i % L].first + (s.mp_bits == MB::separate ? (i >= L ? " input" : " weights") : "");
      };
      nlohmann::json chosen = nlohmann::json::object();
      for (size_t i = 0; i < r.chosen.size(); ++i) chosen[item_name(i)] = r.chosen[i];
      mp_report["isolated"] = {{"allocation", allocation == IsolatedAllocation::knapsack ? "knapsack" : "greedy"}, {"chosen", chosen}, {"kl_float_layers", start}, {"sensitivity_sum_uniform", sum_uniform},
                               {"sensitivity_sum_chosen", r.predicted}, {"kl_uniform", r.baseline_loss},
                               {"kl_chosen", r.chosen_loss}, {"kept", r.kept_chosen ? "chosen" : "uniform"}};
      nlohmann::json sens = nlohmann::json::object();  // KL of each item alone (the rest float), guarded
      for (size_t i = 0; i < r.sensitivity.size(); ++i) {
        auto& e = sens[item_name(i)];
        for (auto& [c, d] : r.sensitivity[i]) e[std::to_string(c)] = d;
      }
      mp_report["sensitivity"] = sens;
    }
  }
  std::vector<std::string> float_points{"LayerNorm", "GELU", "softmax input", "residual adds"};
  if (s.dynamic || s.qk_bits >= 16) float_points.insert(float_points.begin(), "attention q, k");
  if (s.dynamic || s.prob_bits >= 16) float_points.insert(float_points.begin(), "attention v, probabilities");
  return {{"method", s.dynamic ? "dynamic" : "static"},
          {"requested", {{"wbits", s.wbits}, {"abits", s.abits}, {"edge_bits", s.edge_bits}}},
          {"cpu_vnni", kernels::cpu_has_vnni()},
          {"weights", {{"granularity", "channel"}, {"symmetric", true}, {"observer", observer_name(s.weight_observer)}}},
          {"activations",
           {{"granularity", s.dynamic ? "token" : "tensor"}, {"symmetric", false},
            {"observer", s.dynamic ? "runtime" : observer_name(s.act_observer)}}},
          {"float_points", float_points},
          {"probabilities", prob_quantizer_name(s.prob_quantizer)},
          {"calibration_images", s.dynamic ? 0 : int64_t(calib_images.size())},
          {"layers", per_layer},
          {"big", big_report.is_null() ? nlohmann::json("off") : big_report},
          {"sq_b", sq_report.is_null() ? nlohmann::json("off") : sq_report},
          {"repq", repq_report.is_null() ? nlohmann::json("off") : repq_report},
          {"opt_m", s.opt_m},
          {"mixed_precision", mp_report.is_null() ? nlohmann::json("off") : mp_report},
          {"attention", per_attn}};
}

}  // namespace vs::quant
