// The real ViT-Ti of ../shared on the eval split of imagenet-sample must reproduce PyTorch +
// timm preprocessing. ../shared/README.md quotes top-1 82.91 / top-5 96.79; our independent
// reference (PIL + plain PyTorch, tests/ref/torch_eval.py) measures top-1 83.26 / top-5 96.79:
//   /usr/bin/python3 tests/ref/torch_eval.py ../shared/models/vit_tiny_patch16_224.augreg_in21k_ft_in1k \
//       ../shared/data/imagenet-sample ../shared/data/imagenet-sample/eval.txt
// (3 of 872 images apart from the quoted top-1; top-5 identical). We hold vitshrink to the
// reference we can rerun: within 0.25 top-1 and 0.3 top-5.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "test_util.h"

using namespace vs;

TEST(Accuracy, VitTinyEvalSplitMatchesPyTorch) {
  if (!test::have_shared()) GTEST_SKIP() << "../shared ViT-Ti checkpoint or imagenet-sample absent";
  test::TempDir tmp;
  std::string d = test::imagenet_dir();
  int st = 0;
  std::string out = test::run_output(test::cli() + " eval " + test::vit_tiny_dir() + " --data " + d +
                                         " --split " + d + "/eval.txt --report " + (tmp / "r.json"),
                                     &st);
  ASSERT_EQ(st, 0) << out;
  auto r = nlohmann::json::parse(std::ifstream(tmp / "r.json"));
  std::printf("%s", out.c_str());
  EXPECT_EQ(r["images"].get<int>(), 872);
  EXPECT_NEAR(r["top1"].get<double>(), 83.26, 0.25);
  EXPECT_NEAR(r["top5"].get<double>(), 96.79, 0.3);
  EXPECT_GT(r["seconds"].get<double>(), 0.0);
}
