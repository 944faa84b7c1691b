// A whole ViT under training: built from a loaded models::ViT (any layer widths, uneven heads,
// quantised Linear layers), trained through forward / backward, and written back into a
// models::ViT of the same structure that every other command uses.
#pragma once
#include <vector>

#include "models/vit.h"
#include "train/layers.h"

namespace vs::train {

class TrainViT {
 public:
  explicit TrainViT(const models::ViT& m);

  // images [B, in_chans, S, S] -> logits [B, num_classes]; keeps what backward needs.
  Tensor forward(const Tensor& images);
  // Sets every parameter's gradient from dL/dlogits [B, num_classes], plus, when given,
  // dL/d(block i output) for every block (feature distillation).
  void backward(const Tensor& dlogits, const std::vector<Tensor>* dblocks = nullptr);
  // Output of each block of the last forward, [B * tokens, C] (for feature distillation).
  const std::vector<Tensor>& block_outputs() const { return block_out_; }

  std::vector<Param*> params();  // in a fixed order
  models::ViT to_vit() const;     // a fresh inference model with the current weights

  models::ViTConfig cfg;

 private:
  Param cls_, dist_, pos_;
  TrainLinear patch_embed_, head_, head_dist_;
  std::vector<TrainBlock> blocks_;
  TrainLayerNorm norm_;  // norm, or fc_norm with mean pooling
  std::vector<Tensor> block_out_;
  int64_t B_ = 0;
};

}  // namespace vs::train
