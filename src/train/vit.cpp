#include "train/vit.h"

#include <cstring>

#include "core/error.h"
#include "kernels/elementwise.h"
#include "train/ops.h"

namespace vs::train {

TrainViT::TrainViT(const models::ViT& m)
    : cfg(m.cfg),
      pos_(make_param("pos_embed", m.pos_embed, false)),
      patch_embed_(*m.patch_embed, "patch_embed.proj"),
      head_(*m.head, "head"),
      norm_(m.cfg.use_fc_norm() ? m.fc_norm : m.norm, m.cfg.use_fc_norm() ? "fc_norm" : "norm") {
  if (m.cls_token.defined()) cls_ = make_param("cls_token", m.cls_token, false);
  if (m.dist_token.defined()) dist_ = make_param("dist_token", m.dist_token, false);
  if (m.head_dist) head_dist_ = TrainLinear(*m.head_dist, "head_dist");
  for (size_t i = 0; i < m.blocks.size(); ++i) blocks_.emplace_back(m.blocks[i], "blocks." + std::to_string(i));
}

Tensor TrainViT::forward(const Tensor& images) {
  check(images.ndim() == 4 && images.dim(1) == cfg.in_chans && images.dim(2) == cfg.img_size &&
            images.dim(3) == cfg.img_size,
        "TrainViT: input shape " + shape_str(images.shape()) + " does not match the model");
  const int64_t B = images.dim(0), C = cfg.embed_dim, T = cfg.num_tokens(), Np = cfg.num_patches(),
                pre = cfg.num_prefix_tokens();
  B_ = B;
  Tensor emb = patch_embed_.forward(models::patchify(images, cfg.patch_size));
  Tensor x = Tensor::empty({B * T, C});
  const float* pos = pos_.value.f32();
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) {
      const float* src = t >= pre ? emb.f32() + (b * Np + t - pre) * C
                         : (t == 0 && cfg.class_token) ? cls_.value.f32()
                                                       : dist_.value.f32();
      float* dst = x.f32() + (b * T + t) * C;
      for (int64_t c = 0; c < C; ++c) dst[c] = src[c] + pos[t * C + c];
    }
  block_out_.clear();
  for (auto& blk : blocks_) {
    x = blk.forward(x, B, T);
    block_out_.push_back(x);
  }
  // Pooled features, one row per image per head (distilled: cls rows, then dist rows).
  const int64_t nh = cfg.distilled ? 2 : 1;
  Tensor feat({nh * B, C});
  if (cfg.use_fc_norm()) {
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = pre; t < T; ++t)
        for (int64_t c = 0; c < C; ++c) feat.f32()[b * C + c] += x.f32()[(b * T + t) * C + c] / float(Np);
  } else {
    for (int64_t h = 0; h < nh; ++h)
      for (int64_t b = 0; b < B; ++b)
        std::memcpy(feat.f32() + (h * B + b) * C, x.f32() + (b * T + h) * C, size_t(C) * 4);
  }
  Tensor f = norm_.forward(feat);
  if (!cfg.distilled) return head_.forward(f);
  // DeiT distilled: the average of the two heads (each on its own rows of f)
  Tensor fc = Tensor::empty({B, C}), fd = Tensor::empty({B, C});
  std::memcpy(fc.f32(), f.f32(), size_t(B * C) * 4);
  std::memcpy(fd.f32(), f.f32() + B * C, size_t(B * C) * 4);
  Tensor logits = head_.forward(fc), ld = head_dist_.forward(fd);
  for (int64_t i = 0; i < logits.numel(); ++i) logits.f32()[i] = 0.5f * (logits.f32()[i] + ld.f32()[i]);
  return logits;
}

