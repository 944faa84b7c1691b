// Calibration capture: temporarily wraps chosen Linear layers of a model so that every forward
// pass reports each layer's input and output to a callback. Every compression method that learns
// from calibration data (quantisation ranges, low-rank factors, pruning scores) uses this one
// mechanism. The original layers are put back when the Capture is destroyed, also on an
// exception, so a failed calibration never leaves a half-wrapped model.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "models/vit.h"
#include "nn/linear.h"

namespace vs::compress {

// One forward call of one layer: input x [rows, in], output y [rows, out] (after the epilogue).
struct Captured {
  const std::string& name;
  const float* x;
  const float* y;
  int64_t rows, in, out;
};
using CaptureFn = std::function<void(const Captured&)>;

class Capture {
 public:
  // Wraps the model's Linear layers whose names `select` accepts (all when empty).
  Capture(models::ViT& model, CaptureFn fn, std::function<bool(const std::string&)> select = {});
  // The same for any model's named Linear slots (e.g. SamModel::linears()).
  Capture(const std::vector<std::pair<std::string, std::unique_ptr<nn::Linear>*>>& layers, CaptureFn fn,
          std::function<bool(const std::string&)> select = {});
  ~Capture();  // restores the original layers
  Capture(const Capture&) = delete;
  Capture& operator=(const Capture&) = delete;

  const std::vector<std::string>& names() const { return names_; }

 private:
  CaptureFn fn_;  // the wrappers refer to it, so it lives as long as they do
  std::vector<std::pair<std::string, std::unique_ptr<nn::Linear>*>> slots_;
  std::vector<std::string> names_;
};

// The input [rows, in] (row-major) that the layer `name` of `model` gets on `images`; the
// forward pass stops right after it. For methods that refit layers one at a time on the inputs
// the already-compressed model gives them.
std::vector<float> layer_input(models::ViT& model, const std::string& name, const Tensor& images, int64_t& in,
                               int64_t& rows);

}  // namespace vs::compress
