// Quantised attention: integer and simulated execution agree bit for bit (uniform and uneven
// heads, every bit width), the result approximates float attention, and the quantisation
// parameters survive a save / load through the CLI's model format.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "compress/quant/agq.h"
#include "kernels/attention.h"
#include "kernels/elementwise.h"
#include "kernels/gemm_int8.h"
#include "nn/attention.h"
#include "test_util.h"

using namespace vs;

namespace {

// Per-tensor parameters from the data itself (what calibration with minmax would give).
kernels::AttnQuant params_for(const Tensor& qkv, const kernels::HeadLayout& hl, int bits, int pbits) {
  const int64_t ld = hl.qkv_width(), qk = hl.qk_total(), rows = qkv.numel() / ld;
  float qlo = 0, qhi = 0, klo = 0, khi = 0, vmax = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < ld; ++c) {
      float x = qkv.f32()[r * ld + c];
      if (c < qk) qlo = std::min(qlo, x), qhi = std::max(qhi, x);
      else if (c < 2 * qk) klo = std::min(klo, x), khi = std::max(khi, x);
      else vmax = std::max(vmax, std::abs(x));
    }
  kernels::AttnQuant a;
  a.q_bits = bits;
  a.k_bits = std::min(bits, kernels::int8_exact_weight_bits(bits));
  a.p_bits = pbits;
  a.v_bits = std::min(bits, kernels::int8_exact_weight_bits(pbits));
  a.q_scale = (qhi - qlo) / float((1 << bits) - 1);
  a.q_zero = int32_t(std::nearbyint(-qlo / a.q_scale));
  a.k_scale = (khi - klo) / float((1 << a.k_bits) - 1);
  a.k_zero = int32_t(std::nearbyint(-klo / a.k_scale));
  a.v_scale = vmax / float((1 << (a.v_bits - 1)) - 1);
  a.p_scale = 1.f / float((1 << pbits) - 1);
  return a;
}

Tensor attend(const Tensor& qkv, int64_t B, int64_t N, const kernels::HeadLayout& hl,
              const kernels::AttnQuant* aq, kernels::IntEngine e) {
  Tensor out({B * N, hl.v_total()});
  if (aq)
    kernels::attention_quant(qkv.f32(), out.f32(), B, N, hl, 0.125f, *aq, e);
  else
    kernels::attention_f32(qkv.f32(), out.f32(), B, N, hl, 0.125f);
  return out;
}

}  // namespace

class QuantAttention : public ::testing::TestWithParam<std::tuple<int, bool>> {};

TEST_P(QuantAttention, IntegerEqualsSimulatedAndApproximatesFloat) {
  auto [bits, uneven] = GetParam();
  kernels::HeadLayout hl;
  hl.qk_dim = uneven ? std::vector<int64_t>{16, 0, 9} : std::vector<int64_t>{16, 16, 16};
  hl.v_dim = uneven ? std::vector<int64_t>{16, 12, 5} : std::vector<int64_t>{16, 16, 16};
  const int64_t B = 2, N = 29;
  Tensor qkv = test::random_tensor({B * N, hl.qkv_width()}, 11, 1.5f);
  for (int64_t i = 0; i < qkv.numel(); i += 5) qkv.f32()[i] += 0.7f;  // q asymmetric: zero points matter
  kernels::AttnQuant aq = params_for(qkv, hl, bits, bits);
  Tensor yi = attend(qkv, B, N, hl, &aq, kernels::IntEngine::onednn);
  Tensor ys = attend(qkv, B, N, hl, &aq, kernels::IntEngine::float_exact);
  EXPECT_EQ(test::max_abs_diff(yi, ys), 0.f) << bits << "-bit" << (uneven ? " uneven heads" : "");
  Tensor yf = attend(qkv, B, N, hl, nullptr, kernels::IntEngine::onednn);
  double err = 0, ref = 0;
  for (int64_t i = 0; i < yf.numel(); ++i) {
    err += std::pow(double(yf.f32()[i]) - yi.f32()[i], 2);
    ref += std::pow(double(yf.f32()[i]), 2);
  }
  // Relative RMS error (deterministic data), measured: 0.024 at 8 bit, 0.096 at 6, 0.51 at 4 bit
  // (worst of even / uneven heads); uniform 4-bit probabilities are coarse (issue 4: log2).
  double bound = bits >= 8 ? 0.03 : bits >= 6 ? 0.12 : 0.6;
  EXPECT_LT(std::sqrt(err / ref), bound) << bits << "-bit";
}

INSTANTIATE_TEST_SUITE_P(Bits, QuantAttention, ::testing::Combine(::testing::Values(8, 6, 4), ::testing::Bool()));

TEST(QuantAttention, FloatPointsStayFloat) {
  // q/k quantised, P v float (and the reverse): each product is integer or float as a whole.
  kernels::HeadLayout hl{{8, 8}, {8, 8}};
  const int64_t B = 1, N = 17;
  Tensor qkv = test::random_tensor({B * N, hl.qkv_width()}, 12);
  kernels::AttnQuant only_qk = params_for(qkv, hl, 8, 8), only_pv = only_qk;
  only_qk.p_bits = only_qk.v_bits = 16;
  only_pv.q_bits = only_pv.k_bits = 16;
  Tensor yf = attend(qkv, B, N, hl, nullptr, kernels::IntEngine::onednn);
  for (auto* a : {&only_qk, &only_pv}) {
    Tensor yi = attend(qkv, B, N, hl, a, kernels::IntEngine::onednn);
    Tensor ys = attend(qkv, B, N, hl, a, kernels::IntEngine::float_exact);
    EXPECT_EQ(test::max_abs_diff(yi, ys), 0.f);
    EXPECT_GT(test::max_abs_diff(yi, yf), 0.f);  // something was quantised
    EXPECT_LT(test::max_abs_diff(yi, yf), 0.1f);
  }
}

