#include "compress/reconstruct/reconstruct.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fmt/format.h>

#include "core/error.h"
#include "core/progress.h"
#include "io/preprocess.h"
#include "nn/quant_linear.h"
#include "train/augment.h"
#include "train/layers.h"
#include "train/learned_quant.h"
#include "train/loss.h"
#include "train/optim.h"
#include "train/sampling.h"

namespace vs::compress {

nlohmann::json ReconstructSettings::to_json() const {
  return {{"iters", iters}, {"batch", batch}, {"lr_rounding", lr_rounding}, {"lr_scale", lr_scale},
          {"reg_weight", reg_weight}, {"beta", {beta_start, beta_end}}, {"warmup", warmup},
          {"drop_prob", drop_prob}, {"learn_rounding", learn_rounding}, {"learn_scales", learn_scales},
          {"seed", seed}};
}

namespace {

constexpr int64_t kForwardImages = 16;  // images per batch when running whole blocks / embeddings

// The first block's input [n * T, C] for every image, run in batches.
Tensor embed_all(const models::ViT& m, const std::vector<std::string>& images) {
  const int64_t T = m.cfg.num_tokens(), C = m.cfg.embed_dim, n = int64_t(images.size());
  Tensor out = Tensor::empty({n * T, C});
  for (int64_t i = 0; i < n; i += kForwardImages) {
    const int64_t e = std::min(n, i + kForwardImages);
    std::vector<std::string> paths(images.begin() + i, images.begin() + e);
    Tensor x = m.embed(load_batch(paths, m.cfg.pre));
    std::copy(x.f32(), x.f32() + x.numel(), out.f32() + i * T * C);
  }
  return out;
}

// x <- block(x) for every image, in batches (the block's normal forward: integer if quantised).
void run_block(const nn::Block& blk, Tensor& x, int64_t T) {
  const int64_t C = x.dim(1), n = x.dim(0) / T;
  for (int64_t i = 0; i < n; i += kForwardImages)
    blk.forward(x.f32() + i * T * C, std::min(kForwardImages, n - i), T);
}

// Mean over tokens of the squared error summed over channels; with T > 0 only over the first P
// tokens of every image of T tokens.
double token_mse(const Tensor& a, const Tensor& b, int64_t T = 0, int64_t P = 0) {
  const int64_t C = a.dim(a.ndim() - 1), rows = a.numel() / C;
  double s = 0;
  int64_t counted = 0;
  for (int64_t r = 0; r < rows; ++r) {
    if (T > 0 && r % T >= P) continue;
    for (int64_t j = r * C; j < (r + 1) * C; ++j) s += double(a.f32()[j] - b.f32()[j]) * (a.f32()[j] - b.f32()[j]);
    ++counted;
  }
  return s / double(counted);
}

// 1 / variance over channels of every row of y [rows, C] (the spread the next LayerNorm divides by).
std::vector<float> inverse_token_variance(const Tensor& y) {
  const int64_t C = y.dim(y.ndim() - 1), rows = y.numel() / C;
  std::vector<float> w(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    const float* p = y.f32() + r * C;
    double mean = 0, sq = 0;
    for (int64_t c = 0; c < C; ++c) mean += p[c];
    mean /= double(C);
    for (int64_t c = 0; c < C; ++c) sq += (p[c] - mean) * (p[c] - mean);
    w[size_t(r)] = float(1.0 / (sq / double(C) + 1e-6));
  }
  return w;
}

// Per-row weights of a block's refinement loss (RefineSettings::token_relative, head_tokens_last),
// or none (all 1). target: the block's target rows [n * T, C].
// head_only: the last block with token pooling (RefineSettings::head_tokens_last).
std::vector<float> loss_weights(const RefineSettings& s, const Tensor& target, const models::ViTConfig& cfg,
                                bool head_only) {
  if (!s.token_relative && !head_only) return {};
  std::vector<float> w = s.token_relative ? inverse_token_variance(target) : std::vector<float>(size_t(target.dim(0)), 1.f);
  const int64_t T = cfg.num_tokens();
  if (head_only)  // the last block's other tokens are never read: the head sees the prefix tokens only
    for (size_t r = 0; r < w.size(); ++r)
      if (int64_t(r) % T >= cfg.num_prefix_tokens()) w[r] = 0.f;
  return w;
}

// AdaRound's beta: beta_start until the end of the warmup, then linearly down to beta_end.
float beta_at(const ReconstructSettings& s, int64_t step) {
  const double start = s.warmup * double(s.iters);
  const double t = std::clamp((double(step) - start) / std::max(1.0, double(s.iters) - start), 0.0, 1.0);
  return float(s.beta_start + (s.beta_end - s.beta_start) * t);
}

// The weights of a quantised layer before rounding.
const Tensor& float_weight(const quant::FloatLayers& layers, const std::string& name) {
  auto it = layers.find(name);
  auto* d = it == layers.end() ? nullptr : dynamic_cast<const nn::DenseLinear*>(it->second.get());
  check(d != nullptr, "block reconstruction: no float weights of quantised layer '" + name + "'");
  return d->weight();
}

struct BlockResult {  // the reconstruction MSE of the first and the last step's batch (QDrop inputs)
  double loss_first = 0, loss_last = 0;
};

// Learns the rounding / step sizes of one block; returns it as an nn::Block.
nn::Block learn_block(const nn::Block& qblk, const std::string& prefix, const quant::FloatLayers& float_layers,
                      const Tensor& xq, const Tensor& xf, const Tensor& target, int64_t T, size_t index,
                      const ReconstructSettings& s, BlockResult& res) {
  train::TrainBlock tb(qblk, prefix);
  std::vector<train::Param*> rounding, scales;
  if (s.learn_rounding)
    for (auto [lin, name] : {std::pair{&tb.qkv, ".attn.qkv"}, {&tb.proj, ".attn.proj"}, {&tb.fc1, ".mlp.fc1"},
                             {&tb.fc2, ".mlp.fc2"}})
      if (lin->quantised()) lin->learn_rounding(float_weight(float_layers, prefix + name));
  if (s.learn_scales) tb.learn_scales();
  tb.learned(rounding, scales);
  // Step sizes are learned in the log domain (relative steps, always positive): Adam updates
  // log s from the gradient g * s; s = exp(log s) after each step.
  std::vector<train::Param> log_scales;
  for (train::Param* p : scales)
    log_scales.push_back(train::make_param(p->name, Tensor::from({1}, {std::log(p->value.f32()[0])}), false));
  std::vector<train::Param*> log_ptrs;
  for (auto& p : log_scales) log_ptrs.push_back(&p);
  train::AdamW opt_round(rounding, {0.9, 0.999, 1e-8, 0.0}), opt_scale(log_ptrs, {0.9, 0.999, 1e-8, 0.0});

  const int64_t C = xq.dim(1), n = xq.dim(0) / T, B = std::min(s.batch, n);
  Progress bar(prefix, s.iters);
  Tensor x = Tensor::empty({B * T, C}), y = Tensor::empty({B * T, C});
  for (int64_t step = 0; step < s.iters; ++step) {
    // Inputs: quantised, each element replaced by its FP32 value with probability drop_prob.
    auto rng = train::rng_for(s.seed, 100 + index, uint64_t(step));
    const uint64_t threshold = uint64_t(s.drop_prob * 18446744073709551615.0);
    const auto idx = train::batch_indices(s.seed + 7919 * (index + 1), step, B, size_t(n));
    for (int64_t b = 0; b < B; ++b) {
      const int64_t off = int64_t(idx[size_t(b)]) * T * C;
      for (int64_t i = 0; i < T * C; ++i) {
        const bool fp = s.drop_prob > 0 && rng() < threshold;
        x.f32()[b * T * C + i] = fp ? xf.f32()[off + i] : xq.f32()[off + i];
        y.f32()[b * T * C + i] = target.f32()[off + i];
      }
    }
    Tensor out = tb.forward(x, B, T);
    Tensor dy = Tensor::empty(out.shape());
    double loss = 0;
    for (int64_t i = 0; i < out.numel(); ++i) {
      const float d = out.f32()[i] - y.f32()[i];
      loss += double(d) * d;
      dy.f32()[i] = 2.f * d / float(B * T);
    }
    loss /= double(B * T);
    tb.backward(dy);
    const float beta = beta_at(s, step);
    double reg = 0;
    if (double(step) >= s.warmup * double(s.iters))
      for (train::Param* p : rounding)
        reg += s.reg_weight * train::adaround_regularizer(p->value.f32(), p->grad.f32(), p->value.numel(), beta, s.reg_weight);
    if (!rounding.empty()) opt_round.step(s.lr_rounding);
    for (size_t i = 0; i < scales.size(); ++i) log_scales[i].grad.f32()[0] = scales[i]->grad.f32()[0] * scales[i]->value.f32()[0];
    opt_scale.step(s.lr_scale);
    for (size_t i = 0; i < scales.size(); ++i) scales[i]->value.f32()[0] = std::exp(log_scales[i].value.f32()[0]);
    if (step == 0) res.loss_first = loss;
    res.loss_last = loss;
    if (s.progress) bar.update(step + 1, fmt::format("mse {:.4g} reg {:.4g} beta {:.1f}", loss, reg, beta));
  }
  bar.finish();
  return tb.to_block();
}

}  // namespace

nlohmann::json reconstruct(models::ViT& quant, const quant::FloatLayers& float_layers,
                           const models::ViT& reference, const std::vector<std::string>& images,
                           const ReconstructSettings& s) {
  check(!images.empty(), "block reconstruction needs calibration images (--calib)");
  check(s.iters >= 1 && s.batch >= 1, "block reconstruction: --recon-iters and --recon-batch must be >= 1");
  check(s.drop_prob >= 0 && s.drop_prob <= 1, "block reconstruction: --recon-drop must be in [0, 1]");
  check(quant.blocks.size() == reference.blocks.size() && quant.cfg.num_tokens() == reference.cfg.num_tokens() &&
            quant.cfg.embed_dim == reference.cfg.embed_dim,
        "block reconstruction: the quantised and the float model differ in shape");
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t T = quant.cfg.num_tokens();
  Tensor xq = embed_all(quant, images), xf = embed_all(reference, images);
  nlohmann::json blocks = nlohmann::json::array();
  for (size_t b = 0; b < quant.blocks.size(); ++b) {
    const std::string prefix = "blocks." + std::to_string(b);
    Tensor target = xf.clone();
    run_block(reference.blocks[b], target, T);
    Tensor before = xq.clone();
    run_block(quant.blocks[b], before, T);
    const double mse_before = token_mse(before, target);
    BlockResult r;
    quant.blocks[b] = learn_block(quant.blocks[b], prefix, float_layers, xq, xf, target, T, b, s, r);
    run_block(quant.blocks[b], xq, T);  // the next block's input: this block as it will run
    const double mse_after = token_mse(xq, target);
    blocks.push_back({{"block", prefix}, {"output_mse_before", mse_before}, {"output_mse_after", mse_after},
                      {"batch_mse_first_step", r.loss_first}, {"batch_mse_last_step", r.loss_last}});
    if (s.progress)
      fmt::print(stderr, "{}: output MSE {:.4g} -> {:.4g} (calibration images, integer path)\n", prefix, mse_before,
                 mse_after);
    xf = std::move(target);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return {{"method", "AdaRound + LSQ, QDrop inputs"}, {"settings", s.to_json()},
          {"calibration_images", int64_t(images.size())}, {"blocks", blocks}, {"seconds", secs}};
}

// embed_all of the images followed by `views` augmented views of each (RefineSettings::augment_views).
static Tensor embed_with_views(const models::ViT& m, const std::vector<std::string>& images, int64_t views,
                               uint64_t seed) {
  Tensor plain = embed_all(m, images);
  if (views <= 0) return plain;
  const int64_t T = m.cfg.num_tokens(), C = m.cfg.embed_dim, n = int64_t(images.size());
  Tensor out = Tensor::empty({(views + 1) * n * T, C});
  std::copy(plain.f32(), plain.f32() + plain.numel(), out.f32());
  train::AugmentSettings aug;
  aug.min_scale = 0.35;
  aug.mix_prob = 0;
  std::mt19937_64 rng(seed + 104729);
  float* dst = out.f32() + n * T * C;
  for (int64_t i = 0; i < n; i += kForwardImages) {  // all views of a chunk of images, decoded once
    const int64_t e = std::min(n, i + kForwardImages);
    std::vector<Image> decoded;
    for (int64_t k = i; k < e; ++k) decoded.push_back(load_image(images[size_t(k)]));
    std::vector<const Image*> batch;
    for (auto& im : decoded) batch.push_back(&im);
    for (int64_t v = 0; v < views; ++v) {
      Tensor x = m.embed(train::augment_batch(batch, m.cfg.pre, aug, rng));
      std::copy(x.f32(), x.f32() + x.numel(), dst);
      dst += x.numel();
    }
  }
  return out;
}

nlohmann::json RefineSettings::to_json() const {
  return {{"iters", iters}, {"batch", batch}, {"lr", lr}, {"seed", seed}, {"augment_views", augment_views},
          {"loss", token_relative ? "squared error / variance of the target token" : "mean squared error"},
          {"last_block_loss", head_tokens_last ? "tokens the head reads" : "all tokens"},
          {"target", target_original_inputs ? "original block on its own inputs" : "original block on the refined inputs"}};
}

nlohmann::json refine_blocks(models::ViT& model, const models::ViT& reference, const std::vector<std::string>& images,
                             const RefineSettings& s) {
  check(!images.empty(), "block refinement needs calibration images (--calib)");
  check(s.iters >= 1 && s.batch >= 1 && s.lr > 0, "block refinement: steps, batch and learning rate must be positive");
  check(model.blocks.size() == reference.blocks.size() && model.cfg.num_tokens() == reference.cfg.num_tokens() &&
            model.cfg.embed_dim == reference.cfg.embed_dim,
        "block refinement: the model and its reference differ in shape");
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t T = model.cfg.num_tokens(), C = model.cfg.embed_dim;
  Tensor x = embed_with_views(model, images, s.augment_views, s.seed);
  Tensor xf = s.target_original_inputs ? x.clone() : Tensor();  // the reference's own block inputs
  const int64_t n = x.dim(0) / T, B = std::min(s.batch, n);
  nlohmann::json blocks = nlohmann::json::array();
  for (size_t b = 0; b < model.blocks.size(); ++b) {
    const std::string prefix = "blocks." + std::to_string(b);
    Tensor target = s.target_original_inputs ? xf.clone() : x.clone(), before = x.clone();
    run_block(reference.blocks[b], target, T);
    if (s.target_original_inputs) xf = target.clone();
    run_block(model.blocks[b], before, T);
    const double mse_before = token_mse(before, target);
    train::TrainBlock tb(model.blocks[b], prefix);
    std::vector<train::Param*> params;
    tb.collect(params);
    train::AdamW opt(params, {0.9, 0.999, 1e-8, 0.0});
    Progress bar(prefix + " refine", s.iters);
    const bool head_only = s.head_tokens_last && b + 1 == model.blocks.size() && model.cfg.global_pool == "token";
    const std::vector<float> token_weight = loss_weights(s, target, model.cfg, head_only);
    const bool weighted = !token_weight.empty();
    Tensor xb = Tensor::empty({B * T, C}), yb = Tensor::empty({B * T, C});
    std::vector<float> wb(size_t(weighted ? B * T : 0));
    for (int64_t step = 0; step < s.iters; ++step) {
      const auto idx = train::batch_indices(s.seed + 7919 * (b + 1), step, B, size_t(n));
      for (int64_t i = 0; i < B; ++i) {
        const int64_t off = int64_t(idx[size_t(i)]) * T * C;
        std::copy(x.f32() + off, x.f32() + off + T * C, xb.f32() + i * T * C);
        std::copy(target.f32() + off, target.f32() + off + T * C, yb.f32() + i * T * C);
        if (weighted)
          std::copy_n(token_weight.begin() + int64_t(idx[size_t(i)]) * T, T, wb.begin() + i * T);
      }
      Tensor dy;  // (backward writes every parameter's gradient: nothing to zero)
      const double loss = train::mse_loss(tb.forward(xb, B, T), yb, 1.f, dy, weighted ? wb.data() : nullptr);
      tb.backward(dy);
      opt.step(train::cosine_lr(s.lr, step, s.iters, 0));
      if (s.progress) bar.update(step + 1, fmt::format("{} {:.4g}", s.token_relative ? "relative error" : "mse", loss));
    }
    bar.finish();
    model.blocks[b] = tb.to_block();
    Tensor after = x.clone();
    run_block(model.blocks[b], after, T);
    const double mse_after = token_mse(after, target);
    blocks.push_back({{"block", prefix}, {"output_mse_before", mse_before}, {"output_mse_after", mse_after}});
    if (head_only) {  // report what was fitted too
      const int64_t P = model.cfg.num_prefix_tokens();
      blocks.back()["head_tokens_mse_before"] = token_mse(before, target, T, P);
      blocks.back()["head_tokens_mse_after"] = token_mse(after, target, T, P);
    }
    if (s.progress)
      fmt::print(stderr, "{}: output MSE vs the reference block {:.4g} -> {:.4g} (calibration images)\n", prefix,
                 mse_before, mse_after);
    x = std::move(after);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return {{"method", "block-wise Adam on every parameter of the block, towards the reference block (settings.target)"},
          {"settings", s.to_json()}, {"calibration_images", int64_t(images.size())}, {"blocks", blocks},
          {"seconds", secs}};
}

}  // namespace vs::compress
