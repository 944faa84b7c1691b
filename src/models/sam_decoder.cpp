#include "models/sam_decoder.h"

#include <cmath>
#include <numbers>

#include "core/error.h"
#include "kernels/elementwise.h"
#include "kernels/mha.h"

namespace vs::models {

using kernels::Epilogue;

namespace {

void relu(Tensor& t) {
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = std::max(t.f32()[i], 0.f);
}

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = a.clone();
  kernels::add_inplace(out.f32(), b.f32(), out.numel());
  return out;
}

// An MLP of Linear layers with ReLU between them (SAM's MLP class, sigmoid_output = False).
Tensor mlp_forward(const std::vector<std::unique_ptr<nn::Linear>>& layers, Tensor x) {
  for (size_t i = 0; i < layers.size(); ++i) {
    x = layers[i]->forward(x);
    if (i + 1 < layers.size()) relu(x);
  }
  return x;
}

std::vector<std::unique_ptr<nn::Linear>> load_mlp(nn::ParamReader& p, const std::string& prefix, int64_t in,
                                                  int64_t hidden, int64_t out, int64_t depth) {
  std::vector<std::unique_ptr<nn::Linear>> layers;
  for (int64_t i = 0; i < depth; ++i)
    layers.push_back(nn::load_linear(p, prefix + ".layers." + std::to_string(i), i + 1 == depth ? out : hidden,
                                     i == 0 ? in : hidden, true));
  return layers;
}

SamAttention load_attention(nn::ParamReader& p, const std::string& prefix, int64_t C, int64_t inner, int64_t heads) {
  check(inner % heads == 0, p.source() + ": " + prefix + ": width not divisible by heads");
  SamAttention a;
  a.q = nn::load_linear(p, prefix + ".q_proj", inner, C, true);
  a.k = nn::load_linear(p, prefix + ".k_proj", inner, C, true);
  a.v = nn::load_linear(p, prefix + ".v_proj", inner, C, true);
  a.out = nn::load_linear(p, prefix + ".out_proj", C, inner, true);
  a.heads = heads;
  a.core.load(p, prefix);
  return a;
}

UpConv2x2 load_upconv(nn::ParamReader& p, const std::string& prefix, int64_t in, int64_t out) {
  Tensor w = p.get(prefix + ".weight", {in, out, 2, 2}), b = p.get(prefix + ".bias", {out});
  Tensor lw({4 * out, in}), lb({4 * out});
  for (int64_t c = 0; c < in; ++c)
    for (int64_t o = 0; o < out; ++o)
      for (int64_t k = 0; k < 4; ++k) lw.f32()[(k * out + o) * in + c] = w.f32()[(c * out + o) * 4 + k];
  for (int64_t k = 0; k < 4; ++k) std::copy_n(b.f32(), out, lb.f32() + k * out);
  return {std::make_unique<nn::DenseLinear>(lw, lb), out};
}

}  // namespace

Tensor PromptEncoder::positional(float x, float y) const {
  const int64_t F = gaussian.dim(1);
  Tensor out({2 * F});
  const float cx = 2.f * x - 1.f, cy = 2.f * y - 1.f;
  for (int64_t f = 0; f < F; ++f) {
    const float v = 2.f * std::numbers::pi_v<float> * (cx * gaussian.f32()[f] + cy * gaussian.f32()[F + f]);
    out.f32()[f] = std::sin(v);
    out.f32()[F + f] = std::cos(v);
  }
  return out;
}

Tensor PromptEncoder::sparse(const SamPoints& p) const {
  const int64_t n = int64_t(p.xy.size()), C = embed_dim;
  Tensor out({n, C});
  for (int64_t i = 0; i < n; ++i) {
    float* row = out.f32() + i * C;
    const float label = p.labels[size_t(i)];
    if (label == -1.f) {
      std::copy_n(not_a_point.f32(), C, row);
    } else {
      const Tensor pe = positional((p.xy[size_t(i)][0] + 0.5f) / float(input_size), (p.xy[size_t(i)][1] + 0.5f) / float(input_size));
      std::copy_n(pe.f32(), C, row);
    }
    for (size_t k = 0; k < point_embeddings.size(); ++k)
      if (label == float(k)) kernels::add_inplace(row, point_embeddings[k].f32(), C);
  }
  return out;
}

