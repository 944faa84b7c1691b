#include "models/vit.h"

#include <cstring>

#include "core/error.h"
#include "nn/lowrank_linear.h"

namespace vs::models {

ViT ViT::from_state_dict(const ViTConfig& cfg, const StateDict& sd, const std::string& source,
                         const std::map<std::string, nn::LinearSpec>& quantized,
                         const std::map<std::string, nn::AttnSpec>& attn_quantized) {
  nn::ParamReader p(sd, source);
  p.linear_specs = quantized;
  p.attn_specs = attn_quantized;
  const int64_t C = cfg.embed_dim, P = cfg.patch_size;
  check(cfg.img_size % P == 0, source + ": img_size " + std::to_string(cfg.img_size) +
                                   " is not a multiple of patch_size " + std::to_string(P));
  check(cfg.head_layouts.empty() || int64_t(cfg.head_layouts.size()) == cfg.depth,
        source + ": pruning layout lists " + std::to_string(cfg.head_layouts.size()) + " blocks, depth is " +
            std::to_string(cfg.depth));
  ViT m;
  m.cfg = cfg;
  if (cfg.class_token) m.cls_token = p.get("cls_token", {1, 1, C});
  if (cfg.distilled) m.dist_token = p.get("dist_token", {1, 1, C});
  m.pos_embed = p.get("pos_embed", {1, cfg.num_tokens(), C});
  if (p.linear_specs.count("patch_embed.proj")) {
    m.patch_embed = nn::load_layer(p, "patch_embed.proj", C, cfg.in_chans * P * P, true);
  } else {  // timm stores the conv weight [C, in_chans, P, P]
    Tensor pw = p.get("patch_embed.proj.weight", {C, cfg.in_chans, P, P});
    m.patch_embed = std::make_unique<nn::DenseLinear>(pw.reshape({C, cfg.in_chans * P * P}),
                                                      p.get("patch_embed.proj.bias", {C}));
  }
  for (int64_t i = 0; i < cfg.depth; ++i)
    m.blocks.push_back(nn::Block::load(p, "blocks." + std::to_string(i), C, cfg.num_heads, cfg.qkv_bias,
                                       cfg.norm_eps,
                                       cfg.head_layouts.empty() ? kernels::HeadLayout{} : cfg.head_layouts[size_t(i)],
                                       cfg.attn_scale));
  check(!p.has("blocks." + std::to_string(cfg.depth) + ".norm1.weight"),
        source + ": checkpoint has more than depth=" + std::to_string(cfg.depth) + " blocks");
  if (cfg.use_fc_norm())
    m.fc_norm = nn::LayerNorm::load(p, "fc_norm", C, cfg.norm_eps);
  else
    m.norm = nn::LayerNorm::load(p, "norm", C, cfg.norm_eps);
  m.head = nn::load_layer(p, "head", cfg.num_classes, C, true);
  if (cfg.distilled) m.head_dist = nn::load_layer(p, "head_dist", cfg.num_classes, C, true);
  p.check_all_used();
  return m;
}

StateDict ViT::state_dict() const {
  StateDict sd;
  const int64_t C = cfg.embed_dim, P = cfg.patch_size;
  if (cls_token.defined()) sd["cls_token"] = cls_token;
  if (dist_token.defined()) sd["dist_token"] = dist_token;
  sd["pos_embed"] = pos_embed;
  patch_embed->save("patch_embed.proj", sd);
  if (auto it = sd.find("patch_embed.proj.weight"); it != sd.end())  // timm's conv layout
    it->second = it->second.reshape({C, cfg.in_chans, P, P});
  for (size_t i = 0; i < blocks.size(); ++i) blocks[i].save("blocks." + std::to_string(i), sd);
  if (cfg.use_fc_norm())
    fc_norm.save("fc_norm", sd);
  else
    norm.save("norm", sd);
  head->save("head", sd);
  if (head_dist) head_dist->save("head_dist", sd);
  return sd;
}

Tensor patchify(const Tensor& img, int64_t P) {
  const int64_t B = img.dim(0), c = img.dim(1), H = img.dim(2), W = img.dim(3);
  const int64_t gh = H / P, gw = W / P, K = c * P * P;
  Tensor out = Tensor::empty({B * gh * gw, K});
  const float* src = img.f32();
  float* dst = out.f32();
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t py = 0; py < gh; ++py)
      for (int64_t px = 0; px < gw; ++px) {
        float* row = dst + ((b * gh + py) * gw + px) * K;
        for (int64_t ch = 0; ch < c; ++ch)
          for (int64_t ky = 0; ky < P; ++ky)
            std::memcpy(row + (ch * P + ky) * P,
                        src + ((b * c + ch) * H + py * P + ky) * W + px * P, size_t(P) * 4);
      }
  return out;
}

