// BIG (bimodal integration of the keys): the detector fires on bimodal keys and only there, the
// flips lower the keys' quantisation error, and they leave the float model's logits unchanged.
#include <gtest/gtest.h>

#include <functional>
#include <random>

#include "compress/quant/big.h"
#include "models/load.h"
#include "test_util.h"

using namespace vs;

namespace {

// rows x qk keys: channel c centred at centre(c), spread sd.
std::vector<float> keys(int64_t rows, int64_t qk, float sd, const std::function<float(int64_t)>& centre) {
  std::mt19937 rng(7);
  std::normal_distribution<float> n(0.f, sd);
  std::vector<float> k(size_t(rows * qk));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < qk; ++c) k[size_t(r * qk + c)] = centre(c) + n(rng);
  return k;
}

std::vector<double> means(const std::vector<float>& k, int64_t qk) {
  std::vector<double> m(size_t(qk), 0.0);
  const int64_t rows = int64_t(k.size()) / qk;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < qk; ++c) m[size_t(c)] += k[size_t(r * qk + c)] / double(rows);
  return m;
}

}  // namespace

TEST(Big, DetectorFiresOnlyOnBimodalKeys) {
  const int64_t qk = 24;
  auto two_sided = keys(400, qk, 0.5f, [](int64_t c) { return c % 3 == 0 ? -3.f : 3.f; });
  auto one_peak = keys(400, qk, 1.f, [](int64_t) { return 0.f; });
  auto shifted = keys(400, qk, 1.f, [](int64_t) { return 1.f; });
  EXPECT_TRUE(quant::detect_bimodal(two_sided).bimodal);
  EXPECT_FALSE(quant::detect_bimodal(one_peak).bimodal);
  EXPECT_FALSE(quant::detect_bimodal(shifted).bimodal);

  // The minority (negative) channels are flipped; the 4-bit key quantisation MSE falls.
  quant::BigDecision d = quant::decide_big(two_sided, qk, means(two_sided, qk), 4, quant::Observer::minmax);
  ASSERT_EQ(d.flip.size(), 8u);
  for (int64_t c : d.flip) EXPECT_EQ(c % 3, 0);
  // Measured for these keys (4-bit, minmax): 0.0324 -> 0.00884, 3.7x lower.
  EXPECT_LT(d.mse_after * 3, d.mse_before);
  quant::BigDecision none = quant::decide_big(one_peak, qk, means(one_peak, qk), 4, quant::Observer::minmax);
  EXPECT_TRUE(none.flip.empty());
  EXPECT_EQ(none.mse_before, none.mse_after);
}

TEST(Big, FlipsLeaveFloatLogitsUnchanged) {
  test::TempDir tmp;
  models::ViT m = models::load_model(test::write_tiny_model(tmp));
  Tensor img = test::random_tensor({2, 3, 16, 16}, 9);
  Tensor before = m.forward(img);
  quant::apply_big(m.blocks[0].attn, {0, 3, 5, 31});
  quant::apply_big(m.blocks[1].attn, {1});
  Tensor after = m.forward(img);
  EXPECT_EQ(test::max_abs_diff(before, after), 0.f);  // bit for bit: (-q)(-k) = qk exactly
  // ... while the qkv weights did change.
  auto* qkv = dynamic_cast<nn::DenseLinear*>(m.blocks[0].attn.qkv.get());
  ASSERT_NE(qkv, nullptr);
  models::ViT orig = models::load_model(tmp / "tiny");
  auto* q0 = dynamic_cast<nn::DenseLinear*>(orig.blocks[0].attn.qkv.get());
  EXPECT_EQ(qkv->weight().f32()[0], -q0->weight().f32()[0]);
}