Tensor PromptEncoder::dense_pe() const {
  Tensor out({grid * grid, embed_dim});
  for (int64_t i = 0; i < grid; ++i)
    for (int64_t j = 0; j < grid; ++j) {
      const Tensor pe = positional((float(j) + 0.5f) / float(grid), (float(i) + 0.5f) / float(grid));
      std::copy_n(pe.f32(), embed_dim, out.f32() + (i * grid + j) * embed_dim);
    }
  return out;
}

Tensor PromptEncoder::dense(const Tensor* mask) const {
  if (!mask) {
    Tensor out({grid * grid, embed_dim});
    for (int64_t i = 0; i < grid * grid; ++i) std::copy_n(no_mask.f32(), embed_dim, out.f32() + i * embed_dim);
    return out;
  }
  const int64_t S = 4 * grid;
  check(mask->numel() == S * S, "mask input must be " + std::to_string(S) + "x" + std::to_string(S));
  Tensor h = down0.forward(mask->reshape({1, S, S, 1}));
  down1.forward(h.f32(), h.f32(), h.numel() / down1.width());
  kernels::gelu(h.f32(), h.numel());
  h = down3.forward(h);
  down4.forward(h.f32(), h.f32(), h.numel() / down4.width());
  kernels::gelu(h.f32(), h.numel());
  return down6.forward(h).reshape({grid * grid, embed_dim});
}

void PromptEncoder::save(StateDict& out) const {
  const std::string P = "prompt_encoder.";
  out[P + "pe_layer.positional_encoding_gaussian_matrix"] = gaussian;
  for (size_t i = 0; i < point_embeddings.size(); ++i)
    out[P + "point_embeddings." + std::to_string(i) + ".weight"] = point_embeddings[i];
  out[P + "not_a_point_embed.weight"] = not_a_point;
  out[P + "no_mask_embed.weight"] = no_mask;
  down0.save(P + "mask_downscaling.0", out);
  down1.save(P + "mask_downscaling.1", out);
  down3.save(P + "mask_downscaling.3", out);
  down4.save(P + "mask_downscaling.4", out);
  down6.save(P + "mask_downscaling.6", out);
}

PromptEncoder load_prompt_encoder(const nlohmann::json& cfg, nn::ParamReader& p) {
  PromptEncoder e;
  const std::string P = "prompt_encoder.";
  e.embed_dim = cfg.at("embed_dim");
  e.grid = cfg.at("image_embedding_size");
  e.input_size = cfg.at("input_image_size");
  const int64_t C = e.embed_dim, mc = cfg.at("mask_in_chans");
  e.gaussian = p.get(P + "pe_layer.positional_encoding_gaussian_matrix", {2, C / 2});
  for (int i = 0; i < 4; ++i) e.point_embeddings.push_back(p.get(P + "point_embeddings." + std::to_string(i) + ".weight", {1, C}));
  e.not_a_point = p.get(P + "not_a_point_embed.weight", {1, C});
  e.no_mask = p.get(P + "no_mask_embed.weight", {1, C});
  e.down0 = nn::Conv2d::load(p, P + "mask_downscaling.0", {1, mc / 4, 2, 2, 0, 1}, true);
  e.down1 = nn::LayerNorm::load(p, P + "mask_downscaling.1", mc / 4, 1e-6f);
  e.down3 = nn::Conv2d::load(p, P + "mask_downscaling.3", {mc / 4, mc, 2, 2, 0, 1}, true);
  e.down4 = nn::LayerNorm::load(p, P + "mask_downscaling.4", mc, 1e-6f);
  e.down6 = nn::Conv2d::load(p, P + "mask_downscaling.6", {mc, C, 1, 1, 0, 1}, true);
  return e;
}

