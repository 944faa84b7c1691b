// QuantLinear: the integer path (oneDNN u8 x s8 GEMM) computes exactly what the simulated path
// (float math on the same codes) computes, bit for bit, for static and dynamic activations, every bit width,
// with and without the fused GELU; and quantised models save, load and run through the CLI.
#include <gtest/gtest.h>

#include <array>
#include <filesystem>
#include <random>
#include <fstream>
#include <nlohmann/json.hpp>

#include "kernels/gemm_int8.h"
#include "core/error.h"
#include "kernels/pack.h"
#include "models/load.h"
#include "kernels/attention.h"
#include "nn/block.h"
#include "nn/quant_linear.h"
#include "test_util.h"

using namespace vs;

namespace {

struct ModeGuard {  // restores the process-wide mode
  ~ModeGuard() { nn::set_exec_mode(nn::ExecMode::integer); }
};

Tensor run(const nn::Linear& l, const Tensor& x, nn::ExecMode mode, nn::Epilogue ep) {
  nn::set_exec_mode(mode);
  return l.forward(x, ep);
}

}  // namespace

class QuantLinearBits : public ::testing::TestWithParam<std::tuple<int, int, bool>> {};

TEST_P(QuantLinearBits, IntegerEqualsSimulated) {
  ModeGuard guard;
  auto [wbits, abits, dynamic] = GetParam();
  wbits = std::min(wbits, kernels::int8_exact_weight_bits(abits));
  const int64_t M = 37, K = 200, N = 48;  // odd sizes on purpose
  Tensor w = test::random_tensor({N, K}, 1, 0.05f), b = test::random_tensor({N}, 2);
  Tensor x = test::random_tensor({M, K}, 3, 2.f);
  for (int64_t i = 0; i < x.numel(); i += 7) x.f32()[i] += 1.5f;  // asymmetric, so zero points matter
  nn::DenseLinear dense(w, b);
  Tensor ws({N});
  const int lim = (1 << (wbits - 1)) - 1;
  for (int64_t n = 0; n < N; ++n) {
    float mx = 0;
    for (int64_t k = 0; k < K; ++k) mx = std::max(mx, std::abs(w.f32()[n * K + k]));
    ws.f32()[n] = mx / float(lim);
  }
  nn::ActQuant act{abits, dynamic, 10.f / float((1 << abits) - 1), (1 << abits) / 2};
  auto q = nn::QuantLinear::from_dense(dense, ws, wbits, act);
  for (auto ep : {nn::Epilogue::none, nn::Epilogue::gelu}) {
    Tensor yi = run(*q, x, nn::ExecMode::integer, ep), ys = run(*q, x, nn::ExecMode::simulated, ep);
    // Same codes, same int32 accumulators (oneDNN vs exact fp32), same epilogue: bit-identical.
    EXPECT_EQ(test::max_abs_diff(yi, ys), 0.f)
        << "W" << wbits << "A" << abits << (dynamic ? " dynamic" : "") << " ep " << int(ep);
  }
  // And the quantised layer approximates the float one (looser at low bits).
  Tensor yf = dense.forward(x), yq = run(*q, x, nn::ExecMode::integer, nn::Epilogue::none);
  double err = 0, ref = 0;
  for (int64_t i = 0; i < yf.numel(); ++i) {
    err += std::pow(yf.f32()[i] - yq.f32()[i], 2);
    ref += std::pow(yf.f32()[i], 2);
  }
  double rel = std::sqrt(err / ref), bound = std::min(wbits, abits) >= 8 ? 0.05 : std::min(wbits, abits) >= 6 ? 0.15 : 0.8;
  EXPECT_LT(rel, bound) << "relative error W" << wbits << "A" << abits;
}

INSTANTIATE_TEST_SUITE_P(QuantLinear, QuantLinearBits,
                         ::testing::Combine(::testing::Values(8, 6, 4, 2), ::testing::Values(8, 7, 4),
                                            ::testing::Bool()));

