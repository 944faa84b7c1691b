#include <filesystem>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/sam_quantize.h"
#include "compress/quant/ptq.h"
#include "core/error.h"
#include "io/dataset.h"
#include "kernels/gemm_int8.h"
#include "models/load.h"
#include "models/sam.h"

namespace vs::cli {

// ", attention q/k/v 8-bit, probabilities 8-bit" (what the section says of block 0).
static std::string describe_attention(const nlohmann::json& section) {
  const auto& at = section["attention"];
  if (at.empty()) return "";
  const auto& a = at.begin().value();
  std::string out;
  if (a["q_bits"].get<int>() < 16) out += fmt::format(", attention q/k {}-bit", a["q_bits"].get<int>());
  if (a["p_bits"].get<int>() < 16)
    out += fmt::format(", v {}-bit, probabilities {}-bit", a["v_bits"].get<int>(), a["p_bits"].get<int>());
  return out;
}

void add_quantize(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "quantize",
      "Post-training quantisation with integer execution: every Linear layer (weights per output\n"
      "channel, symmetric; inputs u8 per tensor, calibrated on --calib, or per token) and, in static\n"
      "mode, the attention products q.k^T and P.v (q, k, v and the softmax probabilities per\n"
      "tensor). Writes a model folder that eval / classify / bench / info load directly.\n"
      "patch_embed and head use --edge-bits (8). Any point can stay float: --keep-float LAYER,\n"
      "--attn-bits 16, --prob-bits 16.\n"
      "A SAM model folder (import-sam) is quantised the same way, encoder and decoder (convolutions\n"
      "stay float), calibrated on --calib DIR (img/NAME.jpg + gt/NAME.png) --split FILE with each\n"
      "instance's box and click prompts; --big and --prob-quantizer agq give PTQ4SAM.");
  struct Args : ModelArgs {
    int wbits = 8, abits = 8, edge_bits = 8, batch = 16, attn_bits = -1, prob_bits = -1;
    bool dynamic = false, big = false, sqb = false;
    std::string method = "static", probs = "uniform", calib, split, out, wobs = "mse", aobs = "minmax";
    double percentile = 99.99;
    std::vector<std::string> keep_float, dynamic_for;
  };
  auto a = std::make_shared<Args>();
  add_model_args(cmd, *a);
  cmd->add_option("--wbits", a->wbits, "weight bits (2..8)")->check(CLI::Range(2, 8));
  cmd->add_option("--abits", a->abits, "activation bits (2..8)")->check(CLI::Range(2, 8));
  cmd->add_option("--edge-bits", a->edge_bits, "bits of patch_embed and head (2..8, 16 = float)")
      ->check(CLI::Range(2, 8) | CLI::IsMember({16}));
  cmd->add_option("--attn-bits", a->attn_bits,
                  "bits of the attention operands q, k, v (2..8, 16 = float; default --abits)")
      ->check(CLI::Range(2, 8) | CLI::IsMember({16}));
  cmd->add_option("--prob-bits", a->prob_bits,
                  "bits of the softmax probabilities (2..8, 16 = float; default --abits)")
      ->check(CLI::Range(2, 8) | CLI::IsMember({16}));
  cmd->add_option("--prob-quantizer", a->probs,
                  "quantizer of the softmax probabilities: uniform | log2 (base 2) | logsqrt2 (base sqrt 2)\n"
                  "| agq (PTQ4SAM's adaptive granularity: base 2^(1/tau), tau in {1,2,4} per module);\n"
                  "log2 scales and tau are searched to minimise ||Q(A)V - AV|| on calibration images")
      ->check(CLI::IsMember({"uniform", "log2", "logsqrt2", "agq"}));
  cmd->add_flag("--sq-b", a->sqb,
                "SQ-b (MPTQ-ViT): SmoothQuant with a bias term on the inputs of attn.qkv and mlp.fc1,\n"
                "folded into the LayerNorms (float function unchanged); alpha searched per layer");
  cmd->add_flag("--big", a->big,
                "BIG (PTQ4SAM): where the keys of an attention module are bimodal, flip the sign of the\n"
                "minority key channels and their query channels (q.k unchanged), then calibrate");
  cmd->add_option("--method", a->method,
                  "static: activation ranges calibrated on --calib (default); dynamic: per-token\n"
                  "activation scales computed at run time, no calibration, attention left float")
      ->check(CLI::IsMember({"static", "dynamic"}));
  cmd->add_flag("--dynamic", a->dynamic, "same as --method dynamic");
  cmd->add_option("--weight-observer", a->wobs, "minmax | percentile | mse (per output channel)")
      ->check(CLI::IsMember({"minmax", "percentile", "mse"}));
  cmd->add_option("--act-observer", a->aobs, "minmax | percentile | mse (per tensor)")
      ->check(CLI::IsMember({"minmax", "percentile", "mse"}));
  cmd->add_option("--percentile", a->percentile, "for the percentile observer")->check(CLI::Range(50.0, 100.0));
  cmd->add_option("--keep-float", a->keep_float, "Linear layers to leave in float, e.g. head");
  cmd->add_option("--dynamic-for", a->dynamic_for,
                  "layer-name suffixes that get per-token activation scales in static mode, e.g. mlp.fc2");
  cmd->add_option("--calib", a->calib, "calibration image folder (ImageNet-style; for SAM: img/ and gt/ as eval-seg reads)");
  cmd->add_option("--split", a->split, "file listing the calibration images (e.g. calib.txt)");
  cmd->add_option("--calib-batch", a->batch, "calibration batch size")->check(CLI::Range(1, 1024));
  cmd->add_option("--out", a->out, "output model folder")->required();
  cmd->callback([a] {
    a->dynamic = a->dynamic || a->method == "dynamic";
    quant::PtqSettings s;
    s.wbits = a->wbits;
    s.abits = a->abits;
    s.edge_bits = a->edge_bits;
    s.qk_bits = a->attn_bits < 0 ? a->abits : a->attn_bits;
    s.prob_bits = a->prob_bits < 0 ? a->abits : a->prob_bits;
    s.prob_quantizer = quant::parse_prob_quantizer(a->probs);
    s.big = a->big;
    s.smoothquant = a->sqb;
    s.dynamic = a->dynamic;
    s.weight_observer = quant::parse_observer(a->wobs);
    s.act_observer = quant::parse_observer(a->aobs);
    s.percentile = a->percentile;
    s.keep_float = a->keep_float;
    s.dynamic_for = a->dynamic_for;
    s.batch = a->batch;
    if (models::SamModel::is_sam_folder(a->path)) return quantize_sam_folder(*a, s, a->calib, a->split, a->out);
    auto m = open_model(*a);
    std::vector<std::string> calib;
    if (!a->dynamic) {
      check(!a->calib.empty(), "static quantisation needs --calib DIR (and usually --split calib.txt), or use --dynamic");
      calib = list_images(a->calib, a->split);
    }
    if (!kernels::cpu_has_vnni() && (a->abits == 8 || a->edge_bits == 8) && (a->wbits == 8 || a->edge_bits == 8))
      fmt::print(stderr, "note: this CPU has no VNNI; layers with 8-bit activations get 7-bit weight codes so "
                         "the int8 GEMM is exact (see `vitshrink info` for the bits of every layer)\n");
    int64_t before = m.param_bytes();
    auto section = quant::quantize_model(m, s, calib);
    models::save_model(a->out, m, {{"quantization", section}});
    fmt::print("quantized {} -> {}: W{}A{}{} ({} layers), {} -> {} of parameters\n", a->path, a->out,
               a->wbits, a->abits, a->dynamic ? " dynamic" : "", section["layers"].size(),
               human_bytes(before), human_bytes(m.param_bytes()));
    if (s.smoothquant) {
      int on = 0;
      for (auto& [name, r] : section["sq_b"].items()) on += r["alpha"].is_number();
      fmt::print("SQ-b: smoothed {} of {} layers (alpha per layer in config.json)\n", on, section["sq_b"].size());
    }
    if (s.big) {
      int fired = 0;
      double before = 0, after = 0;
      for (auto& [name, r] : section["big"].items())
        if (r["flipped_channels"].get<int>() > 0) {
          ++fired;
          before += r["key_mse_before"].get<double>();
          after += r["key_mse_after"].get<double>();
        }
      fmt::print("BIG: keys bimodal (flipped) in {} of {} attention modules", fired, section["big"].size());
      if (fired) fmt::print("; key quantisation MSE there {:.3g} -> {:.3g} ({:.1f}x lower)", before, after, before / after);
      fmt::print("\n");
    }
    if (s.prob_quantizer != quant::ProbQuantizer::uniform && !a->dynamic) {
      fmt::print("probability quantizer {} ({}-bit), tau per attention module:", quant::prob_quantizer_name(s.prob_quantizer),
                 s.prob_bits);
      for (auto& [name, at] : section["attention"].items()) fmt::print(" {}", at["p_tau"].get<int>());
      fmt::print("\n");
    }
    fmt::print("integer points: inputs and weights of every Linear ({}-bit patch_embed/head){}; float: {}\n",
               a->edge_bits, describe_attention(section), fmt::join(section["float_points"].get<std::vector<std::string>>(), ", "));
  });
}

}  // namespace vs::cli