Tensor ViT::embed(const Tensor& images) const {
  check(images.ndim() == 4 && images.dim(1) == cfg.in_chans && images.dim(2) == cfg.img_size &&
            images.dim(3) == cfg.img_size,
        "ViT: input shape " + shape_str(images.shape()) + " does not match the model (expected [B, " +
            std::to_string(cfg.in_chans) + ", " + std::to_string(cfg.img_size) + ", " +
            std::to_string(cfg.img_size) + "])");
  const int64_t B = images.dim(0), C = cfg.embed_dim, T = cfg.num_tokens(),
                Np = cfg.num_patches(), pre = cfg.num_prefix_tokens();
  Tensor patches = patchify(images, cfg.patch_size);
  Tensor emb = Tensor::empty({B * Np, C});
  patch_embed->forward(patches.f32(), emb.f32(), B * Np);

  // tokens = [cls, dist, patches] + pos_embed
  Tensor x = Tensor::empty({B * T, C});
  float* xp = x.f32();
  const float* pos = pos_embed.f32();
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) {
      const float* src = t >= pre ? emb.f32() + (b * Np + t - pre) * C
                         : (t == 0 && cfg.class_token) ? cls_token.f32()
                                                       : dist_token.f32();
      float* dst = xp + (b * T + t) * C;
      for (int64_t c = 0; c < C; ++c) dst[c] = src[c] + pos[t * C + c];
    }
  return x;
}

Tensor ViT::forward(const Tensor& images) const { return forward_from(embed(images), 0); }

Tensor ViT::forward_from(Tensor x, size_t first_block) const {
  const int64_t C = cfg.embed_dim, T = cfg.num_tokens(), Np = cfg.num_patches(), pre = cfg.num_prefix_tokens();
  check(x.ndim() == 2 && x.dim(1) == C && x.dim(0) % T == 0 && first_block <= blocks.size(),
        "ViT::forward_from: input is not [B * tokens, embed_dim] or no such block");
  const int64_t B = x.dim(0) / T;
  float* xp = x.f32();

  for (size_t k = first_block; k < blocks.size(); ++k) blocks[k].forward(xp, B, T);

  // Pooled features: one row per image (two for distilled: cls and dist).
  const int64_t heads_n = cfg.distilled ? 2 : 1;
  Tensor feat({heads_n * B, C});
  if (cfg.use_fc_norm()) {
    for (int64_t b = 0; b < B; ++b) {
      float* f = feat.f32() + b * C;
      for (int64_t t = pre; t < T; ++t)
        for (int64_t c = 0; c < C; ++c) f[c] += xp[(b * T + t) * C + c];
      for (int64_t c = 0; c < C; ++c) f[c] /= float(Np);
    }
    fc_norm.forward(feat.f32(), feat.f32(), B);
  } else {
    for (int64_t h = 0; h < heads_n; ++h)
      for (int64_t b = 0; b < B; ++b)
        std::memcpy(feat.f32() + (h * B + b) * C, xp + (b * T + h) * C, size_t(C) * 4);
    norm.forward(feat.f32(), feat.f32(), heads_n * B);
  }
  Tensor logits({B, cfg.num_classes});
  head->forward(feat.f32(), logits.f32(), B);
  if (cfg.distilled) {  // DeiT distilled at inference: average of the two heads
    Tensor ld({B, cfg.num_classes});
    head_dist->forward(feat.f32() + B * C, ld.f32(), B);
    for (int64_t i = 0; i < logits.numel(); ++i) logits.f32()[i] = 0.5f * (logits.f32()[i] + ld.f32()[i]);
  }
  return logits;
}