// oneDNN's integer GEMM against plain integer arithmetic at the shapes it takes different paths
// for: a batch-1 GEMM of a few hundred rows is split by rows over the threads (gemm_int8.cpp),
// with and without packed weights and a zero point; smaller and batched ones are not.
TEST(IntGemm, OneDnnEqualsPlainIntegersWhenSplitByRows) {
  if (!kernels::cpu_has_vnni()) GTEST_SKIP() << "no VNNI: oneDNN's u8s8 path may saturate, the float-exact engine is used";
  std::mt19937 rng(5);
  for (auto [batch, M, N, K] : {std::array<int64_t, 4>{1, 197, 96, 64}, {1, 198, 40, 48}, {1, 20, 32, 16}, {3, 70, 24, 32}}) {
    std::vector<uint8_t> a(size_t(batch * M * K));
    std::vector<int8_t> b(size_t(batch * N * K));
    for (auto& v : a) v = uint8_t(rng() % 256);
    for (auto& v : b) v = int8_t(int(rng() % 255) - 127);
    for (int32_t zero : {0, 77})
      for (bool packed : {false, true}) {
        if (packed && batch != 1) continue;
        kernels::WeightCache cache;
        std::vector<int32_t> c(size_t(batch * M * N), -1);
        kernels::gemm_u8s8_s32({batch, M, N, K, true}, a.data(), zero, b.data(), c.data(), kernels::IntEngine::onednn,
                               packed ? &cache : nullptr);
        int64_t wrong = 0;
        for (int64_t p = 0; p < batch; ++p)
          for (int64_t m = 0; m < M; ++m)
            for (int64_t n = 0; n < N; ++n) {
              int32_t ref = 0;
              for (int64_t k = 0; k < K; ++k)
                ref += (int32_t(a[size_t((p * M + m) * K + k)]) - zero) * b[size_t((p * N + n) * K + k)];
              wrong += c[size_t((p * M + m) * N + n)] != ref;
            }
        EXPECT_EQ(wrong, 0) << batch << "x" << M << "x" << N << "x" << K << " zero " << zero << " packed " << packed;
      }
  }
}

TEST(QuantLinear, TallInputsRunInRowTilesWithTheSameResult) {
  // 1500 rows x 1024 outputs is past the tiling threshold (tiles of 256 rows): the tiled call must
  // equal the same rows run in small untiled calls, static and dynamic, with the GELU epilogue.
  ModeGuard guard;
  const int64_t M = 1500, K = 24, N = 1024, chunk = 100;
  Tensor w = test::random_tensor({N, K}, 11, 0.1f), b = test::random_tensor({N}, 12);
  Tensor x = test::random_tensor({M, K}, 13, 2.f);
  nn::DenseLinear dense(w, b);
  Tensor ws({N});
  for (int64_t n = 0; n < N; ++n) ws.f32()[n] = 0.3f / 127.f;
  for (bool dynamic : {false, true}) {
    auto q = nn::QuantLinear::from_dense(dense, ws, 8, {8, dynamic, 8.f / 255.f, 128});
    Tensor whole({M, N}), parts({M, N});
    q->forward(x.f32(), whole.f32(), M, nn::Epilogue::gelu);
    for (int64_t m0 = 0; m0 < M; m0 += chunk)
      q->forward(x.f32() + m0 * K, parts.f32() + m0 * N, std::min(chunk, M - m0), nn::Epilogue::gelu);
    EXPECT_EQ(test::max_abs_diff(whole, parts), 0.f) << (dynamic ? "dynamic" : "static");
    EXPECT_GT(test::max_abs_diff(whole, Tensor({M, N})), 0.f);  // not all zeros
  }
}

