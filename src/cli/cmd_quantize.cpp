#include <filesystem>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/sam_quantize.h"
#include "compress/quant/ptq.h"
#include "compress/reconstruct/reconstruct.h"
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
    bool dynamic = false, big = false, sqb = false, repq = false, optm = false, reconstruct = false, gptq = false, rotate = false;
    double gptq_damping = 0.01;
    double avg_bits = 0;
    std::vector<int> mp_bits{4, 5, 6, 8};
    int mp_images = 64;
    int mp_check_images = 64;
    std::string mp_search = "greedy-isolated";
    bool mp_weights_only = false, mp_separate = false;
    compress::ReconstructSettings recon;
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
                  "| agq (PTQ4SAM's adaptive granularity: base 2^(1/tau), tau in {1,2,4} per module)\n"
                  "| auto (per module the lowest-error of uniform and agq's candidates; tau 0 = uniform);\n"
                  "log2 scales and tau are searched to minimise ||Q(A)V - AV|| on calibration images")
      ->check(CLI::IsMember({"uniform", "log2", "logsqrt2", "agq", "auto"}));
  cmd->add_flag("--sq-b", a->sqb,
                "SQ-b (MPTQ-ViT): SmoothQuant with a bias term on the inputs of attn.qkv and mlp.fc1,\n"
                "folded into the LayerNorms (float function unchanged); alpha searched per layer");
  cmd->add_flag("--big", a->big,
                "BIG (PTQ4SAM): where the keys of an attention module are bimodal, flip the sign of the\n"
                "minority key channels and their query channels (q.k unchanged), then calibrate");
  cmd->add_flag("--repq", a->repq,
                "RepQ-ViT baseline: per-channel quantisation scales of the LayerNorm outputs (inputs of\n"
                "attn.qkv and mlp.fc1) reparameterised into one per-tensor scale, folded into the\n"
                "LayerNorms and the next weights and biases (float function unchanged); not with --sq-b");
  cmd->add_flag("--opt-m", a->optm,
                "OPT-m (MPTQ-ViT): twin-uniform quantizer for the post-GELU mlp.fc2 inputs (a fine and a\n"
                "coarse region, scales s and 2^m s; integer execution as two GEMMs), m and s searched per\n"
                "layer on calibration data to minimise the layer's output error (uniform kept where better)");
  cmd->add_flag("--gptq", a->gptq,
                "GPTQ weight rounding: each Linear's weight columns are rounded one at a time (largest input\n"
                "energy first) and each column's rounding error is compensated on the columns not yet rounded,\n"
                "least squares on the Gram of the layer's calibration inputs (after BIG / SQ-b / RepQ; every\n"
                "token scaled to unit RMS, so that a few massive-activation tokens do not dominate); scales\n"
                "stay the weight observer's. Works in static and dynamic mode (needs --calib either way)");
  cmd->add_flag("--rotate", a->rotate,
                "QuaRot-style rotation of every Linear input quantised per token (--dynamic, --dynamic-for):\n"
                "the weights are stored as W R and each input row is quantised as x R, R a random orthogonal\n"
                "matrix (signs x (small orthogonal mix kron Hadamard), applied in O(d log d) per row at run time);\n"
                "outlier channels no longer set every token's range. Float function unchanged up to rounding");
  cmd->add_option("--gptq-damping", a->gptq_damping, "GPTQ: damping added to the Gram's diagonal, times its mean (0.01)")
      ->check(CLI::Range(1e-6, 10.0));
  cmd->add_option("--avg-bits", a->avg_bits,
                  "greedy mixed precision (MPTQ-ViT): each block Linear layer gets W = A = one of --mp-bits,\n"
                  "lowered greedily by least KL increase (vs FP32 logits on --mp-images calibration images; how it\n"
                  "is measured: --mp-search) per bit saved until the weight-weighted average bit width is <= this (--wbits/--abits then\n"
                  "only set SQ-b's search and, through --attn-bits/--prob-bits defaults, the attention)")
      ->check(CLI::Range(2.0, 8.0));
  cmd->add_option("--mp-bits", a->mp_bits, "candidate bit widths of --avg-bits (default 4 5 6 8)")
      ->check(CLI::Range(2, 8));
  cmd->add_flag("--mp-weights-only", a->mp_weights_only,
                "--avg-bits varies the weight bits only (the average is of the weight codes, i.e. the size);\n"
                "every Linear input keeps --abits");
  cmd->add_flag("--mp-separate", a->mp_separate,
                "--avg-bits lowers each layer's weight bits and its input bits separately, as items of their\n"
                "own (one search over both), until the weight bits and the input bits each average <= --avg-bits\n"
                "(both averages weighted by the layers' weight counts)")
      ->excludes("--mp-weights-only");
  cmd->add_option("--mp-images", a->mp_images, "calibration images the --avg-bits search measures KL on (64; the first ones of --split)")
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--mp-search", a->mp_search,
                  "how --avg-bits chooses the bits: greedy (MPTQ-ViT: all layers at the highest candidate, lowered\n"
                  "one step at a time, each step's KL measured in the model quantised so far); greedy-isolated (the\n"
                  "same greedy rule on each layer's KL measured alone, in the float model, at every candidate);\n"
                  "knapsack (the exact best assignment of those isolated KLs under the budget). The isolated\n"
                  "searches keep their assignment only if its measured KL is below uniform bits'. Default greedy-isolated\n"
                  "(on ViT-Ti closer to FP32 than greedy wherever the layers differ: docs/quantization.md)")
      ->check(CLI::IsMember({"greedy", "greedy-isolated", "knapsack"}));
  cmd->add_option("--mp-check-images", a->mp_check_images,
                  "after the --avg-bits search, compare its assignment with uniform bits (every layer at the largest\n"
                  "candidate <= --avg-bits) by KL on up to this many calibration images the search did not use,\n"
                  "and keep uniform bits if they do better (64; 0: no check)")
      ->check(CLI::Range(0, 100000));
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
  cmd->add_flag("--reconstruct", a->reconstruct,
                "after calibration, PTQ block reconstruction (BRECQ / QDrop): block by block, learn the\n"
                "weight rounding (AdaRound) and every static step size (LSQ: Linear inputs, q, k, v,\n"
                "uniform probabilities) so that the quantised block, fed by the quantised blocks before it,\n"
                "reproduces the FP32 block's output on the calibration images (static mode only)");
  cmd->add_option("--recon-iters", a->recon.iters, "reconstruction: optimisation steps per block")->check(CLI::Range(1, 100000));
  cmd->add_option("--recon-batch", a->recon.batch, "reconstruction: images per step")->check(CLI::Range(1, 1024));
  cmd->add_option("--recon-lr", a->recon.lr_rounding, "reconstruction: Adam learning rate of the rounding logits")
      ->check(CLI::Range(1e-8, 10.0));
  cmd->add_option("--recon-scale-lr", a->recon.lr_scale, "reconstruction: Adam learning rate of the log step sizes, i.e. their relative change per\nstep (0 = keep the calibrated step sizes)")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--recon-reg", a->recon.reg_weight, "reconstruction: weight of AdaRound's rounding regulariser")
      ->check(CLI::Range(0.0, 1e6));
  cmd->add_option("--recon-drop", a->recon.drop_prob,
                  "reconstruction: QDrop probability of taking a block-input element from the FP32 input\n"
                  "while learning (0 = quantised inputs only); evaluation always uses quantised inputs")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--recon-seed", a->recon.seed, "reconstruction: seed of the batch and QDrop draws");
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
    s.repq = a->repq;
    s.opt_m = a->optm;
    s.gptq = a->gptq;
    s.gptq_damping = a->gptq_damping;
    s.rotate = a->rotate;
    s.avg_bits = a->avg_bits;
    s.mp_candidates = a->mp_bits;
    s.mp_images = a->mp_images;
    s.mp_check_images = a->mp_check_images;
    s.mp_search = quant::parse_mixed_search(a->mp_search);
    s.mp_bits = a->mp_separate       ? quant::PtqSettings::MixedBits::separate
                : a->mp_weights_only ? quant::PtqSettings::MixedBits::weights
                                     : quant::PtqSettings::MixedBits::tied;
    s.dynamic = a->dynamic;
    s.weight_observer = quant::parse_observer(a->wobs);
    s.act_observer = quant::parse_observer(a->aobs);
    s.percentile = a->percentile;
    s.keep_float = a->keep_float;
    s.dynamic_for = a->dynamic_for;
    s.batch = a->batch;
    if (models::SamModel::is_sam_folder(a->path)) {
      check(!a->gptq, "--gptq is for ViT models (SAM's quantisation does not take it yet)");
      check(!a->rotate, "--rotate is for ViT models (SAM's quantisation does not take it yet)");
      return quantize_sam_folder(*a, s, a->calib, a->split, a->out);
    }
    auto m = open_model(*a);
    std::vector<std::string> calib;
    if (!a->dynamic || a->gptq) {
      check(!a->calib.empty(), a->dynamic ? "--gptq needs --calib DIR (and usually --split calib.txt)"
                                          : "static quantisation needs --calib DIR (and usually --split calib.txt), or use --dynamic");
      calib = list_images(a->calib, a->split);
    }
    if (!kernels::cpu_has_vnni() && (a->abits == 8 || a->edge_bits == 8) && (a->wbits == 8 || a->edge_bits == 8))
      fmt::print(stderr, "note: this CPU has no VNNI; layers with 8-bit activations get 7-bit weight codes so "
                         "the int8 GEMM is exact (see `vitshrink info` for the bits of every layer)\n");
    int64_t before = m.param_bytes();
    check(!a->reconstruct || !a->dynamic, "--reconstruct needs static quantisation (not --dynamic)");
    check(!a->reconstruct || !a->rotate, "--reconstruct cannot train layers with rotated inputs (--rotate) yet");
    if (a->rotate && !a->dynamic && a->dynamic_for.empty())
      fmt::print(stderr, "note: --rotate rotates only inputs quantised per token; with neither --dynamic nor "
                         "--dynamic-for it changes nothing\n");
    quant::FloatLayers replaced;
    auto section = quant::quantize_model(m, s, calib, true, a->reconstruct ? &replaced : nullptr);
    nlohmann::json extra = {{"quantization", section}};
    if (a->reconstruct) {
      a->recon.learn_scales = a->recon.lr_scale > 0;
      extra["reconstruction"] = compress::reconstruct(m, replaced, open_model(*a), calib, a->recon);
    }
    models::save_model(a->out, m, extra);
    fmt::print("quantized {} -> {}: W{}A{}{} ({} layers), {} -> {} of parameters\n", a->path, a->out,
               a->wbits, a->abits, a->dynamic ? " dynamic" : "", section["layers"].size(),
               human_bytes(before), human_bytes(m.param_bytes()));
    if (s.smoothquant) {
      int on = 0;
      for (auto& [name, r] : section["sq_b"].items()) on += r["alpha"].is_number();
      fmt::print("SQ-b: smoothed {} of {} layers (alpha per layer in config.json)\n", on, section["sq_b"].size());
    }
    if (s.opt_m) {
      std::vector<std::string> ms;
      for (auto& [name, l] : section["layers"].items())
        if (l.contains("opt_m")) ms.push_back(std::to_string(l["opt_m"]["m"].get<int>()));
      fmt::print("OPT-m: twin-uniform ratio 2^m per mlp.fc2 (0 = uniform kept): m = {}\n", fmt::join(ms, " "));
    }
    if (s.gptq) {
      double rtn = 0, gptq = 0;
      for (auto& [name, l] : section["layers"].items())
        if (l.contains("gptq")) rtn += l["gptq"]["output_error_rtn"].get<double>(), gptq += l["gptq"]["output_error"].get<double>();
      fmt::print("GPTQ: summed layer output error on the calibration inputs {:.4g} (round to nearest) -> {:.4g} ({:.2f}x lower)\n",
                 rtn, gptq, rtn / std::max(gptq, 1e-300));
    }
    if (s.avg_bits > 0 && section["mixed_precision"].is_object()) {
      const auto& mp = section["mixed_precision"];
      fmt::print("mixed precision ({}, {}): average weight bits {:.3f}, input bits {:.3f} (target {}), KL vs FP32 {:.4g} -> "
                 "{:.4g}, {} {}, {} measurements, {:.0f} s; bits per layer:\n",
                 mp["search"].get<std::string>(), mp["varies"].get<std::string>(), mp["avg_wbits"].get<double>(), mp["avg_abits"].get<double>(), s.avg_bits,
                 mp["kl_start"].get<double>(), mp["kl_final"].get<double>(), mp["steps"].size(),
                 mp["search"] == "greedy" ? "steps" : "items off uniform bits",
                 mp["measurements"].get<int64_t>(), mp["seconds"].get<double>());
      if (mp["check"].is_object() && mp["check"]["kept"] == "uniform")
        fmt::print("  (the search's result above; the held-out check kept uniform {}-bit, as listed)\n",
                   mp["check"]["uniform_bits"].get<int>());
      for (auto& [name, b] : mp["bits"].items())
        fmt::print("  {:<24} W{} A{}\n", name, b["wbits"].get<int>(), b["abits"].get<int>());
      if (!mp["reached"].get<bool>())
        fmt::print(stderr, "note: every layer is at the lowest candidate and the average is still above --avg-bits\n");
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
      fmt::print("probability quantizer {} ({}-bit), tau per attention module (0 = uniform):", quant::prob_quantizer_name(s.prob_quantizer),
                 s.prob_bits);
      for (auto& [name, at] : section["attention"].items()) fmt::print(" {}", at["p_tau"].get<int>());
      fmt::print("\n");
    }
    if (a->reconstruct) {
      const auto& r = extra["reconstruction"];
      fmt::print("block reconstruction: {} blocks x {} steps in {:.0f} s; output MSE of the last block {:.4g} -> {:.4g}\n",
                 r["blocks"].size(), a->recon.iters, r["seconds"].get<double>(),
                 r["blocks"].back()["output_mse_before"].get<double>(), r["blocks"].back()["output_mse_after"].get<double>());
    }
    fmt::print("integer points: inputs and weights of every Linear ({}-bit patch_embed/head){}; float: {}\n",
               a->edge_bits, describe_attention(section), fmt::join(section["float_points"].get<std::vector<std::string>>(), ", "));
  });
}

}  // namespace vs::cli
