#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <nlohmann/json.hpp>
#include <fmt/ranges.h>

#include "cli/commands.h"
#include "cli/common.h"
#include "models/sam.h"
#include "nn/lowrank_linear.h"

namespace vs::cli {

// A SAM model folder (import-sam): its three parts, parameter counts and every Linear layer.
static void print_sam_info(const std::string& path) {
  models::SamModel m = models::SamModel::load(path);
  int64_t enc = 0, pe = 0, dec = 0;
  for (auto& [name, t] : m.state_dict())
    (name.rfind("image_encoder.", 0) == 0 ? enc : name.rfind("prompt_encoder.", 0) == 0 ? pe : dec) += t.numel();
  const auto& c = m.encoder.cfg;
  fmt::print("model          {}\n", path);
  fmt::print("architecture   sam: TinyViT image encoder (img {}, dims [{}], depths [{}], windows [{}]) -> [{}, {}, {}]\n",
             c.img_size, fmt::join(c.embed_dims, ", "), fmt::join(c.depths, ", "),
             fmt::join(std::vector<int64_t>(c.window_sizes.begin() + 1, c.window_sizes.end()), ", "), c.out_chans,
             c.out_size(), c.out_size());
  fmt::print("               prompt encoder + mask decoder ({} two-way layers, {} mask tokens)\n",
             m.mask_decoder.layers.size(), m.mask_decoder.num_mask_tokens);
  fmt::print("parameters     {} ({:.2f} M): image encoder {:.2f} M, prompt encoder {:.3f} M, mask decoder {:.2f} M\n",
             enc + pe + dec, double(enc + pe + dec) / 1e6, double(enc) / 1e6, double(pe) / 1e6, double(dec) / 1e6);
  if (m.config.contains("quantization")) {  // written by `vitshrink quantize`
    const auto& q = m.config["quantization"];
    int big = 0;
    if (q["big"].is_object())
      for (auto& [name, r] : q["big"].items()) big += r["flipped_channels"].get<int>() > 0;
    std::vector<std::string> attn;
    for (auto& a : m.attentions())
      attn.push_back(a.core->quant.any() ? fmt::format("q/k {} p {}{}", a.core->quant.q_bits, a.core->quant.p_bits,
                                                       a.core->quant.p_tau ? fmt::format(" log2 tau {}", a.core->quant.p_tau) : "")
                                         : "float");
    fmt::print("quantization   {} W{}A{}, calibrated on {} images; BIG: {}; attention: {}\n", q.value("method", "?"),
               q["requested"].value("wbits", 0), q["requested"].value("abits", 0), q.value("calibration_images", 0),
               q["big"].is_object() ? fmt::format("flipped in {} of {} modules", big, q["big"].size()) : std::string("off"),
               fmt::join(attn, ", "));
  }
  fmt::print("\n{:<64} {:<8} {:>6} {:>6} {:>10} {:>12}\n", "layer", "kind", "in", "out", "params", "bytes");
  for (auto& [name, layer] : m.linears()) {
    const nn::Linear& l = **layer;
    fmt::print("{:<64} {:<8} {:>6} {:>6} {:>10} {:>12}\n", name, l.kind(), l.in_features(), l.out_features(),
               l.num_params(), l.bytes());
  }
}

// What `quantize --reconstruct` recorded in config.json (nothing for other models).
static void print_reconstruction(const std::string& path) {
  const auto file = std::filesystem::path(path) / "config.json";
  if (!std::filesystem::is_regular_file(file)) return;
  const auto cfg = nlohmann::json::parse(std::ifstream(file), nullptr, false);
  if (cfg.is_discarded() || !cfg.contains("reconstruction")) return;
  const auto& r = cfg["reconstruction"];
  fmt::print("\nblock reconstruction ({}): {} steps x {} images per block, {} calibration images\n",
             r["method"].get<std::string>(), r["settings"]["iters"].get<int64_t>(), r["settings"]["batch"].get<int64_t>(),
             r["calibration_images"].get<int64_t>());
  for (auto& b : r["blocks"])
    fmt::print("  {:<10} output MSE {:.4g} -> {:.4g}\n", b["block"].get<std::string>(),
               b["output_mse_before"].get<double>(), b["output_mse_after"].get<double>());
}

void add_info(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Architecture, parameters, bytes, FLOPs and every layer");
  auto args = std::make_shared<ModelArgs>();
  add_model_args(cmd, *args);
  cmd->callback([args] {
    const ModelArgs& a = *args;
    if (models::SamModel::is_sam_folder(a.path)) return print_sam_info(a.path);
    auto m = open_model(a);
    auto& c = m.cfg;
    fmt::print("model        {}\n", a.path);
    fmt::print("architecture {} (img {}, patch {}, embed {}, depth {}, heads {}, classes {}{})\n",
               c.arch, c.img_size, c.patch_size, c.embed_dim, c.depth, c.num_heads, c.num_classes,
               c.distilled ? ", distilled" : "");
    fmt::print("parameters   {} ({:.2f} M)\n", m.num_params(), double(m.num_params()) / 1e6);
    fmt::print("size         {} ({} bytes)\n", human_bytes(m.param_bytes()), m.param_bytes());
    fmt::print("compute      {:.3f} GMACs per image ({:.3f} GFLOPs)\n", double(m.macs_per_image()) / 1e9,
               2.0 * double(m.macs_per_image()) / 1e9);
    if (!c.head_layouts.empty()) {  // pruned or cut as circuits: the shapes each block was left with
      fmt::print("head widths  {}\n", c.pruning_record.dump());
      for (size_t i = 0; i < m.blocks.size(); ++i)
        fmt::print("  block {:>2}   q/k per head [{}]  v per head [{}]  mlp hidden {}\n", i,
                   fmt::join(c.head_layouts[i].qk_dim, ", "), fmt::join(c.head_layouts[i].v_dim, ", "),
                   m.blocks[i].mlp.fc1->out_features());
    }
    fmt::print("preprocess   resize {} ({}), crop_pct {}, mean [{}], std [{}]\n", c.pre.input_size,
               c.pre.interpolation, c.pre.crop_pct, fmt::join(c.pre.mean, ", "), fmt::join(c.pre.std, ", "));
    fmt::print("\n{:<26} {:<8} {:>6} {:>6} {:>10} {:>12}\n", "layer", "kind", "in", "out", "params", "bytes");
    for (auto& [name, layer] : m.linears()) {
      const nn::Linear& l = **layer;
      fmt::print("{:<26} {:<8} {:>6} {:>6} {:>10} {:>12}\n", name, l.kind(), l.in_features(),
                 l.out_features(), l.num_params(), l.bytes());
    }
    bool any_attn = false;
    for (auto& b : m.blocks) any_attn = any_attn || b.attn.quant.any();
    if (any_attn) {
      auto bits = [](int b) { return b < 16 ? std::to_string(b) : std::string("float"); };
      fmt::print("\n{:<26} {:>6} {:>6} {:>6} {:>6}\n", "attention (bits)", "q", "k", "v", "probs");
      for (size_t i = 0; i < m.blocks.size(); ++i) {
        const auto& q = m.blocks[i].attn.quant;
        fmt::print("{:<26} {:>6} {:>6} {:>6} {:>6}\n", "blocks." + std::to_string(i) + ".attn", bits(q.q_bits),
                   bits(q.k_bits), bits(q.v_bits), bits(q.p_bits));
      }
    }
    print_reconstruction(a.path);
    bool header = false;  // low-rank layers: listed above as their two factors X.down, X.up
    for (auto& [name, layer] : m.linears(false))
      if (auto* lr = dynamic_cast<const nn::LowRankLinear*>(layer->get())) {
        if (!header) fmt::print("\n{:<26} {:>6} {:>10} {:>14}\n", "low-rank layer", "rank", "min(in,out)", "params kept");
        header = true;
        fmt::print("{:<26} {:>6} {:>10} {:>13.1f}%\n", name, lr->rank(), std::min(lr->in_features(), lr->out_features()),
                   100.0 * double(lr->num_params()) / double(lr->in_features() * lr->out_features() + lr->out_features()));
      }
  });
}

}  // namespace vs::cli