Tensor SamAttention::forward(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in) const {
  Tensor qp = q->forward(q_in), kp = k->forward(k_in), vp = v->forward(v_in);
  const int64_t Nq = qp.dim(0), Nk = kp.dim(0), I = qp.dim(1), d = I / heads;
  Tensor ctx = Tensor::empty({Nq, I});
  core.forward(qp.f32(), kp.f32(), vp.f32(), ctx.f32(), {1, Nq, Nk, heads, d, d, I, I, I, I}, 1.f / std::sqrt(float(d)));
  return out->forward(ctx);
}

Tensor UpConv2x2::forward(const Tensor& x, int64_t H, int64_t W, Epilogue ep) const {
  Tensor y = lin->forward(x, ep);  // [H*W, 4*out]
  Tensor out = Tensor::empty({4 * H * W, out_ch});
#pragma omp parallel for
  for (int64_t i = 0; i < H; ++i)
    for (int64_t j = 0; j < W; ++j)
      for (int64_t k = 0; k < 4; ++k) {
        const int64_t dy = k / 2, dx = k % 2;
        std::copy_n(y.f32() + (i * W + j) * 4 * out_ch + k * out_ch, out_ch,
                    out.f32() + ((2 * i + dy) * 2 * W + 2 * j + dx) * out_ch);
      }
  return out;
}

void UpConv2x2::save(const std::string& prefix, StateDict& out) const {
  StateDict tmp;
  lin->save("l", tmp);
  const Tensor &lw = tmp.at("l.weight"), &lb = tmp.at("l.bias");
  const int64_t in = lin->in_features();
  Tensor w({in, out_ch, 2, 2});
  for (int64_t c = 0; c < in; ++c)
    for (int64_t o = 0; o < out_ch; ++o)
      for (int64_t k = 0; k < 4; ++k) w.f32()[(c * out_ch + o) * 4 + k] = lw.f32()[(k * out_ch + o) * in + c];
  out[prefix + ".weight"] = w;
  out[prefix + ".bias"] = Tensor(Shape{out_ch});
  std::copy_n(lb.f32(), out_ch, out[prefix + ".bias"].f32());
}

MaskDecoderOutput MaskDecoder::forward(const Tensor& image, const Tensor& pe, const Tensor& sparse,
                                       const Tensor& dense, int64_t grid) const {
  const int64_t C = dim, M = num_mask_tokens, T = 1 + M + sparse.dim(0);
  Tensor tokens({T, C});
  std::copy_n(iou_token.f32(), C, tokens.f32());
  std::copy_n(mask_tokens.f32(), M * C, tokens.f32() + C);
  std::copy_n(sparse.f32(), sparse.numel(), tokens.f32() + (1 + M) * C);

  Tensor queries = tokens.clone(), keys = add(image, dense);
  for (auto& L : layers) {
    if (L.skip_first_layer_pe) {
      queries = L.self_attn.forward(queries, queries, queries);
    } else {
      Tensor q = add(queries, tokens);
      queries = add(queries, L.self_attn.forward(q, q, queries));
    }
    L.norm1.forward(queries.f32(), queries.f32(), T);
    Tensor q = add(queries, tokens), k = add(keys, pe);
    queries = add(queries, L.t2i.forward(q, k, keys));
    L.norm2.forward(queries.f32(), queries.f32(), T);
    Tensor h = L.lin1->forward(queries);
    relu(h);
    queries = add(queries, L.lin2->forward(h));
    L.norm3.forward(queries.f32(), queries.f32(), T);
    q = add(queries, tokens);
    keys = add(keys, L.i2t.forward(k, q, queries));
    L.norm4.forward(keys.f32(), keys.f32(), keys.dim(0));
  }
  Tensor q = add(queries, tokens), k = add(keys, pe);
  queries = add(queries, final_attn.forward(q, k, keys));
  norm_final.forward(queries.f32(), queries.f32(), T);

  Tensor up = up0.forward(keys, grid, grid, Epilogue::none);
  up1.forward(up.f32(), up.f32(), up.dim(0));
  kernels::gelu(up.f32(), up.numel());
  up = up3.forward(up, 2 * grid, 2 * grid, Epilogue::gelu);  // [(4g)^2, c]

  const int64_t c = up.dim(1), P = up.dim(0);
  Tensor hyper_in({M, c});
  for (int64_t m = 0; m < M; ++m) {
    Tensor tok({1, C});
    std::copy_n(queries.f32() + (1 + m) * C, C, tok.f32());
    Tensor h = mlp_forward(hyper[size_t(m)], tok);
    std::copy_n(h.f32(), c, hyper_in.f32() + m * c);
  }
  Tensor per_pixel = Tensor::empty({P, M});
  kernels::linear_f32(up.f32(), hyper_in.f32(), nullptr, per_pixel.f32(), P, M, c);
  MaskDecoderOutput r;
  r.low_res = Tensor::empty({M, 4 * grid, 4 * grid});
  for (int64_t m = 0; m < M; ++m)
    for (int64_t i = 0; i < P; ++i) r.low_res.f32()[m * P + i] = per_pixel.f32()[i * M + m];
  Tensor iou_tok({1, C});
  std::copy_n(queries.f32(), C, iou_tok.f32());
  Tensor iou = mlp_forward(iou_head, iou_tok);
  r.iou.assign(iou.f32(), iou.f32() + M);
  return r;
}

