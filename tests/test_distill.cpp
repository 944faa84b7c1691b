// Distillation, optimiser and checkpoints on tiny random models (no ../shared needed).
#include <gtest/gtest.h>

#include <cstring>

#include "compress/distill/distill.h"
#include "core/error.h"
#include "models/load.h"
#include "nn/lowrank_linear.h"
#include "nn/quant_linear.h"
#include "train/loss.h"
#include "train/optim.h"
#include "train/vit.h"
#include "train_util.h"

using namespace vs;

namespace {

compress::DistillSettings small_settings() {
  compress::DistillSettings s;
  s.steps = 6;
  s.batch = 4;
  s.warmup = 2;
  s.lr = 3e-3;
  s.checkpoint_every = 2;
  s.progress = false;
  s.seed = 11;
  return s;
}

bool same_weights(const models::ViT& a, const models::ViT& b) {
  auto sa = a.state_dict(), sb = b.state_dict();
  if (sa.size() != sb.size()) return false;
  for (auto& [k, t] : sa)
    if (!sb.count(k) || t.nbytes() != sb.at(k).nbytes() || std::memcmp(t.raw(), sb.at(k).raw(), t.nbytes()) != 0)
      return false;
  return true;
}

}  // namespace

TEST(Optim, CosineScheduleAndClipping) {
  EXPECT_DOUBLE_EQ(train::cosine_lr(1.0, 0, 100, 10), 0.1);   // warmup
  EXPECT_DOUBLE_EQ(train::cosine_lr(1.0, 10, 110, 10), 1.0);  // peak
  EXPECT_NEAR(train::cosine_lr(1.0, 60, 110, 10), 0.5, 1e-12);
  EXPECT_NEAR(train::cosine_lr(1.0, 110, 110, 10, 0.1), 0.1, 1e-12);
  train::Param p = train::make_param("w", Tensor::from({2}, {0.f, 0.f}), true);
  p.grad = Tensor::from({2}, {3.f, 4.f});
  std::vector<train::Param*> ps{&p};
  EXPECT_NEAR(train::clip_grad_norm(ps, 1.0), 5.0, 1e-9);
  EXPECT_NEAR(p.grad.f32()[0], 0.6f, 1e-6);
  EXPECT_NEAR(p.grad.f32()[1], 0.8f, 1e-6);
}

// AdamW: the first step moves every weight by lr against the gradient's sign (bias-corrected
// moments), and decay shrinks decayed weights by lr * wd first.
TEST(Optim, AdamWFirstStep) {
  train::Param w = train::make_param("w", Tensor::from({2}, {1.f, -2.f}), true);
  train::Param b = train::make_param("b", Tensor::from({1}, {1.f}), false);
  w.grad = Tensor::from({2}, {0.5f, -3.f});
  b.grad = Tensor::from({1}, {-1.f});
  train::AdamW opt({&w, &b}, {0.9, 0.999, 1e-8, 0.1});
  opt.step(0.01);
  EXPECT_NEAR(w.value.f32()[0], 1.f * (1 - 0.001f) - 0.01f, 1e-6);
  EXPECT_NEAR(w.value.f32()[1], -2.f * (1 - 0.001f) + 0.01f, 1e-6);
  EXPECT_NEAR(b.value.f32()[0], 1.f + 0.01f, 1e-6);
}