void TrainViT::backward(const Tensor& dlogits, const std::vector<Tensor>* dblocks) {
  const int64_t B = B_, C = cfg.embed_dim, T = cfg.num_tokens(), Np = cfg.num_patches(),
                pre = cfg.num_prefix_tokens(), nh = cfg.distilled ? 2 : 1;
  check(dlogits.numel() == B * cfg.num_classes, "TrainViT::backward: gradient shape does not match the forward");
  Tensor dfeat({nh * B, C});
  if (!cfg.distilled) {
    dfeat = head_.backward(dlogits, true);
  } else {
    Tensor half = dlogits.clone();
    for (int64_t i = 0; i < half.numel(); ++i) half.f32()[i] *= 0.5f;
    Tensor dc = head_.backward(half, true), dd = head_dist_.backward(half, true);
    std::memcpy(dfeat.f32(), dc.f32(), size_t(B * C) * 4);
    std::memcpy(dfeat.f32() + B * C, dd.f32(), size_t(B * C) * 4);
  }
  Tensor dpool = norm_.backward(dfeat);
  Tensor dx({B * T, C});
  if (cfg.use_fc_norm()) {
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = pre; t < T; ++t)
        for (int64_t c = 0; c < C; ++c) dx.f32()[(b * T + t) * C + c] = dpool.f32()[b * C + c] / float(Np);
  } else {
    for (int64_t h = 0; h < nh; ++h)
      for (int64_t b = 0; b < B; ++b)
        std::memcpy(dx.f32() + (b * T + h) * C, dpool.f32() + (h * B + b) * C, size_t(C) * 4);
  }
  check(!dblocks || dblocks->size() == blocks_.size(), "TrainViT::backward: one gradient per block expected");
  for (size_t i = blocks_.size(); i-- > 0;) {
    if (dblocks) kernels::add_inplace(dx.f32(), (*dblocks)[i].f32(), dx.numel());
    dx = blocks_[i].backward(dx);
  }
  block_out_.clear();
  // tokens = [cls, dist, patch embeddings] + pos_embed
  column_sums(dx.f32(), pos_.grad.f32(), B, T * C);
  for (Param* tok : {&cls_, &dist_}) {
    if (!tok->value.defined()) continue;
    const int64_t t = tok == &cls_ ? 0 : (cfg.class_token ? 1 : 0);
    Tensor rows = Tensor::empty({B, C});
    for (int64_t b = 0; b < B; ++b) std::memcpy(rows.f32() + b * C, dx.f32() + (b * T + t) * C, size_t(C) * 4);
    column_sums(rows.f32(), tok->grad.f32(), B, C);
  }
  Tensor demb = Tensor::empty({B * Np, C});
  for (int64_t b = 0; b < B; ++b)
    std::memcpy(demb.f32() + b * Np * C, dx.f32() + (b * T + pre) * C, size_t(Np * C) * 4);
  patch_embed_.backward(demb, false);  // the images need no gradient
}

std::vector<Param*> TrainViT::params() {
  std::vector<Param*> out;
  for (Param* p : {&cls_, &dist_, &pos_})
    if (p->value.defined()) out.push_back(p);
  patch_embed_.collect(out);
  for (auto& b : blocks_) b.collect(out);
  out.push_back(&norm_.w);
  out.push_back(&norm_.b);
  head_.collect(out);
  if (cfg.distilled) head_dist_.collect(out);
  return out;
}

models::ViT TrainViT::to_vit() const {
  models::ViT m;
  m.cfg = cfg;
  if (cls_.value.defined()) m.cls_token = cls_.value.clone();
  if (dist_.value.defined()) m.dist_token = dist_.value.clone();
  m.pos_embed = pos_.value.clone();
  m.patch_embed = patch_embed_.to_linear();
  for (auto& b : blocks_) m.blocks.push_back(b.to_block());
  (cfg.use_fc_norm() ? m.fc_norm : m.norm) = norm_.to_layernorm();
  m.head = head_.to_linear();
  if (cfg.distilled) m.head_dist = head_dist_.to_linear();
  return m;
}

}  // namespace vs::train
