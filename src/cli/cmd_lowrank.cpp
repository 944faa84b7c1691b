#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/common.h"
#include "compress/lowrank/lowrank.h"
#include "core/error.h"
#include "models/load.h"

namespace vs::cli {

void add_lowrank(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "lowrank",
      "Low-rank compression of the Linear layers (Azizi et al., arXiv 2402.06004): each W [out, in]\n"
      "becomes two Linears B [r, in] then A [out, r] fitted to the layer's output on the calibration\n"
      "images, with ranks chosen per layer to meet --params or --flops, optionally refitted layer by\n"
      "layer on the compressed model's own inputs (--compensation), then refined block by block\n"
      "(--refine-steps). Attention is cut as per-head circuits (--circuits): narrower heads; MLPs by\n"
      "an interpolative decomposition of their hidden activations (--mlp-units): fewer hidden units.\n"
      "Writes a model folder that\n"
      "eval / bench / info / quantize load directly; `info` lists the rank of every layer.");
  struct Args : ModelArgs {
    double params = 0, flops = 0, damping = 1e-4;
    // Defaults = the best measured combination on ViT-Ti (docs/lowrank.md): greedy mixed ranks
    // with compensation, best at 90 / 80 / 70 % of the parameters.
    std::string calib, split, out, factorization = "activation", allocation = "greedy", rank_error = "kl";
    bool compensation = true, circuits = true, mlp_units = true;
    int batch = 16, sensitivity_images = 16;
    int64_t refine_steps = 200, refine_batch = 16;
    double refine_lr = 1e-3;
    bool refine_to_original = false;
    int64_t refine_views = 3;
    std::string refine_loss = "mse";
    std::string qk_fit = "uniform";
    std::string refine_last = "all";
    std::vector<std::string> keep_dense;
  };
  auto a = std::make_shared<Args>();
  add_model_args(cmd, *a);
  auto* p = cmd->add_option("--params", a->params,
                            "keep this fraction of the model's parameters, in (0, 1], e.g. 0.8");
  auto* f = cmd->add_option("--flops", a->flops,
                            "keep this fraction of the model's multiply-accumulates per image, in (0, 1]");
  p->excludes(f);
  f->excludes(p);
  cmd->add_option("--calib", a->calib, "calibration image folder (ImageNet-style)")->required();
  cmd->add_option("--split", a->split, "file listing the calibration images (e.g. calib.txt)");
  cmd->add_option("--out", a->out, "output model folder")->required();
  cmd->add_option("--factorization", a->factorization,
                  "activation: best rank-r fit of each layer's output on the calibration inputs (default);\n"
                  "svd: plain truncated SVD of the weights (for comparison)")
      ->check(CLI::IsMember({"activation", "svd"}));
  cmd->add_option("--allocation", a->allocation,
                  "greedy (default): mixed ranks, smallest increase of squared relative output error per\n"
                  "parameter (or MAC) saved; uniform: every layer keeps the same fraction of its weights")
      ->check(CLI::IsMember({"greedy", "uniform"}));
  cmd->add_option("--rank-error", a->rank_error,
                  "what greedy allocation compares across layers: channel = mean over output channels of each\n"
                  "channel's relative error; total = the layer's total relative error; kl (default) = the KL of\n"
                  "the model's output from FP32 measured with that layer alone cut to 4 probe ranks (its\n"
                  "uniform ranks at budgets saving 1/2, 1, 3/2 and 2x as much), interpolated in the rank\n"
                  "(4 forward passes per layer on --sensitivity-images images; docs/lowrank.md)")
      ->check(CLI::IsMember({"kl", "channel", "total"}));
  cmd->add_option("--sensitivity-images", a->sensitivity_images,
                  "calibration images of the KL probes of --rank-error kl, evenly spread over --split (default 16)")
      ->check(CLI::Range(1, 100000));
  cmd->add_flag("--circuits,!--no-circuits", a->circuits,
                "cut attention as per-head circuits (default on): each head's query-key score form and its\n"
                "value-to-output map get their own ranks (activation-aware, in the same allocation), giving\n"
                "narrower heads instead of factorised qkv / proj Linears (docs/lowrank.md)");
  cmd->add_option("--qk-fit", a->qk_fit,
                  "what a head's cut query-key circuit preserves: uniform (every query-key score alike) or\n"
                  "attention (score errors weighted as the softmax sees them: each key by the attention it\n"
                  "receives, per-query shifts ignored; default uniform; docs/lowrank.md)")
      ->check(CLI::IsMember({"uniform", "attention"}));
  cmd->add_flag("--mlp-units,!--no-mlp-units", a->mlp_units,
                "cut each MLP by a low-rank interpolative decomposition of its hidden activations (default on):\n"
                "r hidden units kept (chosen by their share of fc2's output, fc2 refitted by least squares),\n"
                "in the same allocation, giving narrower MLPs instead of factorised fc1 / fc2 Linears\n"
                "(docs/lowrank.md)");
  cmd->add_flag("--compensation,!--no-compensation", a->compensation,
                "refit the factors layer by layer, in forward order, to the layer's own FP32 output on the\n"
                "inputs the compressed model gives it (closed form; default on, docs/lowrank.md)");
  cmd->add_option("--damping", a->damping,
                  "ridge of the compensation least squares, relative to the mean input energy")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--keep-dense", a->keep_dense,
                  "layers to leave dense, by name (e.g. blocks.0.attn.qkv; naming a block's attn.qkv or attn.proj\n"
                  "also keeps that block's attention out of --circuits, fc1 or fc2 its MLP out of --mlp-units);\n"
                  "layers with fewer calibration\n"
                  "rows than inputs (the head: one row per image) are always left dense");
  cmd->add_option("--calib-batch", a->batch, "calibration batch size")->check(CLI::Range(1, 1024));
  cmd->add_option("--refine-steps", a->refine_steps,
                  "after compensation, refine block by block: Adam steps on every parameter of the block towards the\n"
                  "original block's output on the same (compressed) inputs (200; 0: off)")
      ->check(CLI::Range(int64_t(0), int64_t(1000000)));
  cmd->add_flag("--refine-to-original", a->refine_to_original,
                "refinement target: the original block on the original model's own inputs (BRECQ-style)\n"
                "instead of on the same refined inputs");
  cmd->add_option("--refine-views", a->refine_views,
                  "refinement: add this many augmented views (random resized crop, flip) of every calibration\n"
                  "image to the refinement's training set (3; 0: the images only)")
      ->check(CLI::Range(int64_t(0), int64_t(64)));
  cmd->add_option("--refine-loss", a->refine_loss,
                  "refinement loss: mse (mean squared error of the block's output) or relative (each token's\n"
                  "squared error over its variance across channels: the error the next LayerNorm sees)")
      ->check(CLI::IsMember({"mse", "relative"}));
  cmd->add_option("--refine-last", a->refine_last,
                  "the last block's refinement loss: all (every token) or head (only the tokens the head reads:\n"
                  "the class token with token pooling; the other outputs of the last block are never used); default all")
      ->check(CLI::IsMember({"all", "head"}));
  cmd->add_option("--refine-batch", a->refine_batch, "images per refinement step (16)")->check(CLI::Range(int64_t(1), int64_t(4096)));
  cmd->add_option("--refine-lr", a->refine_lr, "refinement learning rate, cosine-decayed to 0 (1e-3)")
      ->check(CLI::Range(1e-8, 1.0));
  cmd->callback([a] {
    check(a->params > 0 || a->flops > 0, "lowrank needs a budget: --params R or --flops R, R in (0, 1]");
    const double r = a->params > 0 ? a->params : a->flops;
    check(r > 0 && r <= 1, std::string(a->params > 0 ? "--params" : "--flops") + " must be in (0, 1], got " +
                               fmt::format("{}", r));
    check(a->qk_fit == "uniform" || (a->circuits && a->factorization == "activation"),
          "--qk-fit attention weighs the activation-aware fit of attention circuits: it needs --circuits and "
          "--factorization activation");
    auto m = open_model(*a);
    compress::LowRankSettings s;
    s.budget = a->params > 0 ? compress::LowRankSettings::Budget::params : compress::LowRankSettings::Budget::flops;
    s.fraction = r;
    s.activation_aware = a->factorization == "activation";
    s.mixed = a->allocation == "greedy";
    using RE = compress::LowRankSettings::RankError;
    s.rank_error = a->rank_error == "channel" ? RE::channel : a->rank_error == "total" ? RE::total : RE::kl;
    s.sensitivity_images = a->sensitivity_images;
    s.compensate = a->compensation;
    s.circuits = a->circuits;
    s.mlp_units = a->mlp_units;
    s.qk_attention_weighted = a->qk_fit == "attention";
    s.damping = a->damping;
    s.batch = a->batch;
    s.keep_dense = a->keep_dense;
    s.refine_iters = a->refine_steps;
    s.refine_batch = a->refine_batch;
    s.refine_lr = a->refine_lr;
    s.refine_to_original = a->refine_to_original;
    s.refine_views = a->refine_views;
    s.refine_token_relative = a->refine_loss == "relative";
    s.refine_head_tokens_last = a->refine_last == "head";
    const int64_t params = m.num_params(), macs = m.macs_per_image();
    auto section = compress::lowrank_model(m, s, list_images(a->calib, a->split));
    models::save_model(a->out, m, {{"lowrank", section}});
    const auto& attn = section["attention_circuits"];
    int64_t mlps_cut = 0;
    if (section["mlp_units"].is_object())
      for (auto& [name, w] : section["mlp_units"].items()) mlps_cut += w["hidden"] < w["of"];
    fmt::print("lowrank {} -> {}: {} layers factorised, {} attention modules as circuits, {} MLPs narrowed; parameters "
               "{} -> {} ({:.1f}%), GMACs {:.3f} -> {:.3f} ({:.1f}%)\n",
               a->path, a->out, section["layers"].size(), attn.is_object() ? attn.size() : 0, mlps_cut, params, m.num_params(),
               100.0 * double(m.num_params()) / double(params), double(macs) / 1e9, double(m.macs_per_image()) / 1e9,
               100.0 * double(m.macs_per_image()) / double(macs));
  });
}

}  // namespace vs::cli
