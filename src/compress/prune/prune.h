// Structured pruning of a ViT: scores every index of the dependency graph (graph.h) with SNP or
// the L1 baseline (scores.h), keeps the best fraction of each kind of dimension, and builds a
// model whose matrices really are smaller (uneven heads included).
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "compress/prune/calib_stats.h"
#include "compress/prune/graph.h"
#include "compress/prune/scores.h"
#include "models/vit.h"

namespace vs::prune {

enum class Method { snp, l1, taylor };
Method parse_method(const std::string& s);
const char* method_name(Method m);

struct PruneSettings {
  Method method = Method::snp;
  // Fractions kept: q/k pairs and value channels per block (across its heads), MLP hidden units
  // per block, residual channels. Unset = 1, or, with target_flops, the shared ratio found.
  std::optional<double> keep_qk, keep_v, keep_mlp, keep_embed;
  int heads = 0;             // keep this many heads per block (0 = all), before the ratios above
  double target_flops = 0;   // (0, 1]: bisect one keep ratio for every unset kind to reach it
  // What replaces the removed MLP units and value channels (scores.h, Compensation); anything
  // but none needs calibration data.
  Compensation compensation = Compensation::none;
  double refit_damping = 1e-2;  // refit: ridge term, times the mean diagonal of the input Gram
};

struct PruneResult {
  models::ViT model;
  nlohmann::json record;  // config.json "pruning" section (without the per-block widths)
};

// Compensation of `pruned` = apply_plan(model, g, plan) for the removed MLP units and value
// channels (see Compensation), from the calibration statistics of `model`.
void compensate(const models::ViT& model, const Graph& g, const Plan& plan, const CalibStats& st,
                Compensation c, double damping, models::ViT& pruned);

// calib: batches of preprocessed calibration images, needed by snp and taylor (ignored by l1). The input
// model is used for calibration only and left as it was.
PruneResult prune_model(models::ViT& model, const PruneSettings& s, const std::vector<Tensor>& calib,
                        bool progress = true);

}  // namespace vs::prune