std::vector<std::pair<std::string, std::unique_ptr<nn::Linear>*>> MaskDecoder::linears() {
  std::vector<std::pair<std::string, std::unique_ptr<nn::Linear>*>> out;
  auto attn = [&](const std::string& s, SamAttention& a) {
    out.push_back({s + ".q_proj", &a.q});
    out.push_back({s + ".k_proj", &a.k});
    out.push_back({s + ".v_proj", &a.v});
    out.push_back({s + ".out_proj", &a.out});
  };
  const std::string P = "mask_decoder.";
  for (size_t i = 0; i < layers.size(); ++i) {
    const std::string s = P + "transformer.layers." + std::to_string(i);
    attn(s + ".self_attn", layers[i].self_attn);
    attn(s + ".cross_attn_token_to_image", layers[i].t2i);
    out.push_back({s + ".mlp.lin1", &layers[i].lin1});
    out.push_back({s + ".mlp.lin2", &layers[i].lin2});
    attn(s + ".cross_attn_image_to_token", layers[i].i2t);
  }
  attn(P + "transformer.final_attn_token_to_image", final_attn);
  for (size_t m = 0; m < hyper.size(); ++m)
    for (size_t j = 0; j < hyper[m].size(); ++j)
      out.push_back({P + "output_hypernetworks_mlps." + std::to_string(m) + ".layers." + std::to_string(j), &hyper[m][j]});
  for (size_t j = 0; j < iou_head.size(); ++j)
    out.push_back({P + "iou_prediction_head.layers." + std::to_string(j), &iou_head[j]});
  return out;
}

std::vector<nn::MhaModule> MaskDecoder::attentions() {
  std::vector<nn::MhaModule> out;
  auto attn = [&](const std::string& s, SamAttention& a) { out.push_back({s, &a.core, &a.q, &a.k, 0}); };
  const std::string P = "mask_decoder.transformer.";
  for (size_t i = 0; i < layers.size(); ++i) {
    const std::string s = P + "layers." + std::to_string(i);
    attn(s + ".self_attn", layers[i].self_attn);
    attn(s + ".cross_attn_token_to_image", layers[i].t2i);
    attn(s + ".cross_attn_image_to_token", layers[i].i2t);
  }
  attn(P + "final_attn_token_to_image", final_attn);
  return out;
}

