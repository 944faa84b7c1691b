// --rotate (kernels/rotation.h, compress/quant/rotate.h): the fast rotation is the orthogonal
// matrix it claims to be, it spreads an outlier channel so per-token low-bit codes lose less,
// bad rotations in a file are refused, and a rotated quantised model saves, loads and runs the
// integer path bit-identically to the simulated one, close to the float model.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "compress/quant/ptq.h"
#include "compress/quant/rotate.h"
#include "core/error.h"
#include "io/preprocess.h"
#include "io/safetensors.h"
#include "kernels/quantize_act.h"
#include "models/load.h"
#include "nn/exec_mode.h"
#include "nn/quant_linear.h"
#include "test_util.h"

using namespace vs;

TEST(Rotation, FastTransformIsTheOrthogonalMatrixItClaims) {
  for (int64_t d : {1, 5, 8, 12, 48, 192, 768}) {
    const kernels::Rotation rot = quant::random_rotation(d, 7);
    EXPECT_EQ(rot.dim(), d);
    EXPECT_EQ(rot.p & (rot.p - 1), 0) << d;
    EXPECT_EQ(rot.r % 2, 1) << d;  // p takes every factor 2
    const Eigen::MatrixXd r = quant::rotation_matrix(rot);
    EXPECT_LT((r.transpose() * r - Eigen::MatrixXd::Identity(d, d)).cwiseAbs().maxCoeff(), 1e-5) << d;
    std::mt19937 rng{static_cast<unsigned>(d)};
    std::normal_distribution<float> nd(0.f, 1.f);
    std::vector<float> x(static_cast<size_t>(d)), y(static_cast<size_t>(d));
    for (auto& v : x) v = nd(rng);
    rot.apply(x.data(), y.data());
    // The scalar definition (mix, then radix-2 butterflies, then 1 / sqrt(p)): the vectorised
    // stages must give the same floats, bit for bit.
    std::vector<float> ref(static_cast<size_t>(d), 0.f);
    for (int64_t b2 = 0; b2 < rot.r; ++b2)
      for (int64_t b = 0; b < rot.r; ++b)
        for (int64_t a = 0; a < rot.p; ++a)
          ref[size_t(b2 * rot.p + a)] += rot.mix[size_t(b * rot.r + b2)] * (rot.signs[size_t(b * rot.p + a)] * x[size_t(b * rot.p + a)]);
    for (int64_t b = 0; b < rot.r; ++b)
      for (int64_t h = 1; h < rot.p; h *= 2)
        for (int64_t a0 = 0; a0 < rot.p; a0 += 2 * h)
          for (int64_t a = a0; a < a0 + h; ++a) {
            float& u = ref[size_t(b * rot.p + a)];
            float& w = ref[size_t(b * rot.p + a + h)];
            const float s0 = u, s1 = w;
            u = s0 + s1;
            w = s0 - s1;
          }
    for (auto& v : ref) v *= 1.f / std::sqrt(float(rot.p));
    for (int64_t j = 0; j < d; ++j) EXPECT_EQ(y[size_t(j)], ref[size_t(j)]) << d << " column " << j;
    for (int64_t j = 0; j < d; ++j) {
      double want = 0;
      for (int64_t i = 0; i < d; ++i) want += double(x[size_t(i)]) * r(i, j);
      EXPECT_NEAR(y[size_t(j)], want, 1e-4) << d << " column " << j;
    }
  }
  // Different layers, different rotations; the same name, the same rotation.
  EXPECT_NE(quant::rotation_seed("blocks.0.attn.qkv"), quant::rotation_seed("blocks.0.mlp.fc1"));
  EXPECT_EQ(quant::random_rotation(192, quant::rotation_seed("a")).signs,
            quant::random_rotation(192, quant::rotation_seed("a")).signs);
}

