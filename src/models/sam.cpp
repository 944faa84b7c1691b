#include "models/sam.h"

#include <cmath>
#include <filesystem>

#include "core/error.h"
#include "io/file.h"
#include "io/preprocess.h"
#include "io/safetensors.h"
#include "models/load.h"

namespace vs::models {
namespace fs = std::filesystem;

bool SamModel::is_sam_folder(const std::string& dir) {
  const fs::path cfg = fs::path(dir) / "config.json";
  if (!fs::is_directory(dir) || !fs::exists(cfg)) return false;
  try {
    return nlohmann::json::parse(read_text(cfg.string())).value("architecture", "") == "sam";
  } catch (const nlohmann::json::exception&) {
    return false;
  }
}

SamModel SamModel::load(const std::string& dir) {
  const std::string cfg_path = (fs::path(dir) / "config.json").string();
  const std::string weights = (fs::path(dir) / "model.safetensors").string();
  check(fs::is_directory(dir), dir + ": not a model folder");
  check(fs::exists(cfg_path) && fs::exists(weights), dir + ": needs config.json and model.safetensors");
  SamModel m;
  try {
    m.config = nlohmann::json::parse(read_text(cfg_path));
  } catch (const nlohmann::json::parse_error&) {
    throw Error(cfg_path + ": not valid JSON");
  }
  check(m.config.value("architecture", "") == "sam", cfg_path + ": not a SAM model (\"architecture\" is not \"sam\")");
  StateDict sd = load_safetensors(weights).tensors;
  nn::ParamReader p(sd, weights);
  QuantSpecs specs = read_quant_specs(m.config, cfg_path);  // a quantised model (vitshrink quantize)
  p.linear_specs = specs.layers;
  p.attn_specs = specs.attention;
  try {
    m.encoder = TinyViT::load(TinyViTConfig::from_json(m.config.at("image_encoder"), cfg_path), p, "image_encoder.");
    m.prompt_encoder = load_prompt_encoder(m.config.at("prompt_encoder"), p);
    m.mask_decoder = load_mask_decoder(m.config.at("mask_decoder"), p);
    auto& pre = m.config.at("preprocess");
    m.pixel_mean = pre.at("pixel_mean").get<std::array<float, 3>>();
    m.pixel_std = pre.at("pixel_std").get<std::array<float, 3>>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(cfg_path + ": malformed SAM config (" + e.what() + ")");
  }
  p.check_all_used();
  check(m.encoder.cfg.out_size() == m.prompt_encoder.grid && m.encoder.cfg.out_chans == m.prompt_encoder.embed_dim &&
            m.prompt_encoder.embed_dim == m.mask_decoder.dim,
        cfg_path + ": image encoder output does not match the prompt encoder / mask decoder");
  m.dense_pe_ = m.prompt_encoder.dense_pe();
  return m;
}

StateDict SamModel::state_dict() const {
  StateDict sd;
  encoder.save("image_encoder.", sd);
  prompt_encoder.save(sd);
  mask_decoder.save(sd);
  return sd;
}

std::vector<std::pair<std::string, std::unique_ptr<nn::Linear>*>> SamModel::linears() {
  auto out = encoder.linears("image_encoder.");
  for (auto& l : mask_decoder.linears()) out.push_back(l);
  return out;
}

std::vector<nn::MhaModule> SamModel::attentions() {
  auto out = encoder.attentions("image_encoder.");
  for (auto& a : mask_decoder.attentions()) out.push_back(a);
  return out;
}

int64_t SamModel::num_params() const {
  int64_t n = 0;
  for (auto& [name, t] : state_dict()) n += t.numel();
  return n;
}

SamImageInput SamModel::preprocess(const Image& img) const {
  const int S = int(encoder.cfg.img_size);
  check(img.width > 0 && img.height > 0 && img.channels == 3, "SAM: expected an RGB image");
  SamImageInput in;
  in.orig_w = img.width;
  in.orig_h = img.height;
  const double scale = double(S) / std::max(img.width, img.height);  // ResizeLongestSide
  in.new_w = int(img.width * scale + 0.5);
  in.new_h = int(img.height * scale + 0.5);
  Image r = resize_pil(img, in.new_w, in.new_h, "bilinear");
  in.pixels = Tensor({3, S, S});  // zero = padding
  for (int y = 0; y < in.new_h; ++y)
    for (int x = 0; x < in.new_w; ++x)
      for (int c = 0; c < 3; ++c)
        in.pixels.f32()[(int64_t(c) * S + y) * S + x] = (float(r.row(y)[x * 3 + c]) - pixel_mean[size_t(c)]) / pixel_std[size_t(c)];
  return in;
}

Tensor SamModel::embed(const SamImageInput& in) const { return encoder.forward(in.pixels); }

SamPoints SamModel::to_model_points(const SamPrompt& p, const SamImageInput& in) const {
  // ResizeLongestSide.apply_coords: scale each axis by new / old size.
  const float sx = float(in.new_w) / float(in.orig_w), sy = float(in.new_h) / float(in.orig_h);
  SamPoints out;
  for (size_t i = 0; i < p.points.size(); ++i) {
    out.xy.push_back({p.points[i][0] * sx, p.points[i][1] * sy});
    out.labels.push_back(p.labels[i]);
  }
  if (p.box) {
    const auto& b = *p.box;
    out.xy.push_back({b[0] * sx, b[1] * sy});
    out.labels.push_back(2.f);
    out.xy.push_back({b[2] * sx, b[3] * sy});
    out.labels.push_back(3.f);
  } else {
    out.xy.push_back({0.f, 0.f});  // SamOnnxModel's padding point when there is no box
    out.labels.push_back(-1.f);
  }
  return out;
}

MaskDecoderOutput SamModel::decode(const Tensor& embedding, const SamPoints& pts, const Tensor* mask_input) const {
  const int64_t C = prompt_encoder.embed_dim, g = prompt_encoder.grid;
  check(embedding.numel() == C * g * g, "SAM: image embedding has the wrong size");
  Tensor img({g * g, C});  // CHW -> HWC
  for (int64_t c = 0; c < C; ++c)
    for (int64_t i = 0; i < g * g; ++i) img.f32()[i * C + c] = embedding.f32()[c * g * g + i];
  MaskDecoderOutput out = mask_decoder.forward(img, dense_pe_, prompt_encoder.sparse(pts),
                                               prompt_encoder.dense(mask_input), g);
  out.best = select_mask(out.iou, int64_t(pts.xy.size()));
  return out;
}

SamMask SamModel::segment(const Tensor& embedding, const SamImageInput& in, const SamPrompt& p) const {
  MaskDecoderOutput d = decode(embedding, to_model_points(p, in));
  const int64_t L = d.low_res.dim(1);
  Tensor low({L, L});
  std::copy_n(d.low_res.f32() + d.best * L * L, L * L, low.f32());
  return {postprocess_mask(low, int(encoder.cfg.img_size), in.new_w, in.new_h, in.orig_w, in.orig_h),
          d.iou[size_t(d.best)], d.best};
}

Tensor resize_bilinear(const float* src, int H, int W, int out_h, int out_w) {
  Tensor out = Tensor::empty({out_h, out_w});
  auto taps = [](int in, int out) {
    std::vector<std::pair<int, float>> t(static_cast<size_t>(out));
    const float scale = float(out) / float(in);
    for (int o = 0; o < out; ++o) {
      float x = std::max(0.f, (float(o) + 0.5f) / scale - 0.5f);
      int x0 = std::min(int(x), in - 1);
      t[size_t(o)] = {x0, x0 + 1 < in ? x - float(x0) : 0.f};
    }
    return t;
  };
  auto ty = taps(H, out_h), tx = taps(W, out_w);
#pragma omp parallel for
  for (int y = 0; y < out_h; ++y) {
    const auto [y0, fy] = ty[size_t(y)];
    const int y1 = std::min(y0 + 1, H - 1);
    for (int x = 0; x < out_w; ++x) {
      const auto [x0, fx] = tx[size_t(x)];
      const int x1 = std::min(x0 + 1, W - 1);
      const float top = src[y0 * W + x0] * (1 - fx) + src[y0 * W + x1] * fx;
      const float bot = src[y1 * W + x0] * (1 - fx) + src[y1 * W + x1] * fx;
      out.f32()[int64_t(y) * out_w + x] = top * (1 - fy) + bot * fy;
    }
  }
  return out;
}

Tensor postprocess_mask(const Tensor& low_res, int S, int new_w, int new_h, int orig_w, int orig_h) {
  const int L = int(low_res.dim(0));
  Tensor full = resize_bilinear(low_res.f32(), L, L, S, S);
  Tensor crop = Tensor::empty({new_h, new_w});
  for (int y = 0; y < new_h; ++y) std::copy_n(full.f32() + int64_t(y) * S, new_w, crop.f32() + int64_t(y) * new_w);
  return resize_bilinear(crop.f32(), new_h, new_w, orig_h, orig_w);
}

}  // namespace vs::models