TEST(QuantLinear, FusedBlockEqualsLayerByLayer) {
  // Block::forward hands a quantised qkv / fc1 its input as codes straight from the LayerNorm,
  // and fc1's GELU output to fc2 as codes (per token here); the attention core computes
  // softmax and probability codes in one row pass. All of it must equal the layers run one by one
  // on floats, bit for bit, in both execution modes.
  ModeGuard guard;
  const int64_t B = 2, T = 13, C = 64, H = 4, hidden = 96, rows = B * T;
  auto quant = [&](int64_t out, int64_t in, unsigned seed, nn::ActQuant act) {
    nn::DenseLinear d(test::random_tensor({out, in}, seed, 0.1f), test::random_tensor({out}, seed + 1, 0.1f));
    Tensor ws({out});
    for (int64_t n = 0; n < out; ++n) ws.f32()[n] = 0.4f / 127.f;
    return nn::QuantLinear::from_dense(d, ws, 8, act);
  };
  nn::Block blk;
  blk.norm1 = {test::random_tensor({C}, 21, 0.2f), test::random_tensor({C}, 22, 0.1f), 1e-6f};
  blk.norm2 = {test::random_tensor({C}, 23, 0.2f), test::random_tensor({C}, 24, 0.1f), 1e-6f};
  for (Tensor* w : {&blk.norm1.weight, &blk.norm2.weight})
    for (int64_t c = 0; c < C; ++c) w->f32()[c] += 1.f;
  blk.attn.heads.qk_dim.assign(H, C / H);
  blk.attn.heads.v_dim.assign(H, C / H);
  blk.attn.scale = 0.25f;
  blk.attn.qkv = quant(3 * C, C, 31, {8, false, 8.f / 255.f, 120});
  blk.attn.proj = quant(C, C, 33, {8, false, 2.f / 255.f, 128});
  blk.attn.quant.q_bits = blk.attn.quant.k_bits = blk.attn.quant.v_bits = blk.attn.quant.p_bits = 8;
  blk.attn.quant.q_scale = blk.attn.quant.k_scale = blk.attn.quant.v_scale = 1.f / 64.f;
  blk.attn.quant.q_zero = blk.attn.quant.k_zero = 128;
  blk.attn.quant.p_scale = 1.f / 255.f;
  blk.mlp.fc1 = quant(hidden, C, 35, {8, false, 8.f / 255.f, 128});
  blk.mlp.fc2 = quant(C, hidden, 37, {8, true});
  ASSERT_NE(nn::taking_codes(*blk.attn.qkv, rows), nullptr);
  ASSERT_NE(nn::taking_codes(*blk.mlp.fc2, rows), nullptr);
  const Tensor x0 = test::random_tensor({rows, C}, 41, 1.f);
  for (auto mode : {nn::ExecMode::integer, nn::ExecMode::simulated}) {
    nn::set_exec_mode(mode);
    Tensor fused = x0.clone();
    blk.forward(fused.f32(), B, T);
    // Layer by layer, on floats.
    Tensor x = x0.clone(), h({rows, C}), qkv({rows, 3 * C}), ctx({rows, C}), y({rows, C}), hid({rows, hidden});
    blk.norm1.forward(x.f32(), h.f32(), rows);
    blk.attn.qkv->forward(h.f32(), qkv.f32(), rows, nn::Epilogue::none);
    kernels::attention_quant(qkv.f32(), ctx.f32(), B, T, blk.attn.heads, blk.attn.scale, blk.attn.quant,
                             nn::int_engine());
    blk.attn.proj->forward(ctx.f32(), y.f32(), rows, nn::Epilogue::none);
    for (int64_t i = 0; i < x.numel(); ++i) x.f32()[i] += y.f32()[i];
    blk.norm2.forward(x.f32(), h.f32(), rows);
    blk.mlp.fc1->forward(h.f32(), hid.f32(), rows, nn::Epilogue::gelu);
    blk.mlp.fc2->forward(hid.f32(), y.f32(), rows, nn::Epilogue::none);
    for (int64_t i = 0; i < x.numel(); ++i) x.f32()[i] += y.f32()[i];
    EXPECT_EQ(test::max_abs_diff(fused, x), 0.f) << (mode == nn::ExecMode::integer ? "integer" : "simulated");
    EXPECT_GT(test::max_abs_diff(fused, x0), 0.1f);  // the block did something
  }
}

