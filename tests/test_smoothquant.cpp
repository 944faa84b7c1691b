// SQ-b: folding the smoothing (shift z, scale s) into the LayerNorm and the next layer keeps the
// float model's function, and it is chosen only where it lowers the quantised layer's error.
#include <gtest/gtest.h>

#include <map>
#include <tuple>

#include "compress/capture.h"
#include "compress/quant/smoothquant.h"
#include "models/load.h"
#include "test_util.h"

using namespace vs;

TEST(SmoothQuant, FoldKeepsFloatLogitsAndLowersLayerError) {
  test::TempDir tmp;
  models::ViT m = models::load_model(test::write_tiny_model(tmp));
  // Offsets and outliers in a few LayerNorm output channels, as in trained ViTs.
  for (auto& b : m.blocks)
    for (nn::LayerNorm* n : {&b.norm1, &b.norm2}) {
      n->bias.f32()[3] += 2.f;
      n->weight.f32()[7] *= 30.f;
    }
  Tensor img = test::random_tensor({4, 3, 16, 16}, 3);
  Tensor before = m.forward(img);
  std::map<std::string, quant::InputStats> stats;
  {
    compress::Capture cap(m, [&](const compress::Captured& c) { stats[c.name].observe(c.x, c.rows, c.in, 1000); });
    m.forward(img);
  }
  int smoothed = 0;
  for (size_t i = 0; i < m.blocks.size(); ++i) {
    auto& b = m.blocks[i];
    const std::string p = "blocks." + std::to_string(i);
    for (auto [norm, lin, name] : {std::tuple{&b.norm1, &b.attn.qkv, p + ".attn.qkv"},
                                   std::tuple{&b.norm2, &b.mlp.fc1, p + ".mlp.fc1"}}) {
      auto r = quant::smooth_norm_linear(*norm, *lin, stats.at(name), 4, 4, quant::Observer::minmax,
                                         quant::Observer::minmax);
      EXPECT_LE(r.error_after, r.error_before) << name;
      smoothed += r.alpha >= 0;
    }
  }
  EXPECT_GT(smoothed, 0);  // the outliers make smoothing worthwhile somewhere
  Tensor after = m.forward(img);
  float scale = 0;
  for (int64_t i = 0; i < before.numel(); ++i) scale = std::max(scale, std::abs(before.f32()[i]));
  EXPECT_LT(test::max_abs_diff(before, after), 1e-4f * scale + 1e-5f);
}
