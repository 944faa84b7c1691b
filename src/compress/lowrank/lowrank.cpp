#include "compress/lowrank/lowrank.h"

#include <algorithm>
#include <map>
#include <optional>

#include "compress/capture.h"
#include "compress/lowrank/allocate.h"
#include "compress/lowrank/circuits.h"
#include "compress/lowrank/factorize.h"
#include "compress/lowrank/mlp_units.h"
#include "compress/lowrank/sensitivity.h"
#include "compress/reconstruct/reconstruct.h"
#include "core/error.h"
#include "core/progress.h"
#include "io/preprocess.h"
#include "nn/lowrank_linear.h"

namespace vs::compress {
namespace {

using RowMatF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MapF = Eigen::Map<const RowMatF>;

// acc += a^T b for row blocks a [rows, in_a], b [rows, in_b] (float GEMM per batch, float64 sum).
void add_cross(Mat& acc, const float* a, const float* b, int64_t rows, int64_t in_a, int64_t in_b) {
  Eigen::MatrixXf prod = MapF(a, rows, in_a).transpose() * MapF(b, rows, in_b);
  acc += prod.cast<double>();
}

Mat to_mat(const Tensor& t) {
  return MapF(t.f32(), t.dim(0), t.dim(1)).cast<double>();
}

Tensor to_tensor(const Mat& m) {
  Tensor t({m.rows(), m.cols()});
  Eigen::Map<RowMatF>(t.f32(), m.rows(), m.cols()) = m.cast<float>();
  return t;
}

Vec to_vec(const Tensor& t) { return Eigen::Map<const Eigen::VectorXf>(t.f32(), t.numel()).cast<double>(); }

Tensor to_tensor(const Vec& v) {
  Tensor t({v.size()});
  Eigen::Map<Eigen::VectorXf>(t.f32(), v.size()) = v.cast<float>();
  return t;
}

std::unique_ptr<nn::Linear> low_rank_layer(const Factors& f, const Tensor& bias) {
  return std::make_unique<nn::LowRankLinear>(std::make_unique<nn::DenseLinear>(to_tensor(f.B), Tensor()),
                                             std::make_unique<nn::DenseLinear>(to_tensor(f.A), bias));
}

// Rows one image contributes to a layer (for MAC budgets).
double rows_per_image(const models::ViTConfig& c, const std::string& name) {
  if (name == "patch_embed.proj") return double(c.num_patches());
  if (name.rfind("blocks.", 0) == 0) return double(c.num_tokens());
  return 1.0;  // head, head_dist: one pooled row each
}

struct Layer {
  std::string name;
  std::unique_ptr<nn::Linear>* slot;
  Mat W;
  Tensor bias;
  Mat xtx;  // X^T X of the FP32 inputs
  Vec xsum;  // their column sums
  int64_t rows = 0;  // calibration rows behind xtx
  Moments moments;   // centred moments of the input (MLP fc2 only, for its units: mlp_units.h)
  OutputSpectrum spectrum;
  int64_t rank = 0;  // 0: stays dense
  std::string kept;  // why the layer is not factorised at all ("" = it may be)
};

std::unique_ptr<nn::Linear> dense_layer(const Mat& w, const Vec& b) {
  return std::make_unique<nn::DenseLinear>(to_tensor(w), to_tensor(b));
}

std::unique_ptr<nn::Linear> dense_layer(const AttentionWeights& w, bool qkv) {
  if (qkv) return std::make_unique<nn::DenseLinear>(to_tensor(w.qkv_w), w.qkv_b.size() ? to_tensor(w.qkv_b) : Tensor());
  return std::make_unique<nn::DenseLinear>(to_tensor(w.proj_w), to_tensor(w.proj_b));
}

// A rank item of the attention circuits: one head's q/k (qk) or v/o circuit of circuits[block].
struct CircuitItem {
  size_t block, head;
  bool qk;
};

// One block's attention as circuits (circuits.h) and where its qkv / proj live.
struct Circuits {
  AttentionCircuits c;
  size_t block;  // in the model
  std::unique_ptr<nn::Linear>*qkv_slot, *proj_slot;