TEST(QuantLinear, SaveLoadRoundTripEveryWidthBitPacked) {
  ModeGuard guard;
  for (int wbits : {8, 7, 6, 5, 4, 3, 2}) {
    Tensor w = test::random_tensor({16, 33}, 5, 0.1f), b = test::random_tensor({16}, 6);
    nn::DenseLinear dense(w, b);
    Tensor ws({16});
    for (int64_t n = 0; n < 16; ++n) ws.f32()[n] = 0.3f / float((1 << (wbits - 1)) - 1);
    const int abits = wbits == 8 ? 7 : 8;  // (W8A8 needs VNNI; W8A7 runs exactly everywhere)
    auto q = nn::QuantLinear::from_dense(dense, ws, wbits, {abits, false, 0.05f, 100});
    StateDict sd;
    q->save("l", sd);
    // Below 8 bits the codes are bit-packed: a 5-bit row of 33 codes takes ceil(165 / 8) = 21 bytes.
    EXPECT_EQ(sd.at("l.qweight").dtype(), wbits < 8 ? DType::u8 : DType::i8);
    EXPECT_EQ(sd.at("l.qweight").dim(1), (33 * wbits + 7) / 8);
    EXPECT_EQ(q->bytes(), 16 * ((33 * wbits + 7) / 8) + 4 * (16 + 16) + 8);  // codes, scales, bias, static input
    auto load_back = [&](const StateDict& d) {
      nn::ParamReader p(d, "mem");
      p.linear_specs["l"] = {wbits, abits, false};
      auto l = nn::load_linear(p, "l", 16, 33, true);
      p.check_all_used();
      return l;
    };
    Tensor x = test::random_tensor({5, 33}, 7);
    auto back = load_back(sd);
    EXPECT_EQ(test::max_abs_diff(q->forward(x), back->forward(x)), 0.f) << wbits;
    EXPECT_EQ(back->kind(), q->kind());
    // Files of earlier versions (5-7 bits one code per byte, 2-3 bits as 4-bit nibbles) still load.
    if (wbits < 8 && wbits != 4) {
      StateDict old = sd;
      Tensor codes({16, 33}, DType::i8);
      const int64_t kp = sd.at("l.qweight").dim(1);
      for (int64_t n = 0; n < 16; ++n)
        quant::unpack_bits(sd.at("l.qweight").data<uint8_t>() + n * kp, 33, wbits, codes.data<int8_t>() + n * 33);
      if (wbits > 4) {
        old["l.qweight"] = codes.clone();
      } else {
        Tensor nib({16, 17}, DType::u8);
        for (int64_t n = 0; n < 16; ++n) {
          auto row = quant::pack_bits(codes.data<int8_t>() + n * 33, 33, 4);
          std::copy(row.begin(), row.end(), nib.data<uint8_t>() + n * 17);
        }
        old["l.qweight"] = nib;
      }
      EXPECT_EQ(test::max_abs_diff(q->forward(x), load_back(old)->forward(x)), 0.f) << wbits;
    }
    // A packed tensor of the wrong size, or codes outside the width, are refused with the tensor's name.
    StateDict bad = sd;
    bad["l.qweight"] = Tensor({16, (33 * wbits + 7) / 8 + 1}, DType::u8);
    EXPECT_THROW(
        try { load_back(bad); } catch (const Error& e) {
          EXPECT_NE(std::string(e.what()).find("mem: tensor 'l.qweight' should be"), std::string::npos) << e.what();
          throw;
        },
        Error);
    if (wbits < 8) {
      StateDict wide = sd;
      Tensor codes_min({16, (33 * wbits + 7) / 8}, DType::u8);
      std::fill(codes_min.data<uint8_t>(), codes_min.data<uint8_t>() + codes_min.numel(), uint8_t(0));
      codes_min.data<uint8_t>()[0] = uint8_t(1u << (wbits - 1));  // first code -2^(bits-1): outside +-(2^(bits-1) - 1)
      wide["l.qweight"] = codes_min;
      EXPECT_THROW(
          try { load_back(wide); } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find("outside the symmetric"), std::string::npos) << e.what();
            throw;
          },
          Error);
    }
  }
}

