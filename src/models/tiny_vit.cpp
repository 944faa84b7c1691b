#include "models/tiny_vit.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "kernels/elementwise.h"
#include "kernels/mha.h"

namespace vs::models {

using kernels::ConvGeometry;
using kernels::Epilogue;

TinyViTConfig TinyViTConfig::from_json(const nlohmann::json& j, const std::string& source) {
  TinyViTConfig c;
  try {
    c.img_size = j.at("img_size");
    c.in_chans = j.value("in_chans", int64_t(3));
    c.out_chans = j.at("out_chans");
    c.embed_dims = j.at("embed_dims").get<std::vector<int64_t>>();
    c.depths = j.at("depths").get<std::vector<int64_t>>();
    c.num_heads = j.at("num_heads").get<std::vector<int64_t>>();
    c.window_sizes = j.at("window_sizes").get<std::vector<int64_t>>();
    c.downsample_strides = j.at("downsample_strides").get<std::vector<int64_t>>();
    c.mlp_ratio = j.value("mlp_ratio", int64_t(4));
    c.mbconv_expand_ratio = j.value("mbconv_expand_ratio", int64_t(4));
    c.local_conv_size = j.value("local_conv_size", int64_t(3));
    c.norm_eps = j.value("norm_eps", 1e-5f);
    c.neck_eps = j.value("neck_eps", 1e-6f);
  } catch (const nlohmann::json::exception& e) {
    throw Error(source + ": malformed \"image_encoder\" section (" + e.what() + ")");
  }
  const size_t S = c.embed_dims.size();
  check(S >= 2 && c.depths.size() == S && c.num_heads.size() == S && c.window_sizes.size() == S &&
            c.downsample_strides.size() == S - 1,
        source + ": image_encoder lists (embed_dims, depths, num_heads, window_sizes, downsample_strides) disagree in length");
  check(c.img_size > 0 && c.img_size % 4 == 0, source + ": image_encoder img_size must be a positive multiple of 4");
  for (size_t s = 0; s < S; ++s) {
    check(c.embed_dims[s] > 0 && c.depths[s] >= 0 && c.window_sizes[s] > 0, source + ": image_encoder sizes must be positive");
    if (s > 0) check(c.num_heads[s] > 0 && c.embed_dims[s] % c.num_heads[s] == 0,
                     source + ": image_encoder embed_dims must be divisible by num_heads");
  }
  for (auto st : c.downsample_strides) check(st == 1 || st == 2, source + ": downsample_strides must be 1 or 2");
  return c;
}

nlohmann::json TinyViTConfig::to_json() const {
  return {{"type", "tiny_vit"}, {"img_size", img_size}, {"in_chans", in_chans}, {"out_chans", out_chans},
          {"embed_dims", embed_dims}, {"depths", depths}, {"num_heads", num_heads},
          {"window_sizes", window_sizes}, {"downsample_strides", downsample_strides},
          {"mlp_ratio", mlp_ratio}, {"mbconv_expand_ratio", mbconv_expand_ratio},
          {"local_conv_size", local_conv_size}, {"norm_eps", norm_eps}, {"neck_eps", neck_eps}};
}

int64_t TinyViTConfig::out_size() const {
  int64_t r = stem_size();
  for (auto st : downsample_strides) r = (r + 2 - 3) / st + 1;  // 3x3, pad 1
  return r;
}

Tensor expand_attention_biases(const Tensor& biases, int64_t w) {
  const int64_t H = biases.dim(0), N = w * w;
  Tensor t({H, N, N});
  for (int64_t h = 0; h < H; ++h)
    for (int64_t i = 0; i < N; ++i)
      for (int64_t j = 0; j < N; ++j) {
        const int64_t dy = std::abs(i / w - j / w), dx = std::abs(i % w - j % w);
        t.f32()[(h * N + i) * N + j] = biases.f32()[h * N + dy * w + dx];
      }
  return t;
}

namespace {

ConvGeometry depthwise(int64_t C, int64_t k, int64_t stride) { return {C, C, k, stride, k / 2, C}; }

// Visits every row of every w x w window of an H x W token grid (padded to multiples of w):
// fn(token index of the row's first token, its index in window order, tokens in the row that
// are not padding).
template <class Fn>
void for_each_window_row(int64_t H, int64_t W, int64_t w, Fn fn) {
  const int64_t nh = (H + w - 1) / w, nw = (W + w - 1) / w;
#pragma omp parallel for collapse(2)
  for (int64_t by = 0; by < nh; ++by)
    for (int64_t bx = 0; bx < nw; ++bx)
      for (int64_t r = 0; r < w && by * w + r < H; ++r)
        fn((by * w + r) * W + bx * w, (by * nw + bx) * w * w + r * w, std::min(w, W - bx * w));
}

// Zero-padded window partition: tokens [H*W, C] -> [nWin, w*w, C].
Tensor window_partition(const Tensor& x, int64_t H, int64_t W, int64_t w) {
  const int64_t C = x.dim(1);
  Tensor out({((H + w - 1) / w) * ((W + w - 1) / w), w * w, C});
  for_each_window_row(H, W, w, [&](int64_t tok, int64_t win, int64_t n) {
    std::memcpy(out.f32() + win * C, x.f32() + tok * C, size_t(n * C) * sizeof(float));
  });
  return out;
}

// Inverse of window_partition, dropping the padding, added into x (the residual connection).
void window_reverse_add(const Tensor& win, Tensor& x, int64_t H, int64_t W, int64_t w) {
  const int64_t C = x.dim(1);
  for_each_window_row(H, W, w, [&](int64_t tok, int64_t wi, int64_t n) {
    kernels::add_inplace(x.f32() + tok * C, win.f32() + wi * C, n * C);
  });
}

}  // namespace

void TinyViTBlock::forward(Tensor& x, int64_t H, int64_t W) const {
  const int64_t C = dim, w = window, N = w * w, d = C / heads;
  Tensor win = window_partition(x, H, W, w);
  const int64_t rows = win.dim(0) * N;
  attn_norm.forward(win.f32(), win.f32(), rows);
  Tensor qkv_out = Tensor::empty({rows, 3 * C});
  qkv->forward(win.f32(), qkv_out.f32(), rows);
  Tensor ctx = Tensor::empty({rows, C});
  const float* q = qkv_out.f32();
  core.forward(q, q + C, q + 2 * C, ctx.f32(), {win.dim(0), N, N, heads, d, d, 3 * C, 3 * C, 3 * C, C},
               1.f / std::sqrt(float(d)), bias_table.f32());
  proj->forward(ctx.f32(), win.f32(), rows);
  window_reverse_add(win, x, H, W, w);

  Tensor local = local_conv.forward(x.reshape({1, H, W, C}));
  x = local.reshape({H * W, C});
  Tensor h = Tensor::empty({H * W, C});
  mlp_norm.forward(x.f32(), h.f32(), H * W);
  Tensor hidden = Tensor::empty({H * W, fc1->out_features()});
  fc1->forward(h.f32(), hidden.f32(), H * W, Epilogue::gelu);
  fc2->forward(hidden.f32(), h.f32(), H * W);
  kernels::add_inplace(x.f32(), h.f32(), H * W * C);
}

TinyViT TinyViT::load(const TinyViTConfig& cfg, nn::ParamReader& p, const std::string& pre) {
  TinyViT m;
  m.cfg = cfg;
  const auto& D = cfg.embed_dims;
  const int64_t half = D[0] / 2;
  m.stem0 = nn::Conv2d::load(p, pre + "patch_embed.seq.0.c", {cfg.in_chans, half, 3, 2, 1, 1}, true);
  m.stem1 = nn::Conv2d::load(p, pre + "patch_embed.seq.2.c", {half, D[0], 3, 2, 1, 1}, true);
  const int64_t hid = D[0] * cfg.mbconv_expand_ratio, k = cfg.local_conv_size;
  for (int64_t b = 0; b < cfg.depths[0]; ++b) {
    const std::string s = pre + "layers.0.blocks." + std::to_string(b);
    m.mbconv.push_back({nn::load_linear(p, s + ".conv1.c", hid, D[0], true),
                        nn::load_linear(p, s + ".conv3.c", D[0], hid, true),
                        nn::Conv2d::load(p, s + ".conv2.c", depthwise(hid, 3, 1), true)});
  }
  for (size_t st = 0; st + 1 < D.size(); ++st) {
    const std::string s = pre + "layers." + std::to_string(st) + ".downsample";
    const int64_t out = D[st + 1];
    m.downsample.push_back({nn::load_linear(p, s + ".conv1.c", out, D[st], true),
                            nn::load_linear(p, s + ".conv3.c", out, out, true),
                            nn::Conv2d::load(p, s + ".conv2.c", depthwise(out, 3, cfg.downsample_strides[st]), true)});
  }
  for (size_t st = 1; st < D.size(); ++st) {
    std::vector<TinyViTBlock> blocks;
    const int64_t C = D[st], H = cfg.num_heads[st], w = cfg.window_sizes[st];
    for (int64_t b = 0; b < cfg.depths[st]; ++b) {
      const std::string s = pre + "layers." + std::to_string(st) + ".blocks." + std::to_string(b);
      TinyViTBlock blk;
      blk.heads = H;
      blk.window = w;
      blk.dim = C;
      blk.attn_norm = nn::LayerNorm::load(p, s + ".attn.norm", C, cfg.norm_eps);
      blk.qkv = nn::load_linear(p, s + ".attn.qkv", 3 * C, C, true);
      blk.proj = nn::load_linear(p, s + ".attn.proj", C, C, true);
      blk.attention_biases = p.get(s + ".attn.attention_biases", {H, w * w});
      blk.bias_table = expand_attention_biases(blk.attention_biases, w);
      blk.local_conv = nn::Conv2d::load(p, s + ".local_conv.c", depthwise(C, k, 1), true);
      blk.core.load(p, s + ".attn");
      blk.mlp_norm = nn::LayerNorm::load(p, s + ".mlp.norm", C, cfg.norm_eps);
      blk.fc1 = nn::load_linear(p, s + ".mlp.fc1", C * cfg.mlp_ratio, C, true);
      blk.fc2 = nn::load_linear(p, s + ".mlp.fc2", C, C * cfg.mlp_ratio, true);
      blocks.push_back(std::move(blk));
    }
    m.stages.push_back(std::move(blocks));
  }
  m.neck0 = nn::load_linear(p, pre + "neck.0", cfg.out_chans, D.back(), false);
  m.neck1 = nn::LayerNorm::load(p, pre + "neck.1", cfg.out_chans, cfg.neck_eps);
  m.neck2 = nn::Conv2d::load(p, pre + "neck.2", {cfg.out_chans, cfg.out_chans, 3, 1, 1, 1}, false);
  m.neck3 = nn::LayerNorm::load(p, pre + "neck.3", cfg.out_chans, cfg.neck_eps);
  return m;
}

std::vector<std::pair<std::string, std::unique_ptr<nn::Linear>*>> TinyViT::linears(const std::string& pre) {
  std::vector<std::pair<std::string, std::unique_ptr<nn::Linear>*>> out;
  for (size_t b = 0; b < mbconv.size(); ++b) {
    const std::string s = pre + "layers.0.blocks." + std::to_string(b);
    out.push_back({s + ".conv1.c", &mbconv[b].conv1});
    out.push_back({s + ".conv3.c", &mbconv[b].conv3});
  }
  for (size_t st = 0; st < downsample.size(); ++st) {
    const std::string s = pre + "layers." + std::to_string(st) + ".downsample";
    out.push_back({s + ".conv1.c", &downsample[st].conv1});
    out.push_back({s + ".conv3.c", &downsample[st].conv3});
  }
  for (size_t st = 0; st < stages.size(); ++st)
    for (size_t b = 0; b < stages[st].size(); ++b) {
      const std::string s = pre + "layers." + std::to_string(st + 1) + ".blocks." + std::to_string(b);
      auto& blk = stages[st][b];
      out.push_back({s + ".attn.qkv", &blk.qkv});
      out.push_back({s + ".attn.proj", &blk.proj});
      out.push_back({s + ".mlp.fc1", &blk.fc1});
      out.push_back({s + ".mlp.fc2", &blk.fc2});
    }
  out.push_back({pre + "neck.0", &neck0});
  return out;
}

std::vector<nn::MhaModule> TinyViT::attentions(const std::string& pre) {
  std::vector<nn::MhaModule> out;
  for (size_t st = 0; st < stages.size(); ++st)
    for (size_t b = 0; b < stages[st].size(); ++b) {
      auto& blk = stages[st][b];
      out.push_back({pre + "layers." + std::to_string(st + 1) + ".blocks." + std::to_string(b) + ".attn", &blk.core,
                     &blk.qkv, &blk.qkv, blk.dim});
    }
  return out;
}

void TinyViT::save(const std::string& pre, StateDict& out) const {
  stem0.save(pre + "patch_embed.seq.0.c", out);
  stem1.save(pre + "patch_embed.seq.2.c", out);
  for (size_t b = 0; b < mbconv.size(); ++b)
    mbconv[b].conv2.save(pre + "layers.0.blocks." + std::to_string(b) + ".conv2.c", out);
  for (size_t st = 0; st < downsample.size(); ++st)
    downsample[st].conv2.save(pre + "layers." + std::to_string(st) + ".downsample.conv2.c", out);
  for (size_t st = 0; st < stages.size(); ++st)
    for (size_t b = 0; b < stages[st].size(); ++b) {
      const std::string s = pre + "layers." + std::to_string(st + 1) + ".blocks." + std::to_string(b);
      auto& blk = stages[st][b];
      blk.attn_norm.save(s + ".attn.norm", out);
      out[s + ".attn.attention_biases"] = blk.attention_biases;
      blk.local_conv.save(s + ".local_conv.c", out);
      blk.core.save(s + ".attn", out);
      blk.mlp_norm.save(s + ".mlp.norm", out);
    }
  neck1.save(pre + "neck.1", out);
  neck2.save(pre + "neck.2", out);
  neck3.save(pre + "neck.3", out);
  for (auto& [name, l] : const_cast<TinyViT*>(this)->linears(pre)) (*l)->save(name, out);
}

Tensor TinyViT::forward(const Tensor& image) const {
  const int64_t S = cfg.img_size;
  check(image.ndim() == 3 && image.dim(0) == cfg.in_chans && image.dim(1) == S && image.dim(2) == S,
        "TinyViT: input " + shape_str(image.shape()) + " is not [" + std::to_string(cfg.in_chans) + ", " +
            std::to_string(S) + ", " + std::to_string(S) + "]");
  Tensor x({1, S, S, cfg.in_chans});  // CHW -> HWC
#pragma omp parallel for
  for (int64_t i = 0; i < S * S; ++i)
    for (int64_t c = 0; c < cfg.in_chans; ++c) x.f32()[i * cfg.in_chans + c] = image.f32()[c * S * S + i];
  x = stem1.forward(stem0.forward(x, Epilogue::gelu));
  int64_t R = x.dim(1), C = x.dim(3);
  for (auto& b : mbconv) {  // x = GELU(x + conv3(GELU(dw(GELU(conv1(x))))))
    Tensor h = b.conv1->forward(x, Epilogue::gelu);
    h = b.conv3->forward(b.conv2.forward(h, Epilogue::gelu));
    kernels::add_inplace(h.f32(), x.f32(), h.numel());
    kernels::gelu(h.f32(), h.numel());
    x = h;
  }
  for (size_t st = 0; st < downsample.size(); ++st) {
    const PatchMerging& pm = downsample[st];
    Tensor h = pm.conv2.forward(pm.conv1->forward(x.reshape({1, R, R, C}), Epilogue::gelu), Epilogue::gelu);
    R = h.dim(1);
    x = pm.conv3->forward(h);
    C = x.dim(3);
    x = x.reshape({R * R, C});
    for (auto& blk : stages[st]) blk.forward(x, R, R);
  }
  Tensor h = neck0->forward(x);
  neck1.forward(h.f32(), h.f32(), R * R);
  h = neck2.forward(h.reshape({1, R, R, cfg.out_chans}));
  neck3.forward(h.f32(), h.f32(), R * R);
  const int64_t O = cfg.out_chans;
  Tensor out = Tensor::empty({O, R, R});  // HWC -> CHW
#pragma omp parallel for
  for (int64_t c = 0; c < O; ++c)
    for (int64_t i = 0; i < R * R; ++i) out.f32()[c * R * R + i] = h.f32()[i * O + c];
  return out;
}

}  // namespace vs::models