// Distillation lowers the KD loss of a perturbed student on fixed images, for an FP32 and a
// W4A8 student (latent weights through the straight-through quantiser), and the output loads.
TEST(Distill, LowersLossFloatAndQuantised) {
  test::TempDir tmp;
  auto images = test::random_images(tmp, 8);
  auto teacher = test::tiny_vit(3);
  for (const char* kind : {"float", "quant", "lowrank"}) {
    const bool quant = std::string(kind) == "quant", lowrank = std::string(kind) == "lowrank";
    auto student = test::tiny_vit(4);  // a different random model: far from the teacher
    if (lowrank)  // rank-4 students: the two factors train as two Linears in a row
      for (auto& [name, slot] : student.linears())
        if (name.find("blocks.") == 0) {
          auto& d = dynamic_cast<nn::DenseLinear&>(**slot);
          *slot = std::make_unique<nn::LowRankLinear>(
              std::make_unique<nn::DenseLinear>(test::random_tensor({4, d.in_features()}, 40, 0.3f), Tensor()),
              std::make_unique<nn::DenseLinear>(test::random_tensor({d.out_features(), 4}, 41, 0.3f), d.bias()));
        }
    if (quant)
      for (auto& [name, slot] : student.linears())
        if (name.find("blocks.") == 0) {
          auto& d = dynamic_cast<nn::DenseLinear&>(**slot);
          Tensor ws({d.out_features()});
          for (int64_t n = 0; n < d.out_features(); ++n) ws.f32()[n] = 0.08f;
          *slot = nn::QuantLinear::from_dense(d, ws, 4, nn::ActQuant{8, true, 1.f, 0});
        }
    Tensor x = test::random_tensor({8, 3, 16, 16}, 5);
    Tensor t = teacher.forward(x), g;
    const double before = train::kd_loss(student.forward(x), t, 1.f, g);
    auto s = small_settings();
    s.steps = 40;
    s.checkpoint.clear();
    auto r = compress::distill(student, teacher, images, s);
    const double after = train::kd_loss(r.student.forward(x), t, 1.f, g);
    std::printf("%s student: KD loss %.4f -> %.4f\n", kind, before, after);
    EXPECT_LT(after, 0.7 * before);
    if (quant || lowrank) EXPECT_EQ(r.student.blocks[0].attn.qkv->kind(), student.blocks[0].attn.qkv->kind());
    if (lowrank) EXPECT_EQ(r.student.num_params(), student.num_params());
  }
}

// An interrupted run resumed from its checkpoint ends with bit-identical weights.
TEST(Distill, ResumeIsBitIdentical) {
  test::TempDir tmp;
  auto images = test::random_images(tmp, 6);
  auto teacher = test::tiny_vit(3), student = test::tiny_vit(4);
  for (float fw : {0.f, 0.5f}) {
    auto s = small_settings();
    s.feature_weight = fw;
    s.checkpoint = tmp / "full.ckpt";
    auto full = compress::distill(student, teacher, images, s);
    s.checkpoint = tmp / "part.ckpt";
    s.stop_after = 3;  // "interrupted" after step 3 (last regular checkpoint at step 2)
    compress::distill(student, teacher, images, s);
    s.stop_after = -1;
    s.resume = true;
    auto resumed = compress::distill(student, teacher, images, s);
    EXPECT_EQ(resumed.section["resumed_from_step"], 3);
    EXPECT_TRUE(same_weights(full.student, resumed.student)) << "feature weight " << fw;
    EXPECT_FALSE(same_weights(full.student, student));  // it did train
    // A resume with different options is refused.
    s.lr *= 2;
    EXPECT_THROW(compress::distill(student, teacher, images, s), Error);
  }
}

// The command: writes a model folder that loads; a missing checkpoint is a one-line error.
TEST(Distill, Command) {
  test::TempDir tmp;
  test::random_images(tmp, 4);
  std::string model = tmp / "m", out = tmp / "out";
  models::save_model(model, test::tiny_vit(5));
  std::string base = test::cli() + " distill " + model + " --teacher " + model + " --data " + tmp.path.string() +
                     " --steps 2 --batch 2 --threads 1 --out " + out;
  int st = 0;
  std::string log = test::run_output(base, &st);
  ASSERT_EQ(st, 0) << log;
  EXPECT_NE(log.find("distilled"), std::string::npos) << log;
  auto m = models::load_model(out);
  EXPECT_EQ(m.blocks.size(), 2u);
  log = test::run_output(base + " --resume --checkpoint " + (tmp / "none.ckpt"), &st);
  EXPECT_NE(st, 0);
  EXPECT_NE(log.find("no checkpoint to resume from"), std::string::npos) << log;
}