TEST(QuantizeCli, StaticAndDynamicModelsSaveLoadRun) {
  if (!test::have_shared()) GTEST_SKIP() << "../shared ViT-Ti checkpoint or imagenet-sample absent";
  test::TempDir tmp;
  const std::string d = test::imagenet_dir(), m = test::vit_tiny_dir();
  std::ofstream(tmp / "calib8.txt") << "n01560419_bulbul.JPEG\nn01580077_jay.JPEG\nn01669191_box_turtle.JPEG\n";
  int st = 0;
  std::string out = test::run_output(test::cli() + " quantize " + m + " --wbits 8 --abits 8 --calib " + d +
                                         " --split " + (tmp / "calib8.txt") + " --out " + (tmp / "q8"),
                                     &st);
  ASSERT_EQ(st, 0) << out;
  // Determinism: the same inputs give a byte-identical model.
  out = test::run_output(test::cli() + " quantize " + m + " --wbits 8 --abits 8 --calib " + d + " --split " +
                             (tmp / "calib8.txt") + " --out " + (tmp / "q8b"),
                         &st);
  ASSERT_EQ(st, 0) << out;
  EXPECT_EQ(test::run("cmp -s " + (tmp / "q8/model.safetensors") + " " + (tmp / "q8b/model.safetensors")), 0);
  // --dynamic-for: static everywhere but the named layers, which get per-token scales.
  out = test::run_output(test::cli() + " quantize " + m + " --wbits 8 --abits 8 --dynamic-for mlp.fc2 --calib " + d +
                             " --split " + (tmp / "calib8.txt") + " --out " + (tmp / "q8mix"),
                         &st);
  ASSERT_EQ(st, 0) << out;
  auto mix = nlohmann::json::parse(std::ifstream(tmp / "q8mix/config.json"))["quantization"]["layers"];
  EXPECT_TRUE(mix["blocks.3.mlp.fc2"]["dynamic"].get<bool>());
  EXPECT_FALSE(mix["blocks.3.mlp.fc1"]["dynamic"].get<bool>());
  out = test::run_output(test::cli() + " info " + (tmp / "q8mix"), &st);
  EXPECT_EQ(st, 0) << out;
  EXPECT_NE(out.find("a8d"), std::string::npos) << out;
  out = test::run_output(test::cli() + " quantize " + m + " --wbits 4 --abits 8 --dynamic --out " + (tmp / "q4d"), &st);
  ASSERT_EQ(st, 0) << out;
  // Sizes: W8 (7-bit codes without VNNI, still one byte each) <= 30% of FP32, W4 <= 17%.
  auto fp32 = std::filesystem::file_size(m + "/model.safetensors");
  EXPECT_LE(std::filesystem::file_size(tmp / "q8/model.safetensors"), fp32 * 30 / 100);
  EXPECT_LE(std::filesystem::file_size(tmp / "q4d/model.safetensors"), fp32 * 17 / 100);
  auto cfg = nlohmann::json::parse(std::ifstream(tmp / "q8/config.json"));
  EXPECT_EQ(cfg["quantization"]["layers"].size(), 50u);
  EXPECT_EQ(cfg["quantization"]["layers"]["head"]["abits"], 8);
  out = test::run_output(test::cli() + " info " + (tmp / "q4d"), &st);
  EXPECT_EQ(st, 0);
  EXPECT_NE(out.find("w4a8d"), std::string::npos) << out;
  // The quantised model classifies the tench as a tench, in both execution modes.
  for (std::string flag : {"", " --simulate"}) {
    out = test::run_output(test::cli() + " classify " + (tmp / "q8") + " " + d + "/n01440764_tench.JPEG --top 1" + flag, &st);
    EXPECT_EQ(st, 0);
    EXPECT_NE(out.find(" 0  class 0"), std::string::npos) << out;
  }
  // Re-quantising a quantised model is refused; a corrupt quantisation section is one clear line.
  out = test::run_output(test::cli() + " quantize " + (tmp / "q8") + " --dynamic --out " + (tmp / "again"), &st);
  EXPECT_NE(st, 0);
  EXPECT_NE(out.find("already quantised"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(tmp / "again"));
  cfg["quantization"]["layers"]["head"]["wbits"] = 12;
  std::ofstream(tmp / "q8/config.json") << cfg.dump();
  out = test::run_output(test::cli() + " info " + (tmp / "q8"), &st);
  EXPECT_NE(st, 0);
  EXPECT_NE(out.find("bit widths outside 2..8"), std::string::npos) << out;
}