  // This block's per-head ranks from the allocation's (items: (block, head, qk) of the items
  // after the first `first`); unchanged heads keep their width. cut: some head is cut.
  struct Ranks {
    std::vector<int64_t> qk, v;
    bool cut = false;
  };
  Ranks ranks_from(const std::vector<CircuitItem>& items, const std::vector<int64_t>& ranks, size_t first,
                   size_t block) const {
    Ranks out;
    for (auto& h : c.heads) {
      out.qk.push_back(h.q.rows());
      out.v.push_back(h.v.rows());
    }
    for (size_t j = 0; j < items.size(); ++j) {
      const int64_t r = ranks[first + j];
      if (items[j].block != block || r <= 0) continue;
      (items[j].qk ? out.qk : out.v)[items[j].head] = r;
      out.cut = true;
    }
    return out;
  }
};

bool asked_dense(const LowRankSettings& s, const std::string& name) {
  return std::find(s.keep_dense.begin(), s.keep_dense.end(), name) != s.keep_dense.end();
}

// One block's MLP as hidden units (mlp_units.h) and where its fc1 / fc2 live.
struct MlpCut {
  MlpUnits u;
  size_t block;
  std::unique_ptr<nn::Linear>*fc1_slot, *fc2_slot;
  int64_t width = 0;  // units kept; 0: unchanged

