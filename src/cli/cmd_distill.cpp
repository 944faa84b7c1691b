#include <filesystem>
#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/common.h"
#include "compress/distill/distill.h"
#include "core/error.h"
#include "io/file.h"
#include "models/load.h"

namespace vs::cli {

// The student's own config.json sections beyond the architecture (e.g. "quantization"), so that
// the distilled model keeps describing what the earlier stages did.
static nlohmann::json student_sections(const std::string& path) {
  auto cfg = std::filesystem::path(path) / "config.json";
  if (!std::filesystem::is_directory(path) || !std::filesystem::exists(cfg)) return nlohmann::json::object();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_text(cfg.string()));
  } catch (const nlohmann::json::exception& e) {
    throw Error(cfg.string() + ": malformed JSON (" + e.what() + ")");
  }
  for (auto k : {"architecture", "num_classes", "global_pool", "model_args", "pretrained_cfg"}) j.erase(k);
  return j;
}

void add_distill(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "distill",
      "Knowledge distillation: trains STUDENT (FP32, quantised, pruned ... any model folder) to match\n"
      "--teacher's logits (KL at --temperature; optionally also its block outputs) on the images of\n"
      "--data (labels not needed), with random resized crops, flips and mixup/cutmix. AdamW with\n"
      "warmup + cosine schedule and gradient clipping. Quantised layers train float latent weights\n"
      "through their own fake quantiser (straight-through) and are written back as integer codes.\n"
      "A checkpoint is written every --checkpoint-every steps; --resume continues an interrupted\n"
      "run to the same final weights as an uninterrupted one.");
  struct Args : ModelArgs {
    std::string teacher, data, split, out, checkpoint;
    compress::DistillSettings s;
    bool no_flip = false;
  };
  auto a = std::make_shared<Args>();
  cmd->option_defaults()->always_capture_default();
  add_model_args(cmd, *a);
  cmd->add_option("--teacher", a->teacher, "teacher model (folder or weights file)")->required();
  cmd->add_option("--data", a->data, "training image folder (ImageNet-style or any images)")->required();
  cmd->add_option("--split", a->split, "file listing the images to use (e.g. calib.txt)");
  cmd->add_option("--steps", a->s.steps, "optimisation steps")->check(CLI::Range(int64_t(1), int64_t(1) << 30));
  cmd->add_option("--batch", a->s.batch, "images per step")->check(CLI::Range(1, 4096));
  cmd->add_option("--lr", a->s.lr, "peak learning rate (AdamW)")->check(CLI::Range(1e-9, 1.0));
  cmd->add_option("--warmup", a->s.warmup, "linear warmup steps before the cosine decay")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 30));
  cmd->add_option("--min-lr-ratio", a->s.min_lr_ratio, "final learning rate as a fraction of --lr")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--weight-decay", a->s.weight_decay, "AdamW decoupled weight decay (matrices only)")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--clip", a->s.clip_norm, "clip the global gradient norm to this (0 = off)")
      ->check(CLI::Range(0.0, 1e6));
  cmd->add_option("--temperature", a->s.temperature, "KD temperature T (loss is T^2 KL)")->check(CLI::Range(0.05, 100.0));
  cmd->add_option("--feature-weight", a->s.feature_weight,
                  "weight of the MSE between student and teacher block outputs (0 = off; same depth/width only)")
      ->check(CLI::Range(0.0, 1e6));
  cmd->add_option("--min-scale", a->s.augment.min_scale, "random resized crop: smallest area fraction")
      ->check(CLI::Range(0.01, 1.0));
  cmd->add_flag("--no-flip", a->no_flip, "no random horizontal flips");
  cmd->add_option("--mix-prob", a->s.augment.mix_prob, "probability that a batch is mixed (mixup or cutmix)")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--seed", a->s.seed, "seed of every random choice (batches, crops, mixing)");
  cmd->add_option("--checkpoint", a->checkpoint, "checkpoint file (default: OUT.ckpt.safetensors)");
  cmd->add_option("--checkpoint-every", a->s.checkpoint_every, "steps between checkpoints (0 = none)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 30));
  cmd->add_flag("--resume", a->s.resume, "continue from the checkpoint (same options required)");
  cmd->add_option("--stop-after", a->s.stop_after,
                  "stop at this step after writing the checkpoint, without writing --out (split a long run)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 30));
  cmd->add_option("--out", a->out, "output model folder")->required();
  cmd->callback([a] {
    a->s.augment.flip = !a->no_flip;
    a->s.checkpoint = a->checkpoint.empty() ? a->out + ".ckpt.safetensors" : a->checkpoint;
    auto images = list_images(a->data, a->split);
    auto student = open_model(*a);
    auto teacher = models::load_model(a->teacher);
    nlohmann::json extra = student_sections(a->path);
    auto r = compress::distill(student, teacher, images, a->s);
    if (a->s.stop_after >= 0 && a->s.stop_after < a->s.steps) {
      fmt::print("stopped at step {} (checkpoint {}); continue with the same options and --resume\n",
                 a->s.stop_after, a->s.checkpoint);
      return;
    }
    r.section["teacher"] = a->teacher;
    extra["distillation"] = r.section;
    models::save_model(a->out, r.student, extra);
    fmt::print("distilled {} -> {}: {} steps on {} images, loss {:.4f} -> {:.4f}\n", a->path, a->out,
               r.section["steps_run"].get<int64_t>(), images.size(), r.section["first_loss"].get<double>(),
               r.section["last_loss"].get<double>());
  });
}

}  // namespace vs::cli