int64_t ViT::num_params() const {
  int64_t n = pos_embed.numel() + (cls_token.defined() ? cls_token.numel() : 0) +
              (dist_token.defined() ? dist_token.numel() : 0) + patch_embed->num_params() +
              head->num_params() + (head_dist ? head_dist->num_params() : 0);
  n += 2 * (cfg.use_fc_norm() ? fc_norm.width() : norm.width());
  for (auto& b : blocks) {
    n += 2 * b.norm1.width() + 2 * b.norm2.width() + b.attn.qkv->num_params() +
         b.attn.proj->num_params() + b.mlp.fc1->num_params() + b.mlp.fc2->num_params();
    n += (b.ls1.defined() ? b.ls1.numel() : 0) + (b.ls2.defined() ? b.ls2.numel() : 0);
  }
  return n;
}

int64_t ViT::param_bytes() const {
  // Linear layers report their stored size (quantized ones are smaller); the rest is fp32.
  int64_t linear_params = patch_embed->num_params() + head->num_params() +
                          (head_dist ? head_dist->num_params() : 0);
  int64_t linear_bytes = patch_embed->bytes() + head->bytes() + (head_dist ? head_dist->bytes() : 0);
  for (auto& b : blocks)
    for (const nn::Linear* l : {b.attn.qkv.get(), b.attn.proj.get(), b.mlp.fc1.get(), b.mlp.fc2.get()}) {
      linear_params += l->num_params();
      linear_bytes += l->bytes();
    }
  return (num_params() - linear_params) * 4 + linear_bytes;
}

int64_t ViT::macs_per_image() const {
  const int64_t T = cfg.num_tokens();
  int64_t macs = cfg.num_patches() * patch_embed->macs_per_row();
  for (auto& b : blocks) {
    macs += T * (b.attn.qkv->macs_per_row() + b.attn.proj->macs_per_row() +
                 b.mlp.fc1->macs_per_row() + b.mlp.fc2->macs_per_row());
    macs += T * T * (b.attn.heads.qk_total() + b.attn.heads.v_total());  // q k^T and attn v
  }
  macs += (cfg.distilled ? 2 : 1) * head->macs_per_row();
  return macs;
}

}  // namespace vs::models

namespace vs::models {

std::vector<std::pair<std::string, std::unique_ptr<nn::Linear>*>> ViT::linears(bool factors) {
  std::vector<std::pair<std::string, std::unique_ptr<nn::Linear>*>> out;
  auto add = [&](const std::string& name, std::unique_ptr<nn::Linear>* slot) {
    auto* lr = factors ? dynamic_cast<nn::LowRankLinear*>(slot->get()) : nullptr;
    if (!lr) return void(out.emplace_back(name, slot));
    out.emplace_back(name + ".down", &lr->down);
    out.emplace_back(name + ".up", &lr->up);
  };
  add("patch_embed.proj", &patch_embed);
  for (size_t i = 0; i < blocks.size(); ++i) {
    std::string p = "blocks." + std::to_string(i);
    add(p + ".attn.qkv", &blocks[i].attn.qkv);
    add(p + ".attn.proj", &blocks[i].attn.proj);
    add(p + ".mlp.fc1", &blocks[i].mlp.fc1);
    add(p + ".mlp.fc2", &blocks[i].mlp.fc2);
  }
  add("head", &head);
  if (head_dist) add("head_dist", &head_dist);
  return out;
}

}  // namespace vs::models