TEST(Rotation, SpreadsAnOutlierChannelSoFourBitTokensLoseLess) {
  const int64_t d = 192, rows = 64;
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> x(size_t(rows * d));
  for (int64_t t = 0; t < rows; ++t)
    for (int64_t c = 0; c < d; ++c) x[size_t(t * d + c)] = nd(rng) * (c == 17 ? 60.f : 1.f);  // one massive channel
  const kernels::Rotation rot = quant::random_rotation(d, 1);
  auto error = [&](bool rotate) {  // squared error of the 4-bit per-token codes, measured in x's basis
    std::vector<uint8_t> q(static_cast<size_t>(d));
    std::vector<float> xr(static_cast<size_t>(d));
    float scale;
    int32_t zero;
    double err = 0;
    const Eigen::MatrixXd r = quant::rotation_matrix(rot);
    for (int64_t t = 0; t < rows; ++t) {
      const float* row = x.data() + t * d;
      if (rotate) rot.apply(row, xr.data()); else std::copy(row, row + d, xr.begin());
      kernels::RowCodes rc{q.data(), 4, true, 1.f, 0, &scale, &zero};
      kernels::encode_row(xr.data(), d, 0, rc);
      for (int64_t j = 0; j < d; ++j) xr[size_t(j)] = (float(q[size_t(j)]) - float(zero)) * scale;  // dequantised
      for (int64_t i = 0; i < d; ++i) {  // back to x's basis: (x R) R^T
        double v = 0;
        for (int64_t j = 0; j < d; ++j) v += double(xr[size_t(j)]) * (rotate ? r(i, j) : double(i == j));
        err += (v - row[i]) * (v - row[i]);
      }
    }
    return err;
  };
  const double plain = error(false), rotated = error(true);
  std::printf("[ rotation ] 4-bit per-token error, one outlier channel: %.4g plain, %.4g rotated\n", plain, rotated);
  EXPECT_LT(rotated * 4, plain);
}

TEST(Rotation, RotatedModelSavesLoadsAndRunsIntegerEqualToSimulated) {
  test::TempDir tmp;
  models::ViT m = models::load_model(test::write_tiny_model(tmp));
  models::ViT ref = models::load_model(test::write_tiny_model(tmp, "ref"));
  auto images = test::random_images(tmp, 6);
  quant::PtqSettings s;
  s.wbits = s.abits = 8;
  s.rotate = true;
  s.gptq = true;
  s.dynamic_for = {"attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"};
  auto section = quant::quantize_model(m, s, images, false);
  for (auto& [name, l] : m.linears()) {
    auto* q = dynamic_cast<const nn::QuantLinear*>(l->get());
    ASSERT_NE(q, nullptr) << name;
    const bool block = name.rfind("blocks.", 0) == 0;
    EXPECT_EQ(q->input_rotation() != nullptr, block) << name;  // edges are static here: not rotated
    EXPECT_EQ(section["layers"][name].value("rotated", false), block) << name;
    if (block) EXPECT_EQ(q->kind().back(), 'r') << name;
  }
  models::save_model(tmp / "q", m, {{"quantization", section}});
  models::ViT back = models::load_model(tmp / "q");
  Tensor x = load_batch(images, m.cfg.pre);
  Tensor y = m.forward(x), f = ref.forward(x);
  EXPECT_EQ(test::max_abs_diff(y, back.forward(x)), 0.f);
  nn::set_exec_mode(nn::ExecMode::simulated);
  EXPECT_EQ(test::max_abs_diff(y, back.forward(x)), 0.f);
  nn::set_exec_mode(nn::ExecMode::integer);
  float fmax = 0;
  for (int64_t i = 0; i < f.numel(); ++i) fmax = std::max(fmax, std::fabs(f.f32()[i]));
  EXPECT_LT(test::max_abs_diff(y, f), 0.1f * fmax);  // W8A8: close to the float model
  // A saved rotation whose mix is not orthogonal is refused at load, naming the file and the layer.
  const std::string file = (tmp / "q") + "/model.safetensors";
  auto sd = load_safetensors(file).tensors;
  sd["blocks.0.attn.qkv.rot_mix"].f32()[0] *= 2.f;
  save_safetensors(file, sd);
  try {
    models::load_model(tmp / "q");
    ADD_FAILURE() << "a non-orthogonal rotation was loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.safetensors: 'blocks.0.attn.qkv': rotation mix is not orthogonal"),
              std::string::npos) << e.what();
  }
  auto rot = std::make_shared<kernels::Rotation>(quant::random_rotation(12, 0));
  rot->mix[0] *= 2.f;
  EXPECT_THROW(kernels::check_rotation(*rot, "x"), Error);
  rot->mix[0] /= 2.f;
  rot->signs[0] = 0.5f;
  EXPECT_THROW(kernels::check_rotation(*rot, "x"), Error);
}
