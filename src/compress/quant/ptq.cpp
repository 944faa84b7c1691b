#include "compress/quant/ptq.h"

#include <algorithm>
#include <map>

#include "core/error.h"
#include "core/progress.h"
#include "kernels/gemm_int8.h"
#include "io/preprocess.h"
#include "nn/quant_linear.h"

namespace vs::quant {
namespace {

// Stands in for a Linear during calibration: records its inputs, then runs it unchanged.
class ObservingLinear final : public nn::Linear {
 public:
  explicit ObservingLinear(std::unique_ptr<nn::Linear> inner) : inner_(std::move(inner)) {}
  void forward(const float* x, float* y, int64_t M, nn::Epilogue ep) const override {
    obs_.observe(x, M, in_features());
    inner_->forward(x, y, M, ep);
  }
  int64_t in_features() const override { return inner_->in_features(); }
  int64_t out_features() const override { return inner_->out_features(); }
  std::string kind() const override { return inner_->kind(); }
  int64_t num_params() const override { return inner_->num_params(); }
  int64_t bytes() const override { return inner_->bytes(); }
  int64_t macs_per_row() const override { return inner_->macs_per_row(); }
  void save(const std::string& prefix, StateDict& out) const override { inner_->save(prefix, out); }

  std::unique_ptr<nn::Linear> release() { return std::move(inner_); }
  const ActObserver& observer() const { return obs_; }

 private:
  std::unique_ptr<nn::Linear> inner_;
  mutable ActObserver obs_;
};

bool is_edge(const std::string& name) {
  return name == "patch_embed.proj" || name == "head" || name == "head_dist";
}

}  // namespace

nlohmann::json quantize_model(models::ViT& model, const PtqSettings& s,
                              const std::vector<std::string>& calib_images, bool progress) {
  check_bits(s.wbits);
  check_bits(s.abits);
  check_bits(s.edge_bits);
  check(s.dynamic || !calib_images.empty(), "static quantisation needs calibration images (--calib)");
  auto layers = model.linears();
  auto keep = [&](const std::string& name) {
    return std::find(s.keep_float.begin(), s.keep_float.end(), name) != s.keep_float.end();
  };
  for (auto& k : s.keep_float) {
    bool known = std::any_of(layers.begin(), layers.end(), [&](auto& l) { return l.first == k; });
    check(known, "--keep-float: no Linear layer named '" + k + "' (see `vitshrink info`)");
  }
  for (auto& [name, slot] : layers)
    check(dynamic_cast<nn::DenseLinear*>(slot->get()) != nullptr,
          "layer '" + name + "' is already quantised; quantise the float model");

  // 1. Calibration: observe every Linear's input over the calibration images.
  std::map<std::string, ObservingLinear*> observers;
  if (!s.dynamic) {
    for (auto& [name, slot] : layers) {
      auto obs = std::make_unique<ObservingLinear>(std::move(*slot));
      observers[name] = obs.get();
      *slot = std::move(obs);
    }
    Progress bar("calibrate", int64_t(calib_images.size()));
    try {
      for (size_t i = 0; i < calib_images.size(); i += size_t(s.batch)) {
        size_t e = std::min(calib_images.size(), i + size_t(s.batch));
        std::vector<std::string> paths(calib_images.begin() + long(i), calib_images.begin() + long(e));
        model.forward(load_batch(paths, model.cfg.pre));
        if (progress) bar.update(int64_t(e));
      }
    } catch (...) {  // put the original layers back before reporting
      for (auto& [name, slot] : layers) *slot = observers[name]->release();
      throw;
    }
    bar.finish();
  }

  // 2. Replace each Linear by its quantised version.
  nlohmann::json per_layer = nlohmann::json::object();
  for (auto& [name, slot] : layers) {
    std::unique_ptr<nn::Linear> dense_owner =
        s.dynamic ? std::move(*slot) : observers[name]->release();
    auto* dense = dynamic_cast<nn::DenseLinear*>(dense_owner.get());
    const int ab = is_edge(name) ? s.edge_bits : s.abits;
    int wb = is_edge(name) ? s.edge_bits : s.wbits;
    if (wb <= 8) wb = std::min(wb, kernels::int8_exact_weight_bits(ab));  // see gemm_int8.h
    if (keep(name) || (wb >= 16 && ab >= 16)) {
      *slot = std::move(dense_owner);
      continue;
    }
    check(wb <= 8 && ab <= 8, "layer '" + name + "': integer execution needs weight and activation bits <= 8 (16 = leave float)");
    const Tensor& w = dense->weight();
    QParams wq = calibrate_weight(w.f32(), w.dim(0), w.dim(1), wb, true, Granularity::channel, 0,
                                  s.weight_observer, s.percentile);
    const bool dyn = s.dynamic || std::any_of(s.dynamic_for.begin(), s.dynamic_for.end(), [&](const std::string& suf) {
                       return name.size() >= suf.size() && name.compare(name.size() - suf.size(), suf.size(), suf) == 0;
                     });
    nn::ActQuant act{ab, dyn, 1.f, 0};
    if (!dyn) {
      QParams aq = observers[name]->observer().finalize(ab, false, s.act_observer, s.percentile);
      act.scale = aq.scale[0];
      act.zero = aq.zero[0];
    }
    *slot = nn::QuantLinear::from_dense(*dense, Tensor::from({w.dim(0)}, wq.scale), wb, act);
    per_layer[name] = {{"wbits", wb}, {"abits", ab}, {"dynamic", dyn}};
  }
  return {{"method", s.dynamic ? "dynamic" : "static"},
          {"requested", {{"wbits", s.wbits}, {"abits", s.abits}, {"edge_bits", s.edge_bits}}},
          {"cpu_vnni", kernels::cpu_has_vnni()},
          {"weights", {{"granularity", "channel"}, {"symmetric", true}, {"observer", observer_name(s.weight_observer)}}},
          {"activations",
           {{"granularity", s.dynamic ? "token" : "tensor"}, {"symmetric", false},
            {"observer", s.dynamic ? "runtime" : observer_name(s.act_observer)}}},
          {"float_points", {"attention q/k/v", "softmax probabilities", "LayerNorm", "GELU", "residual adds"}},
          {"calibration_images", s.dynamic ? 0 : int64_t(calib_images.size())},
          {"layers", per_layer}};
}

}  // namespace vs::quant
