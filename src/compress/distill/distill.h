// Knowledge distillation: trains a student (FP32, quantised, pruned... any model vitshrink loads)
// to match a teacher's logits (Hinton KD at temperature T), optionally also its block outputs
// (MSE), on unlabelled images with augmentation. AdamW, warmup + cosine schedule, gradient
// clipping. Checkpoints (written atomically) let an interrupted run resume to bit-identical
// final weights: every random draw of step s derives from (seed, s) alone.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "models/vit.h"
#include "train/augment.h"

namespace vs::compress {

struct DistillSettings {
  int64_t steps = 200, batch = 32, warmup = 10;
  double lr = 1e-4, min_lr_ratio = 0.01, weight_decay = 0.05, clip_norm = 1.0;
  float temperature = 1.f;
  float feature_weight = 0.f;  // weight of the block-output MSE (0 = logits only)
  train::AugmentSettings augment;
  uint64_t seed = 0;
  int64_t checkpoint_every = 50;  // 0 = never
  std::string checkpoint;         // checkpoint file (safetensors); empty = none
  bool resume = false;            // continue from `checkpoint`
  int64_t stop_after = -1;        // stop (after checkpointing) at this step: simulates an interruption
  bool progress = true;

  nlohmann::json to_json() const;  // everything that determines the result (checked on resume)
};

struct DistillResult {
  models::ViT student;
  nlohmann::json section;  // config.json "distillation": settings, losses, steps run
};

// `images`: paths of the training images (decoded once and kept in memory).
DistillResult distill(const models::ViT& student, const models::ViT& teacher,
                      const std::vector<std::string>& images, const DistillSettings& s);

}  // namespace vs::compress
