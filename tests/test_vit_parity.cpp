// Logits parity with an independent PyTorch implementation (tests/ref/torch_vit.py) on the same
// input tensor: max |diff| <= 1e-3 for the real ViT-Ti and random DeiT-S, DeiT-B distilled and a
// patch-32 / 384-pixel ViT.
#include <gtest/gtest.h>

#include "models/load.h"
#include "test_util.h"

using namespace vs;

static void expect_parity(const std::string& model_dir, int64_t batch, int64_t img, const test::TempDir& tmp) {
  Tensor x = test::random_tensor({batch, 3, img, img}, 42);
  test::write_raw(tmp / "x.bin", x);
  ASSERT_EQ(test::run("/usr/bin/python3 " + test::source_dir() + "/tests/ref/torch_vit.py forward " +
                      model_dir + " " + (tmp / "x.bin") + " " + (tmp / "ref.bin")),
            0);
  auto model = models::load_model(model_dir);
  Tensor y = model.forward(x);
  Tensor ref = test::read_raw(tmp / "ref.bin", y.shape());
  float diff = test::max_abs_diff(y, ref), scale = 0;
  for (int64_t i = 0; i < ref.numel(); ++i) scale = std::max(scale, std::abs(ref.f32()[i]));
  std::printf("%s: max |diff| %.2e (max |logit| %.2f)\n", model_dir.c_str(), diff, scale);
  EXPECT_LE(diff, 1e-3f);
}

TEST(VitParity, RealVitTinyMatchesPyTorch) {
  if (!test::have_shared()) GTEST_SKIP() << "../shared ViT-Ti checkpoint absent";
  if (!test::have_torch()) GTEST_SKIP() << "/usr/bin/python3 with torch absent (Debian python3-torch)";
  test::TempDir tmp;
  expect_parity(test::vit_tiny_dir(), 2, 224, tmp);
}

TEST(VitParity, MeanPoolingVariant) {
  if (!test::have_torch()) GTEST_SKIP() << "/usr/bin/python3 with torch absent (Debian python3-torch)";
  test::TempDir tmp;
  std::string dir = tmp / "avg";
  ASSERT_EQ(test::run("/usr/bin/python3 " + test::source_dir() + "/tests/ref/torch_vit.py make " +
                      "vit_tiny_patch16_224 " + dir + " --seed 3 --pool avg"),
            0);
  expect_parity(dir, 2, 224, tmp);
}

// A .pth training checkpoint (fp16, nested under "model") given with --arch loads to the
// fp16-rounded weights: same logits as the safetensors copy within fp16 rounding effects.
TEST(VitParity, PthCheckpointWithArchLoads) {
  if (!test::have_torch()) GTEST_SKIP() << "/usr/bin/python3 with torch absent (Debian python3-torch)";
  test::TempDir tmp;
  std::string dir = tmp / "deit";
  ASSERT_EQ(test::run("/usr/bin/python3 " + test::source_dir() + "/tests/ref/torch_vit.py make " +
                      "deit_tiny_patch16_224 " + dir + " --seed 5"),
            0);
  auto a = models::load_model(dir);
  auto b = models::load_model(dir + "/pth/model.pth", "deit_tiny_patch16_224");
  EXPECT_EQ(b.num_params(), a.num_params());
  Tensor x = test::random_tensor({1, 3, 224, 224}, 9);
  Tensor ya = a.forward(x), yb = b.forward(x);
  float scale = 0;
  for (int64_t i = 0; i < ya.numel(); ++i) scale = std::max(scale, std::abs(ya.f32()[i]));
  EXPECT_LT(test::max_abs_diff(ya, yb), 0.02f * scale);  // fp16 weights: ~1e-3 relative per weight
  EXPECT_GT(test::max_abs_diff(ya, yb), 0.f);             // and they really are the fp16 values
}

class RandomArch : public ::testing::TestWithParam<std::pair<const char*, int>> {};

TEST_P(RandomArch, MatchesPyTorch) {
  if (!test::have_torch()) GTEST_SKIP() << "/usr/bin/python3 with torch absent (Debian python3-torch)";
  auto [arch, img] = GetParam();
  test::TempDir tmp;
  std::string dir = tmp / arch;
  ASSERT_EQ(test::run("/usr/bin/python3 " + test::source_dir() + "/tests/ref/torch_vit.py make " + arch +
                      " " + dir + " --seed 1"),
            0);
  // DeiT-S at batch 6 (1182 token rows) also covers the pre-packed-weights GEMM path (>= 1024 rows).
  expect_parity(dir, std::string(arch) == "deit_small_patch16_224" ? 6 : 2, img, tmp);
}

INSTANTIATE_TEST_SUITE_P(VitParity, RandomArch,
                         ::testing::Values(std::make_pair("deit_small_patch16_224", 224),
                                           std::make_pair("deit_base_distilled_patch16_224", 224),
                                           std::make_pair("vit_small_patch32_384", 384)),
                         [](const auto& info) { return std::string(info.param.first); });