  void set(const MlpWeights& w) const {
    *fc1_slot = dense_layer(w.w1, w.b1);
    *fc2_slot = dense_layer(w.w2, w.b2);
  }
  std::string name() const { return "blocks." + std::to_string(block) + ".mlp"; }
};

// Every block's MLP as hidden units from the FP32 statistics; its fc1 / fc2 leave the Linear
// candidates (kept).
std::vector<MlpCut> mlp_cuts_of(models::ViT& model, std::vector<Layer>& layers,
                                const std::map<std::string, size_t>& index, const LowRankSettings& s) {
  std::vector<MlpCut> out;
  for (size_t b = 0; b < model.blocks.size(); ++b) {
    const std::string prefix = "blocks." + std::to_string(b) + ".mlp.";
    if (asked_dense(s, prefix + "fc1") || asked_dense(s, prefix + "fc2")) continue;  // --keep-dense: this MLP stays
    auto& f1 = layers[index.at(prefix + "fc1")];
    auto& f2 = layers[index.at(prefix + "fc2")];
    // --factorization svd (the ablation's data-free column): unit activations treated as white
    // (Gram = I, mean 0), so units go by the norm of their fc2 column and the rest are not refitted.
    Moments white;
    if (!s.activation_aware) {
      white.mean = Vec::Zero(f1.W.rows());
      white.cgram = Mat::Identity(f1.W.rows(), f1.W.rows());
      white.rows = 1;
    }
    out.push_back({mlp_units(f1.W, to_vec(f1.bias), f2.W, to_vec(f2.bias), s.activation_aware ? f2.moments : white,
                             s.damping),
                   b, f1.slot, f2.slot});
    f1.kept = f2.kept = "MLP units";
  }
  return out;
}

// Every block's attention as circuits from the FP32 statistics, and the model's qkv / proj
// rewritten in the circuits' bases at full rank (the same function; circuits.h), so that cutting a
// head is zeroing rows of qkv. The qkv / proj layers leave the Linear candidates (kept).
std::vector<Circuits> attention_circuits_of(models::ViT& model, std::vector<Layer>& layers,
                                            const std::map<std::string, size_t>& index, const LowRankSettings& s,
                                            const std::vector<KeyWeights>& keys) {
  std::vector<Circuits> out;
  for (size_t b = 0; b < model.blocks.size(); ++b) {
    const std::string prefix = "blocks." + std::to_string(b) + ".attn.";
    if (asked_dense(s, prefix + "qkv") || asked_dense(s, prefix + "proj")) continue;  // --keep-dense: this attention stays
    auto& q = layers[index.at(prefix + "qkv")];
    auto& p = layers[index.at(prefix + "proj")];
    const auto& layout = model.blocks[b].attn.heads;
    Circuits c{attention_circuits(q.W, model.cfg.qkv_bias ? to_vec(q.bias) : Vec(), p.W, to_vec(p.bias), layout, q.xtx,
                                  q.xsum, double(q.rows), p.xtx, s.activation_aware,
                                  keys.empty() ? nullptr : &keys[b]),
               b, q.slot, p.slot};
    const AttentionWeights full = attention_at(c.c, layout.qk_dim, layout.v_dim, true);
    *q.slot = dense_layer(full, true);
    *p.slot = dense_layer(full, false);
    q.kept = p.kept = "attention circuits";
    out.push_back(std::move(c));
  }
  return out;
}

void for_each_batch(const std::vector<std::string>& images, int batch, const models::ViT& model,
                    const std::function<void(const Tensor&, size_t)>& fn) {
  for (size_t i = 0; i < images.size(); i += size_t(batch)) {
    size_t e = std::min(images.size(), i + size_t(batch));
    fn(load_batch({images.begin() + long(i), images.begin() + long(e)}, model.cfg.pre), e);
  }
}

// Step 4: refits the factorised layers one at a time, in forward order, on the inputs X' the
// compressed model gives them (errors of every earlier layer included), against the layer's own
// FP32 weights on those inputs: target X' W^T + b. Targeting the FP32 model's outputs X W^T + b
// instead (an earlier version) lowered top-1 from 23.97 to 12.39 at 80 %: X' is a noisy version
// of X, and least squares from noisy inputs shrinks the weights (regression dilution).
// A cut MLP (mlp_units.h) is chosen again on its compressed inputs: put back at full width, the
// hidden activations it then gets give new moments, on which its units are removed and fc2
// refitted (towards the original fc2 on those activations) at the allocated width.
void compensate(models::ViT& model, std::vector<Layer>& layers, const std::vector<MlpCut>& mlps,
                const LowRankSettings& s, const std::vector<std::string>& calib, bool progress) {
  std::map<std::string, const MlpCut*> mlp_of;  // fc2's name -> its cut MLP
  for (auto& m : mlps)
    if (m.width > 0) mlp_of[m.name() + ".fc2"] = &m;
  int64_t todo = int64_t(mlp_of.size()), done = 0;
  for (auto& l : layers) todo += l.rank > 0;
  Progress bar("compensate", todo * int64_t(calib.size()));
  // Moments of what the Linear `name` of the compressed model gets on the calibration images.
  auto input_moments = [&](const std::string& name) {
    Moments m;
    for_each_batch(calib, s.batch, model, [&](const Tensor& images, size_t end) {
      int64_t in = 0, rows = 0;
      const std::vector<float> x = layer_input(model, name, images, in, rows);
      m.add(x.data(), rows, in);
      if (progress) bar.update(done + int64_t(end));
    });
    done += int64_t(calib.size());
    return m;
  };
  for (auto& l : layers) {
    if (auto it = mlp_of.find(l.name); it != mlp_of.end()) {
      const MlpUnits& u = it->second->u;
      it->second->set({u.w1, u.w2, u.b1, u.b2});
      const Moments m = input_moments(l.name);
      it->second->set(mlp_at(mlp_units(u.w1, u.b1, u.w2, u.b2, m, s.damping), it->second->width, false));
      continue;
    }
    if (l.rank == 0) continue;
    const Moments m = input_moments(l.name + ".down");
    // X' paired with itself: the target is the layer on X'.
    Refit r = refit_low_rank(l.W, to_vec(l.bias), PairedMoments::of_columns(m), l.rank, s.damping);
    *l.slot = low_rank_layer(r.f, to_tensor(r.bias));
  }
  bar.finish();
}

}  // namespace

nlohmann::json lowrank_model(models::ViT& model, const LowRankSettings& s,
                             const std::vector<std::string>& calib, bool progress) {
  check(s.fraction > 0 && s.fraction <= 1, "low-rank: budget fraction must be in (0, 1], got " + std::to_string(s.fraction));
  check(s.damping >= 0, "low-rank: damping must be >= 0");
  check(s.batch >= 1, "low-rank: calibration batch must be >= 1");
  check(s.sensitivity_images >= 1, "low-rank: sensitivity images must be >= 1");
  check(!calib.empty(), "low-rank needs calibration images (--calib)");

  check(s.refine_iters >= 0 && s.refine_batch >= 1 && s.refine_lr > 0, "low-rank: bad block refinement settings");
  std::vector<Layer> layers;
  std::map<std::string, size_t> index;
  for (auto& [name, slot] : model.linears()) {
    auto* d = dynamic_cast<nn::DenseLinear*>(slot->get());
    check(d != nullptr, "layer '" + name + "' is not dense (" + (*slot)->kind() +
                            "); apply low rank to the float model, before quantisation");
    Tensor bias = d->bias().defined() ? d->bias() : Tensor::zeros({d->out_features()});
    index[name] = layers.size();
    layers.push_back({name, slot, to_mat(d->weight()), bias, Mat::Zero(d->in_features(), d->in_features()),
                      Vec::Zero(d->in_features()), 0, {}, {}, 0, {}});
  }

  for (auto& n : s.keep_dense) check(index.count(n) != 0, "low-rank: --keep-dense names no Linear layer: '" + n + "'");

  std::optional<models::ViT> reference;  // the original (all layers dense here), for block refinement
  if (s.refine_iters > 0) {
    StateDict sd;
    for (auto& [k, v] : model.state_dict()) sd[k] = v.clone();
    reference = models::ViT::from_state_dict(model.cfg, sd, "the original model");
  }

  // 1. X^T X of every layer's input on the FP32 model (and the attention's key weights).
  std::vector<KeyWeights> keys;
  if (s.circuits && s.qk_attention_weighted && s.activation_aware) keys.resize(model.blocks.size());
  {
    Capture cap(model, [&](const Captured& c) {
      Layer& l = layers[index.at(c.name)];
      if (!keys.empty() && c.name.ends_with(".attn.qkv")) {
        const size_t b = std::stoul(c.name.substr(7));  // "blocks.N.attn.qkv"
        const int64_t T = model.cfg.num_tokens();
        keys[b].add(c.x, c.y, c.rows / T, T, c.in, model.blocks[b].attn.heads, model.blocks[b].attn.scale);
      }
      add_cross(l.xtx, c.x, c.x, c.rows, c.in, c.in);
      if (s.mlp_units && c.name.ends_with(".mlp.fc2"))
        l.moments.add(c.x, c.rows, c.in);
      l.xsum += MapF(c.x, c.rows, c.in).colwise().sum().transpose().cast<double>();
      l.rows += c.rows;
    });
    Progress bar("statistics", int64_t(calib.size()));
    for_each_batch(calib, s.batch, model, [&](const Tensor& images, size_t end) {
      model.forward(images);
      if (progress) bar.update(int64_t(end));
    });
    bar.finish();
  }

  // 2-3. Spectra and ranks. Items 0..eligible-1 are Linear layers, then attention circuits, then
  // MLP units.
  const bool flops = s.budget == LowRankSettings::Budget::flops;
  const double total = flops ? double(model.macs_per_image()) : double(model.num_params());
  std::vector<Circuits> circuits;
  if (s.circuits) circuits = attention_circuits_of(model, layers, index, s, keys);
  std::vector<MlpCut> mlps;
  if (s.mlp_units) mlps = mlp_cuts_of(model, layers, index, s);
  std::vector<RankCandidate> cands;
  std::vector<Layer*> eligible;
  std::vector<int64_t> full_rank;  // per item: the rank at which it is unchanged
  nlohmann::json kept_dense = nlohmann::json::object();
  for (auto& l : layers) {
    // Fewer calibration rows than inputs (the head sees one pooled row per image): the fit would
    // keep only the outputs of the calibration images (for the head: their classes' logits) and
    // its compensation would interpolate them; measured 21.10 top-1 at 80 % with the head cut.
    if (!l.kept.empty()) continue;  // cut as attention circuits
    if (asked_dense(s, l.name))
      l.kept = "asked (--keep-dense)";
    else if (l.rows < l.W.cols())
      l.kept = std::to_string(l.rows) + " calibration rows < " + std::to_string(l.W.cols()) + " inputs";
    if (!l.kept.empty()) {
      kept_dense[l.name] = l.kept;
      continue;
    }
    l.spectrum = output_spectrum(l.W, s.activation_aware ? &l.xtx : nullptr);
    const OutputSpectrum* sp = &l.spectrum;
    const double energy = std::max(sp->energy.sum(), 1e-300);
    const bool channel = s.rank_error == LowRankSettings::RankError::channel;
    eligible.push_back(&l);
    full_rank.push_back(std::min(l.W.rows(), l.W.cols()));
    cands.push_back(RankCandidate::linear(l.W.cols(), l.W.rows(), flops ? rows_per_image(model.cfg, l.name) : 1.0,
                     [sp, energy, channel](int64_t r) {
                       // Squared: the sum over layers then penalises one badly cut layer far more
                       // than many mildly cut ones (with the plain sum, greedy cut a few layers to
                       // 40-70% error and the model fell to chance - docs/lowrank.md).
                       const double e = channel ? sp->channel_error_at(r) : sp->error_at(r) / energy;
                       return e * e;
                     }));
  }
  // Circuit items: (block, head, qk or ov), rank = the head's q/k or v width.
  std::vector<CircuitItem> citems;
  const double T = double(model.cfg.num_tokens());
  for (size_t b = 0; b < circuits.size(); ++b) {
    const AttentionCircuits& c = circuits[b].c;
    const double n = double(c.in + (c.qkv_bias ? 1 : 0)), out = double(c.proj_bias.size());
    for (size_t h = 0; h < c.heads.size(); ++h)
      for (bool qk : {true, false}) {
        const Vec& e = qk ? c.heads[h].qk_energy : c.heads[h].ov_energy;
        if (e.size() == 0) continue;
        // Per unit of rank: q and k rows (weights and bias), or a v row and a proj column; with
        // MACs per image also the T x T products of q k^T or P v.
        const double per = flops ? (qk ? T * 2 * double(c.in) + T * T : T * (double(c.in) + out) + T * T)
                                 : (qk ? 2 * n : n + out);
        const double energy = std::max(e.sum(), 1e-300);
        citems.push_back({b, h, qk});
        full_rank.push_back(e.size());
        cands.push_back({per * double(e.size()), per, e.size() - 1, [e, energy](int64_t r) {
                           const double t = r >= e.size() ? 0.0 : e.tail(e.size() - r).sum() / energy;
                           return t * t;
                         }});
      }
  }
  // MLP items: rank = hidden units kept, each its fc1 row and bias and its fc2 column (with MACs
  // per image, the tokens' products).
  const size_t first_mlp = cands.size();
  for (const MlpCut& m : mlps) {
    const MlpUnits& u = m.u;
    const int64_t n = u.width();
    const double per = flops ? T * double(u.w1.cols() + u.w2.rows()) : double(u.w1.cols() + 1 + u.w2.rows());
    const double energy = std::max(u.energy, 1e-300);
    full_rank.push_back(n);
    cands.push_back({per * double(n), per, n - 1, [&u, n, energy](int64_t r) {
                       const double t = r >= n ? 0.0 : u.error(n - r) / energy;
                       return t * t;
                     }});
  }
  const double to_save = total * (1.0 - s.fraction);
  nlohmann::json probes = nlohmann::json::object();
  // KL probes (rank error kl): every candidate item cut alone, then the whole allocation, on the
  // first sensitivity_images calibration images, against their FP32 logits (computed once).
  const bool kl_probes = s.mixed && s.rank_error == LowRankSettings::RankError::kl;
  Tensor probe_images, probe_ref;
  if (kl_probes) {
    // Evenly spread over the calibration list (split files are often sorted by class: the first
    // 16 of calib.txt are all birds, reptiles and dogs).
    const size_t n = std::min(calib.size(), size_t(s.sensitivity_images));
    std::vector<std::string> picked;
    for (size_t i = 0; i < n; ++i) picked.push_back(calib[i * calib.size() / n]);
    probe_images = load_batch(picked, model.cfg.pre);
    probe_ref = model.forward(probe_images);
  }
  auto item_name = [&](size_t i) {
    if (i < eligible.size()) return eligible[i]->name;
    if (i >= first_mlp) return mlps[i - first_mlp].name() + ".units";
    const CircuitItem& it = citems[i - eligible.size()];
    return "blocks." + std::to_string(circuits[it.block].block) + ".attn.head" + std::to_string(it.head) + (it.qk ? ".qk" : ".ov");
  };
  // The model with the items at `ranks` (0 = unchanged), uncompensated, as swaps: one per cut
  // Linear, one qkv (zero rows beyond the ranks, circuits.h) per block with a cut head.
  auto swaps_for = [&](const std::vector<int64_t>& ranks) {
    std::vector<LayerSwap> swaps;
    for (size_t i = 0; i < eligible.size(); ++i)
      if (ranks[i] > 0)
        swaps.push_back({eligible[i]->slot, low_rank_layer(factorize(eligible[i]->W, eligible[i]->spectrum, ranks[i]),
                                                           eligible[i]->bias)});
    for (size_t b = 0; b < circuits.size(); ++b) {
      const auto r = circuits[b].ranks_from(citems, ranks, eligible.size(), b);
      if (r.cut) swaps.push_back({circuits[b].qkv_slot, dense_layer(attention_at(circuits[b].c, r.qk, r.v, true), true)});
    }
    for (size_t j = 0; j < mlps.size(); ++j)
      if (const int64_t r = ranks[first_mlp + j]; r > 0) {
        const MlpWeights w = mlp_at(mlps[j].u, r, true);  // padded: only fc2 changes
        swaps.push_back({mlps[j].fc2_slot, dense_layer(w.w2, w.b2)});
      }
    return swaps;
  };
  if (kl_probes) {
    // Probe every Linear alone at the ranks uniform allocation gives it at 4 budgets around the
    // target (saving 1/2, 1, 3/2 and 2 times as much) on a few calibration images, and let greedy
    // compare items by the measured KL of the model's logits, interpolated linearly in the rank
    // between probes (0 at full rank). Ranks below the lowest probe are not used: an earlier
    // version extrapolated one probe along the output-error curve and greedy cut 12 layers to rank
    // 1-38 (0.80 top-1 at 80 %). Summing the items' KLs ignores their interaction.
    // Attention circuits are probed at 3/4, 1/2, 3/8, 1/4 and 1/8 of the head's width at every
    // budget: their cheap heads go far below the uniform ranks (the thirteenth session's PyTorch
    // probe, docs/lowrank.md), which a ladder from uniform allocation never reaches.
    std::vector<std::vector<int64_t>> probe_ranks(cands.size());  // per item, falling
    for (double k : {0.5, 1.0, 1.5, 2.0}) {
      try {
        const auto uniform = allocate_uniform(cands, std::min(to_save * k, total));
        for (size_t i = 0; i < eligible.size(); ++i) probe_ranks[i].push_back(uniform[i]);
      } catch (const Error&) {  // that much is not reachable: fewer probes
      }
    }
    for (size_t i = eligible.size(); i < first_mlp; ++i)
      for (int64_t eighths : {6, 4, 3, 2, 1})
        if (const int64_t r = full_rank[i] * eighths / 8; r >= 1 && (probe_ranks[i].empty() || r < probe_ranks[i].back()))
          probe_ranks[i].push_back(r);
    // MLP units at 7/8 .. 2/8 of the hidden width (1/16 steps measured no better: 78.21 top-1
    // at 80 % against 78.33, docs/lowrank.md).
    for (size_t i = first_mlp; i < cands.size(); ++i)
      for (int64_t eighths : {7, 6, 5, 4, 3, 2}) probe_ranks[i].push_back(std::max<int64_t>(1, full_rank[i] * eighths / 8));
    std::vector<LayerSwap> swaps;
    for (size_t i = 0; i < cands.size(); ++i)
      for (int64_t r : probe_ranks[i]) {
        std::vector<int64_t> alone(cands.size(), 0);
        alone[i] = r;
        auto one = swaps_for(alone);
        swaps.push_back(std::move(one.at(0)));
      }
    const auto kl = swap_kl(model, probe_images, probe_ref, swaps, progress);
    size_t next = 0;
    for (size_t i = 0; i < cands.size(); ++i) {
      // Points (rank, KL) from full rank down, KL made non-decreasing as the rank falls.
      std::vector<std::pair<int64_t, double>> pts{{full_rank[i], 0.0}};
      nlohmann::json measured = nlohmann::json::array();
      for (int64_t r : probe_ranks[i]) {
        const double v = kl[next++];
        measured.push_back({{"rank", r}, {"kl", v}});
        if (r < pts.back().first) pts.emplace_back(r, std::max(v, pts.back().second));
      }
      cands[i].error = [pts](int64_t r) {
        if (r < pts.back().first) return 1e30;  // below the lowest probe: never chosen
        for (size_t j = 1; j < pts.size(); ++j)
          if (r >= pts[j].first) {
            const auto [r0, v0] = pts[j - 1];
            const auto [r1, v1] = pts[j];
            return r0 == r1 ? v1 : v1 + (v0 - v1) * double(r - r1) / double(r0 - r1);
          }
        return 0.0;
      };
      probes[item_name(i)] = measured;
    }
  }
  auto ranks = s.mixed ? allocate_greedy(cands, to_save) : allocate_uniform(cands, to_save);
  nlohmann::json allocation_check;
  if (kl_probes) {
    // Summed single-item KLs stop predicting the model's KL when many items are cut hard
    // (measured: greedy below uniform ranks at 70 % of the parameters): keep the greedy ranks
    // only if the whole model's KL on the probe images is lower with them than with uniform ranks.
    auto kl_of = [&](const std::vector<int64_t>& r) {
      auto swaps = swaps_for(r);
      return joint_swap_kl(model, probe_images, probe_ref, swaps);
    };
    const auto uniform = allocate_uniform(cands, to_save);
    const double kl_greedy = kl_of(ranks), kl_uniform = kl_of(uniform);
    allocation_check = {{"greedy_kl", kl_greedy}, {"uniform_kl", kl_uniform},
                        {"chosen", kl_greedy <= kl_uniform ? "greedy" : "uniform"}};
    if (kl_uniform < kl_greedy) ranks = uniform;
  }
  for (size_t i = 0; i < eligible.size(); ++i) eligible[i]->rank = ranks[i];

  nlohmann::json per_layer = nlohmann::json::object();
  for (Layer& l : layers) {
    if (l.rank == 0) continue;
    Tensor bias = dynamic_cast<nn::DenseLinear*>(l.slot->get())->bias();
    *l.slot = low_rank_layer(factorize(l.W, l.spectrum, l.rank), bias);
    per_layer[l.name] = {{"rank", l.rank}, {"in", l.W.cols()}, {"out", l.W.rows()},
                         {"relative_error", l.spectrum.error_at(l.rank) / std::max(l.spectrum.energy.sum(), 1e-300)},
                         {"channel_error", l.spectrum.channel_error_at(l.rank)}};
  }
  // The attention circuits at their ranks: narrower heads (the layout is saved in config.json).
  nlohmann::json attention = nlohmann::json::object();
  for (size_t b = 0; b < circuits.size(); ++b) {
    const auto r = circuits[b].ranks_from(citems, ranks, eligible.size(), b);
    const AttentionWeights w = attention_at(circuits[b].c, r.qk, r.v, false);
    *circuits[b].qkv_slot = dense_layer(w, true);
    *circuits[b].proj_slot = dense_layer(w, false);
    model.blocks[circuits[b].block].attn.heads = w.layout;
    attention["blocks." + std::to_string(circuits[b].block) + ".attn"] = {{"qk_rank", w.layout.qk_dim}, {"v_rank", w.layout.v_dim}};
  }
  // The MLPs at their widths: fewer hidden units.
  nlohmann::json mlp_json = nlohmann::json::object();
  bool mlp_cut = false;
  for (size_t j = 0; j < mlps.size(); ++j) {
    mlps[j].width = ranks[first_mlp + j];
    mlp_json[mlps[j].name()] = {{"hidden", mlps[j].width > 0 ? mlps[j].width : mlps[j].u.width()}, {"of", mlps[j].u.width()}};
    if (mlps[j].width == 0) continue;
    mlps[j].set(mlp_at(mlps[j].u, mlps[j].width, false));
    mlp_cut = true;
  }
  if (!circuits.empty() || mlp_cut) {  // the widths every block was left with, as structured pruning saves them
    model.cfg.head_layouts.clear();
    for (auto& blk : model.blocks) model.cfg.head_layouts.push_back(blk.attn.heads);
    model.cfg.attn_scale = model.blocks[0].attn.scale;
    model.cfg.pruning_record["by"] = std::string("lowrank: ") +
                                     (circuits.empty() ? "MLP units" : mlp_cut ? "attention circuits, MLP units" : "attention circuits");
  }

  // 4. Error compensation.
  if (s.compensate) compensate(model, layers, mlps, s, calib, progress);

  // 5. Block refinement.
  nlohmann::json refinement = "off";
  if (reference) {
    RefineSettings rs;
    rs.iters = s.refine_iters;
    rs.batch = s.refine_batch;
    rs.lr = s.refine_lr;
    rs.target_original_inputs = s.refine_to_original;
    rs.augment_views = s.refine_views;
    rs.token_relative = s.refine_token_relative;
    rs.head_tokens_last = s.refine_head_tokens_last;
    rs.progress = progress;
    refinement = refine_blocks(model, *reference, calib, rs);
  }

  const double after = flops ? double(model.macs_per_image()) : double(model.num_params());
  return {{"paper", "Azizi, Nazemi, Pedram - arXiv 2402.06004"},
          {"factorization", s.activation_aware ? "activation-aware" : "svd"},
          {"allocation", s.mixed ? "greedy mixed rank" : "uniform"},
          {"rank_error", !s.mixed ? "none (uniform)"
                         : s.rank_error == LowRankSettings::RankError::channel ? "mean channel relative error"
                         : s.rank_error == LowRankSettings::RankError::total   ? "total relative error"
                                                                               : "output error scaled to the measured KL of the model"},
          {"sensitivity", probes},
          {"allocation_check", allocation_check},
          {"compensation", s.compensate ? "closed-form reduced-rank regression per layer (MLP units: chosen again and fc2 refitted), forward order, target: the FP32 layer on the compressed inputs" : "none"},
          {"refinement", refinement},
          {"budget", {{flops ? "flops" : "params", s.fraction}}},
          {flops ? "macs_per_image" : "params", {{"before", total}, {"after", after}}},
          {"damping", s.damping},
          {"calibration_images", int64_t(calib.size())},
          {"kept_dense", kept_dense},
          {"layers", per_layer},
          {"attention_circuits", circuits.empty() ? nlohmann::json("off") : attention},
          {"qk_fit", circuits.empty() ? "none" : keys.empty() ? "uniform" : "attention-weighted keys"},
          {"mlp_units", mlps.empty() ? nlohmann::json("off") : mlp_json}};
}

}  // namespace vs::compress
