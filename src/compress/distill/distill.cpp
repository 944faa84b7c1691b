#include "compress/distill/distill.h"

#include <algorithm>
#include <filesystem>
#include <fmt/format.h>
#include <numeric>

#include "core/error.h"
#include "core/progress.h"
#include "io/image.h"
#include "io/safetensors.h"
#include "train/loss.h"
#include "train/optim.h"
#include "train/sampling.h"
#include "train/vit.h"

namespace vs::compress {

nlohmann::json DistillSettings::to_json() const {
  return {{"steps", steps}, {"batch", batch}, {"warmup", warmup}, {"lr", lr}, {"min_lr_ratio", min_lr_ratio},
          {"weight_decay", weight_decay}, {"clip_norm", clip_norm}, {"temperature", temperature},
          {"feature_weight", feature_weight}, {"seed", seed},
          {"augment", {{"min_scale", augment.min_scale}, {"flip", augment.flip}, {"mix_prob", augment.mix_prob},
                       {"mixup_alpha", augment.mixup_alpha}, {"cutmix_alpha", augment.cutmix_alpha}}}};
}

namespace {

void save_checkpoint(const std::string& path, int64_t step, const std::vector<train::Param*>& params,
                     const train::AdamW& opt, const DistillSettings& s) {
  StateDict sd;
  for (auto* p : params) sd["param." + p->name] = p->value;
  opt.save(sd);
  Tensor st({1}, DType::i64);
  st.data<int64_t>()[0] = step;
  sd["step"] = st;
  save_safetensors(path, sd, {{"settings", s.to_json().dump()}, {"producer", "vitshrink distill"}});
}

int64_t load_checkpoint(const std::string& path, const std::vector<train::Param*>& params, train::AdamW& opt,
                        const DistillSettings& s) {
  check(std::filesystem::exists(path), path + ": no checkpoint to resume from");
  SafetensorsFile f = load_safetensors(path);
  auto it = f.metadata.find("settings");
  check(it != f.metadata.end(), path + ": not a vitshrink distill checkpoint (no settings)");
  check(nlohmann::json::parse(it->second) == s.to_json(),
        path + ": checkpoint was made with different settings; resume with the same options (" + it->second + ")");
  for (auto* p : params) {
    auto t = f.tensors.find("param." + p->name);
    check(t != f.tensors.end(), path + ": missing tensor 'param." + p->name + "' (different student?)");
    check(t->second.shape() == p->value.shape() && t->second.dtype() == DType::f32,
          path + ": tensor 'param." + p->name + "' does not match the student");
    std::copy_n(t->second.f32(), p->value.numel(), p->value.f32());
  }
  opt.load(f.tensors, path);
  auto st = f.tensors.find("step");
  check(st != f.tensors.end() && st->second.dtype() == DType::i64, path + ": missing 'step'");
  const int64_t step = st->second.data<int64_t>()[0];
  check(step >= 0 && step <= s.steps, path + ": step " + std::to_string(step) + " is out of range");
  return step;
}

}  // namespace

DistillResult distill(const models::ViT& student, const models::ViT& teacher,
                      const std::vector<std::string>& images, const DistillSettings& s) {
  check(!images.empty(), "distill: no training images");
  check(s.steps > 0 && s.batch > 0, "distill: steps and batch must be positive");
  check(teacher.cfg.num_classes == student.cfg.num_classes,
        "distill: teacher and student have different numbers of classes");
  check(teacher.cfg.img_size == student.cfg.img_size, "distill: teacher and student take different image sizes");
  check(s.feature_weight == 0 || (teacher.cfg.depth == student.cfg.depth && teacher.cfg.embed_dim == student.cfg.embed_dim &&
                                  teacher.cfg.num_tokens() == student.cfg.num_tokens()),
        "distill: --feature-weight needs teacher and student of the same depth, width and tokens");
  check(!s.resume || !s.checkpoint.empty(), "distill: --resume needs a checkpoint path");

  std::vector<Image> decoded(images.size());
  std::exception_ptr err;
#pragma omp parallel for schedule(dynamic)
  for (size_t i = 0; i < images.size(); ++i) {
    try {
      decoded[i] = load_image(images[i]);
    } catch (...) {
#pragma omp critical
      if (!err) err = std::current_exception();
    }
  }
  if (err) std::rethrow_exception(err);

  train::TrainViT net(student);
  std::unique_ptr<train::TrainViT> teacher_net;  // only for feature distillation (block outputs)
  if (s.feature_weight > 0) teacher_net = std::make_unique<train::TrainViT>(teacher);
  auto params = net.params();
  train::AdamW opt(params, {0.9, 0.999, 1e-8, s.weight_decay});
  int64_t step = 0;
  if (s.resume) step = load_checkpoint(s.checkpoint, params, opt, s);
  const int64_t start = step;

  Progress bar("distill", s.steps);
  double first_loss = -1, last_loss = 0, ema = 0;
  for (; step < s.steps; ++step) {
    if (step == s.stop_after) break;
    std::vector<const Image*> batch;
    for (size_t i : train::batch_indices(s.seed, step, s.batch, decoded.size())) batch.push_back(&decoded[i]);
    auto rng = train::rng_for(s.seed, 2, uint64_t(step));
    Tensor x = train::augment_batch(batch, student.cfg.pre, s.augment, rng);

    Tensor t_logits = teacher_net ? teacher_net->forward(x) : teacher.forward(x);
    Tensor logits = net.forward(x), dlogits;
    double loss = train::kd_loss(logits, t_logits, s.temperature, dlogits);
    std::vector<Tensor> dblocks;
    if (teacher_net) {
      const auto &sb = net.block_outputs(), &tb = teacher_net->block_outputs();
      for (size_t i = 0; i < sb.size(); ++i) {
        Tensor g;
        loss += train::mse_loss(sb[i], tb[i], s.feature_weight / float(sb.size()), g);
        dblocks.push_back(g);
      }
    }
    net.backward(dlogits, teacher_net ? &dblocks : nullptr);
    train::clip_grad_norm(params, s.clip_norm);
    opt.step(train::cosine_lr(s.lr, step, s.steps, s.warmup, s.min_lr_ratio));

    if (first_loss < 0) first_loss = loss;
    last_loss = loss;
    ema = step == start ? loss : 0.9 * ema + 0.1 * loss;
    if (s.progress) bar.update(step + 1, fmt::format("loss {:.4f}", ema));
    if (!s.checkpoint.empty() && s.checkpoint_every > 0 && (step + 1) % s.checkpoint_every == 0) {
      save_checkpoint(s.checkpoint, step + 1, params, opt, s);
      if (s.progress) fmt::print(stderr, "\nstep {}/{}: loss {:.4f} (average {:.4f}), checkpoint {}\n", step + 1, s.steps, loss, ema, s.checkpoint);
    }
  }
  if (s.progress) bar.finish();
  if (!s.checkpoint.empty() && step < s.steps) save_checkpoint(s.checkpoint, step, params, opt, s);

  nlohmann::json section = s.to_json();
  section["steps_run"] = step - start;
  section["resumed_from_step"] = start;
  section["first_loss"] = first_loss;
  section["last_loss"] = last_loss;
  section["images"] = images.size();
  return {net.to_vit(), section};
}

}  // namespace vs::compress
