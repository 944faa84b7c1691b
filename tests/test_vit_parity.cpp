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

class RandomArch : public ::testing::TestWithParam<std::pair<const char*, int>> {};

TEST_P(RandomArch, MatchesPyTorch) {
  if (!test::have_torch()) GTEST_SKIP() << "/usr/bin/python3 with torch absent (Debian python3-torch)";
  auto [arch, img] = GetParam();
  test::TempDir tmp;
  std::string dir = tmp / arch;
  ASSERT_EQ(test::run("/usr/bin/python3 " + test::source_dir() + "/tests/ref/torch_vit.py make " + arch +
                      " " + dir + " --seed 1"),
            0);
  expect_parity(dir, 2, img, tmp);
}

INSTANTIATE_TEST_SUITE_P(VitParity, RandomArch,
                         ::testing::Values(std::make_pair("deit_small_patch16_224", 224),
                                           std::make_pair("deit_base_distilled_patch16_224", 224),
                                           std::make_pair("vit_small_patch32_384", 384)),
                         [](const auto& info) { return std::string(info.param.first); });