void MaskDecoder::save(StateDict& out) const {
  const std::string P = "mask_decoder.";
  out[P + "iou_token.weight"] = iou_token;
  out[P + "mask_tokens.weight"] = mask_tokens;
  for (size_t i = 0; i < layers.size(); ++i) {
    const std::string s = P + "transformer.layers." + std::to_string(i);
    layers[i].norm1.save(s + ".norm1", out);
    layers[i].norm2.save(s + ".norm2", out);
    layers[i].norm3.save(s + ".norm3", out);
    layers[i].norm4.save(s + ".norm4", out);
  }
  norm_final.save(P + "transformer.norm_final_attn", out);
  up0.save(P + "output_upscaling.0", out);
  up1.save(P + "output_upscaling.1", out);
  up3.save(P + "output_upscaling.3", out);
  for (auto& [name, l] : const_cast<MaskDecoder*>(this)->linears()) (*l)->save(name, out);
  for (auto& a : const_cast<MaskDecoder*>(this)->attentions()) a.core->save(a.name, out);
}

MaskDecoder load_mask_decoder(const nlohmann::json& cfg, nn::ParamReader& p) {
  MaskDecoder d;
  const std::string P = "mask_decoder.";
  const int64_t C = cfg.at("transformer_dim"), heads = cfg.at("num_heads"), depth = cfg.at("depth"),
                mlp = cfg.at("mlp_dim"), cross = C / cfg.at("attention_downsample_rate").get<int64_t>(),
                hid = cfg.at("iou_head_hidden_dim"), ih = cfg.at("iou_head_depth");
  const float eps = cfg.value("layer_norm_eps", 1e-5f);
  d.dim = C;
  d.num_mask_tokens = cfg.at("num_multimask_outputs").get<int64_t>() + 1;
  d.iou_token = p.get(P + "iou_token.weight", {1, C});
  d.mask_tokens = p.get(P + "mask_tokens.weight", {d.num_mask_tokens, C});
  for (int64_t i = 0; i < depth; ++i) {
    const std::string s = P + "transformer.layers." + std::to_string(i);
    TwoWayBlock b;
    b.self_attn = load_attention(p, s + ".self_attn", C, C, heads);
    b.t2i = load_attention(p, s + ".cross_attn_token_to_image", C, cross, heads);
    b.i2t = load_attention(p, s + ".cross_attn_image_to_token", C, cross, heads);
    b.norm1 = nn::LayerNorm::load(p, s + ".norm1", C, eps);
    b.norm2 = nn::LayerNorm::load(p, s + ".norm2", C, eps);
    b.norm3 = nn::LayerNorm::load(p, s + ".norm3", C, eps);
    b.norm4 = nn::LayerNorm::load(p, s + ".norm4", C, eps);
    b.lin1 = nn::load_linear(p, s + ".mlp.lin1", mlp, C, true);
    b.lin2 = nn::load_linear(p, s + ".mlp.lin2", C, mlp, true);
    b.skip_first_layer_pe = i == 0;
    d.layers.push_back(std::move(b));
  }
  d.final_attn = load_attention(p, P + "transformer.final_attn_token_to_image", C, cross, heads);
  d.norm_final = nn::LayerNorm::load(p, P + "transformer.norm_final_attn", C, eps);
  d.up0 = load_upconv(p, P + "output_upscaling.0", C, C / 4);
  d.up1 = nn::LayerNorm::load(p, P + "output_upscaling.1", C / 4, 1e-6f);
  d.up3 = load_upconv(p, P + "output_upscaling.3", C / 4, C / 8);
  for (int64_t m = 0; m < d.num_mask_tokens; ++m)
    d.hyper.push_back(load_mlp(p, P + "output_hypernetworks_mlps." + std::to_string(m), C, C, C / 8, 3));
  d.iou_head = load_mlp(p, P + "iou_prediction_head", C, hid, d.num_mask_tokens, ih);
  return d;
}

int select_mask(const std::vector<float>& iou, int64_t num_points) {
  int best = 0;
  float best_score = -INFINITY;
  for (size_t m = 0; m < iou.size(); ++m) {
    const float score = iou[m] + (m == 0 ? (float(num_points) - 2.5f) * 1000.f : 0.f);
    if (score > best_score) best_score = score, best = int(m);
  }
  return best;
}

}  // namespace vs::models
