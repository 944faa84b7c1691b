#include "compress/quant/ptq.h"

#include <algorithm>
#include <map>

#include "compress/capture.h"
#include "core/error.h"
#include "core/progress.h"
#include "kernels/gemm_int8.h"
#include "io/preprocess.h"
#include "nn/quant_linear.h"

namespace vs::quant {
namespace {

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
  std::map<std::string, ActObserver> observers;
  if (!s.dynamic) {
    compress::Capture cap(model, [&](const compress::Captured& c) { observers.at(c.name).observe(c.x, c.rows, c.in); });
    for (auto& n : cap.names()) observers[n];  // made up front: the callback only looks up
    Progress bar("calibrate", int64_t(calib_images.size()));
    for (size_t i = 0; i < calib_images.size(); i += size_t(s.batch)) {
      size_t e = std::min(calib_images.size(), i + size_t(s.batch));
      std::vector<std::string> paths(calib_images.begin() + long(i), calib_images.begin() + long(e));
      model.forward(load_batch(paths, model.cfg.pre));
      if (progress) bar.update(int64_t(e));
    }
    bar.finish();
  }

  // 2. Replace each Linear by its quantised version.
  nlohmann::json per_layer = nlohmann::json::object();
  for (auto& [name, slot] : layers) {
    std::unique_ptr<nn::Linear> dense_owner = std::move(*slot);
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
      QParams aq = observers.at(name).finalize(ab, false, s.act_observer, s.percentile);
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
