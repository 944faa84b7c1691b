// Tiny random ViTs for the training tests (built in C++, no Python needed).
#pragma once
#include <random>
#include <string>
#include <vector>

#include "io/image.h"
#include "models/vit.h"
#include "test_util.h"

namespace vs::test {

// img 16, patch 8 (4 patches), C = 16, 2 heads, MLP 32, 10 classes; options for the variants.
inline models::ViT tiny_vit(unsigned seed, bool distilled = false, bool avg_pool = false,
                            bool layer_scale = false, int depth = 2) {
  models::ViTConfig cfg;
  cfg.arch = distilled ? "deit_tiny_distilled_patch8_16" : "vit_tiny_patch8_16";
  cfg.img_size = 16;
  cfg.patch_size = 8;
  cfg.embed_dim = 16;
  cfg.depth = depth;
  cfg.num_heads = 2;
  cfg.num_classes = 10;
  cfg.mlp_ratio = 2.0;
  cfg.distilled = distilled;
  cfg.global_pool = avg_pool ? "avg" : "token";
  cfg.pre.input_size = 16;
  const int64_t C = cfg.embed_dim, H = int64_t(C * cfg.mlp_ratio);
  StateDict sd;
  unsigned s = seed * 1000;
  auto rnd = [&](Shape shape, float sd_) { return random_tensor(std::move(shape), ++s, sd_); };
  auto ones_ish = [&](int64_t n) {
    Tensor t = rnd({n}, 0.1f);
    for (int64_t i = 0; i < n; ++i) t.f32()[i] += 1.f;
    return t;
  };
  sd["cls_token"] = rnd({1, 1, C}, 0.5f);
  if (distilled) sd["dist_token"] = rnd({1, 1, C}, 0.5f);
  sd["pos_embed"] = rnd({1, cfg.num_tokens(), C}, 0.5f);
  sd["patch_embed.proj.weight"] = rnd({C, 3, 8, 8}, 0.1f);
  sd["patch_embed.proj.bias"] = rnd({C}, 0.1f);
  for (int64_t i = 0; i < cfg.depth; ++i) {
    std::string p = "blocks." + std::to_string(i);
    sd[p + ".norm1.weight"] = ones_ish(C);
    sd[p + ".norm1.bias"] = rnd({C}, 0.1f);
    sd[p + ".attn.qkv.weight"] = rnd({3 * C, C}, 0.3f);
    sd[p + ".attn.qkv.bias"] = rnd({3 * C}, 0.1f);
    sd[p + ".attn.proj.weight"] = rnd({C, C}, 0.3f);
    sd[p + ".attn.proj.bias"] = rnd({C}, 0.1f);
    sd[p + ".norm2.weight"] = ones_ish(C);
    sd[p + ".norm2.bias"] = rnd({C}, 0.1f);
    sd[p + ".mlp.fc1.weight"] = rnd({H, C}, 0.3f);
    sd[p + ".mlp.fc1.bias"] = rnd({H}, 0.1f);
    sd[p + ".mlp.fc2.weight"] = rnd({C, H}, 0.2f);
    sd[p + ".mlp.fc2.bias"] = rnd({C}, 0.1f);
    if (layer_scale) {
      sd[p + ".ls1.gamma"] = ones_ish(C);
      sd[p + ".ls2.gamma"] = ones_ish(C);
    }
  }
  std::string n = avg_pool ? "fc_norm" : "norm";
  sd[n + ".weight"] = ones_ish(C);
  sd[n + ".bias"] = rnd({C}, 0.1f);
  sd["head.weight"] = rnd({10, C}, 0.3f);
  sd["head.bias"] = rnd({10}, 0.1f);
  if (distilled) {
    sd["head_dist.weight"] = rnd({10, C}, 0.3f);
    sd["head_dist.bias"] = rnd({10}, 0.1f);
  }
  return models::ViT::from_state_dict(cfg, sd, "tiny_vit");
}

}  // namespace vs::test