TEST(QuantAttention, ParametersSaveAndLoad) {
  const int64_t C = 32, H = 2;
  StateDict sd;
  sd["a.qkv.weight"] = test::random_tensor({3 * C, C}, 1, 0.2f);
  sd["a.qkv.bias"] = test::random_tensor({3 * C}, 2, 0.1f);
  sd["a.proj.weight"] = test::random_tensor({C, C}, 3, 0.2f);
  sd["a.proj.bias"] = test::random_tensor({C}, 4, 0.1f);
  nn::ParamReader p(sd, "mem");
  nn::Attention a = nn::Attention::load(p, "a", C, H, true);
  Tensor x = test::random_tensor({2 * 9, C}, 5);
  Tensor qkv = a.qkv->forward(x);
  a.quant = params_for(qkv, a.heads, 6, 8);
  StateDict out;
  a.save("a", out);
  EXPECT_EQ(out.count("a.q_scale") + out.count("a.q_zero") + out.count("a.k_scale") + out.count("a.k_zero") +
                out.count("a.v_scale") + out.count("a.p_scale"),
            6u);
  nn::ParamReader p2(out, "mem");
  p2.attn_specs["a"] = {a.quant.q_bits, a.quant.k_bits, a.quant.v_bits, a.quant.p_bits};
  nn::Attention b = nn::Attention::load(p2, "a", C, H, true);
  p2.check_all_used();
  Tensor ya({18, C}), yb({18, C});
  a.forward(x.f32(), ya.f32(), 2, 9);
  b.forward(x.f32(), yb.f32(), 2, 9);
  EXPECT_EQ(test::max_abs_diff(ya, yb), 0.f);
  // A bad bit width in the spec is one clear error naming the source.
  nn::ParamReader p3(out, "model.safetensors");
  p3.attn_specs["a"] = {12, 8, 8, 8};
  try {
    nn::Attention::load(p3, "a", C, H, true);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.safetensors: attention bits"), std::string::npos) << e.what();
  }
}

TEST(QuantAttention, Log2ProbabilitiesIntegerEqualsSimulated) {
  kernels::HeadLayout hl{{16, 16}, {16, 16}};
  const int64_t B = 2, N = 31;
  Tensor qkv = test::random_tensor({B * N, hl.qkv_width()}, 21, 2.f);
  Tensor yf = attend(qkv, B, N, hl, nullptr, kernels::IntEngine::onednn);
  auto rel_rms = [&](const Tensor& y) {
    double err = 0, ref = 0;
    for (int64_t i = 0; i < y.numel(); ++i) {
      err += std::pow(double(yf.f32()[i]) - y.f32()[i], 2);
      ref += std::pow(double(yf.f32()[i]), 2);
    }
    return std::sqrt(err / ref);
  };
  for (int bits : {8, 4}) {
    std::vector<double> errs;
    for (int tau : {1, 2, 4}) {
      kernels::AttnQuant aq = params_for(qkv, hl, 8, bits);
      aq.p_tau = tau;
      aq.p_scale = 1.f;
      Tensor yi = attend(qkv, B, N, hl, &aq, kernels::IntEngine::onednn);
      Tensor ys = attend(qkv, B, N, hl, &aq, kernels::IntEngine::float_exact);
      EXPECT_EQ(test::max_abs_diff(yi, ys), 0.f) << bits << "-bit tau " << tau;
      errs.push_back(rel_rms(yi));
    }
    // At 8 bits the range is ample, so a finer base (larger tau) is strictly more precise.
    // Measured relative RMS (tau 1 / 2 / 4): 8-bit 0.230 / 0.094 / 0.051, 4-bit 0.230 / 0.097 / 0.278
    // (at 4 bits tau 4 runs out of range: 15 codes cover only 2^-3.5).
    if (bits == 8) {
      EXPECT_LT(errs[2], errs[1]);
      EXPECT_LT(errs[1], errs[0]);
    }
    for (double e : errs) EXPECT_LT(e, 0.4) << bits << "-bit";
  }
}

TEST(QuantAttention, AgqPicksTheLeastErrorAndBeatsUniformAt4Bits) {
  // Peaked softmax rows (as in trained ViTs) over random values.
  const int64_t N = 40, dv = 8;
  quant::AttnSample s;
  s.N = N;
  for (int img = 0; img < 3; ++img) {
    Tensor scores = test::random_tensor({N, N}, 30 + unsigned(img), 3.f);
    std::vector<float> p(scores.f32(), scores.f32() + N * N);
    kernels::softmax_rows(p.data(), N, N, 1.f);
    s.probs.push_back(p);
    Tensor v = test::random_tensor({N, dv}, 40 + unsigned(img));
    s.v.emplace_back(v.f32(), v.f32() + N * dv);
  }
  auto per_tau = quant::search_log2(s, 4, {1, 2, 4});
  ASSERT_EQ(per_tau.size(), 3u);
  double agq = std::min({per_tau[0].error, per_tau[1].error, per_tau[2].error});
  double uniform = quant::prob_error(s, 4, {0, 1.f / 15.f, 0});
  EXPECT_LE(agq, per_tau[0].error);  // log2
  EXPECT_LE(agq, per_tau[1].error);  // log-sqrt(2)
  EXPECT_LT(agq, uniform);
  for (auto& c : per_tau) EXPECT_NEAR(quant::prob_error(s, 4, c), c.error, 1e-9 * (1 + c.error));
}
