#include <fmt/format.h>

#include <algorithm>

#include "cli/commands.h"
#include "cli/common.h"
#include "compress/prune/prune.h"
#include "core/error.h"
#include "io/preprocess.h"
#include "models/load.h"

namespace vs::cli {

void add_prune(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "prune",
      "Structured pruning: removes query/key pairs, value channels, whole heads, MLP hidden units\n"
      "and residual channels (every coupled tensor at once), so the written model has smaller\n"
      "matrices and runs faster. Scores: snp (activation-aware, needs --calib), taylor (first-order\n"
      "Taylor |dL/dm| from one backward pass per calibration image, needs --calib) or l1 (weights only).\n"
      "The result is a normal model folder that eval / bench / info / quantize load.");
  struct Args : ModelArgs {
    std::string method = "snp", calib, split, out;
    double keep_qk = -1, keep_v = -1, keep_mlp = -1, keep_embed = -1, target_flops = -1;  // -1: not given
    int heads = 0, batch = 16;
    bool compensate = false, refit = false;
    double damping = 1e-2;
  };
  auto a = std::make_shared<Args>();
  add_model_args(cmd, *a);
  cmd->add_option("--method", a->method,
                  "snp: q/k pairs that preserve the attention logits, value channels without inter-head "
                  "redundancy, activation-aware MLP and residual channels; taylor: first-order Taylor "
                  "|sum over its weights of w * dL/dw| per image (L = cross-entropy vs the model's own "
                  "top-1 class), summed over the calibration images; l1: weight magnitude")
      ->check(CLI::IsMember({"snp", "l1", "taylor"}));
  auto ratio = CLI::Range(0.0, 1.0);
  cmd->add_option("--keep-qk", a->keep_qk, "fraction of query/key pairs kept per block, (0, 1]")->check(ratio);
  cmd->add_option("--keep-v", a->keep_v, "fraction of value channels kept per block, (0, 1]")->check(ratio);
  cmd->add_option("--keep-mlp", a->keep_mlp, "fraction of MLP hidden units kept per block, (0, 1]")->check(ratio);
  cmd->add_option("--keep-embed", a->keep_embed, "fraction of residual (embedding) channels kept, (0, 1]")->check(ratio);
  auto* heads = cmd->add_option("--heads", a->heads, "keep this many whole heads per block (removed first)")
                    ->check(CLI::Range(1, 4096));
  cmd->add_option("--target-flops", a->target_flops,
                  "reach this fraction of the original MACs: one keep ratio, shared by every --keep-* "
                  "not given, is found by bisection (the achieved fraction is printed)")
      ->check(ratio)
      ->excludes(heads);
  auto* mean = cmd->add_flag("--compensate", a->compensate,
                             "fold the calibration mean of every removed MLP unit and value channel into "
                             "fc2's / proj's bias (needs --calib; works with every method)");
  cmd->add_flag("--refit", a->refit,
                "refit fc2 and proj (weights and bias) by ridge least squares so that their kept inputs "
                "reproduce the original outputs on the calibration tokens; snp then removes the units "
                "the refit can best do without (needs --calib; works with every method)")
      ->excludes(mean);
  cmd->add_option("--refit-damping", a->damping,
                  "ridge term of --refit, as a fraction of the mean diagonal of the input Gram")
      ->check(CLI::Range(1e-8, 1e3));
  cmd->add_option("--calib", a->calib, "calibration image folder (ImageNet-style); needed by snp and taylor");
  cmd->add_option("--split", a->split, "file listing the calibration images (e.g. calib.txt)");
  cmd->add_option("--calib-batch", a->batch, "calibration batch size")->check(CLI::Range(1, 1024));
  cmd->add_option("--out", a->out, "output model folder")->required();
  cmd->callback([a] {
    prune::PruneSettings s;
    s.method = prune::parse_method(a->method);
    auto opt = [](double r) { return r >= 0 ? std::optional<double>(r) : std::nullopt; };
    s.keep_qk = opt(a->keep_qk);
    s.keep_v = opt(a->keep_v);
    s.keep_mlp = opt(a->keep_mlp);
    s.keep_embed = opt(a->keep_embed);
    s.heads = a->heads;
    s.compensation = a->refit        ? prune::Compensation::refit
                     : a->compensate ? prune::Compensation::mean
                                     : prune::Compensation::none;
    s.refit_damping = a->damping;
    check(a->target_flops != 0, "--target-flops must be in (0, 1]");
    s.target_flops = std::max(a->target_flops, 0.0);
    const bool needs_calib = s.method != prune::Method::l1 || s.compensation != prune::Compensation::none;
    check(!needs_calib || !a->calib.empty(),
          "--method snp / taylor, --compensate and --refit need --calib DIR (and usually --split calib.txt)");
    auto m = open_model(*a);
    std::vector<Tensor> calib;  // preprocessed up front (128 ViT-Ti images: 77 MB)
    if (needs_calib) {
      auto paths = list_images(a->calib, a->split);
      for (size_t i = 0; i < paths.size(); i += size_t(a->batch))
        calib.push_back(load_batch({paths.begin() + long(i), paths.begin() + long(std::min(paths.size(), i + size_t(a->batch)))},
                                   m.cfg.pre));
    }
    auto r = prune::prune_model(m, s, calib);
    models::save_model(a->out, r.model, nlohmann::json::object());
    fmt::print("pruned {} -> {} ({}): {:.3f} -> {:.3f} GMACs per image ({:.1f} % of the original), "
               "{:.2f} M -> {:.2f} M parameters\n",
               a->path, a->out, a->method, double(m.macs_per_image()) / 1e9, double(r.model.macs_per_image()) / 1e9,
               100.0 * r.record["flops_ratio"].get<double>(), double(m.num_params()) / 1e6,
               double(r.model.num_params()) / 1e6);
    fmt::print("kept fractions: q/k {:.3f}, v {:.3f}, mlp {:.3f}, embed {:.3f}\n", r.record["keep"]["qk"].get<double>(),
               r.record["keep"]["v"].get<double>(), r.record["keep"]["mlp"].get<double>(),
               r.record["keep"]["embed"].get<double>());
  });
}

}  // namespace vs::cli
