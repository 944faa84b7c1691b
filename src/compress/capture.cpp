#include "compress/capture.h"

#include "core/error.h"

namespace vs::compress {
namespace {

struct StopForward {};  // ends a calibration pass (layer_input) once the layer of interest has run

// Stands in for a Linear: runs it unchanged, then reports its input and output.
class CapturingLinear final : public nn::Linear {
 public:
  CapturingLinear(std::string name, std::unique_ptr<nn::Linear> inner, const CaptureFn& fn)
      : name_(std::move(name)), inner_(std::move(inner)), fn_(fn) {}
  void forward(const float* x, float* y, int64_t M, nn::Epilogue ep) const override {
    inner_->forward(x, y, M, ep);
    fn_(Captured{name_, x, y, M, in_features(), out_features()});
  }
  int64_t in_features() const override { return inner_->in_features(); }
  int64_t out_features() const override { return inner_->out_features(); }
  std::string kind() const override { return inner_->kind(); }
  int64_t num_params() const override { return inner_->num_params(); }
  int64_t bytes() const override { return inner_->bytes(); }
  int64_t macs_per_row() const override { return inner_->macs_per_row(); }
  void save(const std::string& prefix, StateDict& out) const override { inner_->save(prefix, out); }
  std::unique_ptr<nn::Linear> release() { return std::move(inner_); }

 private:
  std::string name_;
  std::unique_ptr<nn::Linear> inner_;
  const CaptureFn& fn_;
};

}  // namespace

Capture::Capture(models::ViT& model, CaptureFn fn, std::function<bool(const std::string&)> select)
    : Capture(model.linears(), std::move(fn), std::move(select)) {}

Capture::Capture(const std::vector<std::pair<std::string, std::unique_ptr<nn::Linear>*>>& layers, CaptureFn fn,
                 std::function<bool(const std::string&)> select)
    : fn_(std::move(fn)) {
  for (auto& [name, slot] : layers) {
    if (select && !select(name)) continue;
    *slot = std::make_unique<CapturingLinear>(name, std::move(*slot), fn_);
    slots_.emplace_back(name, slot);
    names_.push_back(name);
  }
}

Capture::~Capture() {
  for (auto& [name, slot] : slots_) *slot = static_cast<CapturingLinear*>(slot->get())->release();
}

std::vector<float> layer_input(models::ViT& model, const std::string& name, const Tensor& images, int64_t& in,
                               int64_t& rows) {
  std::vector<float> x;
  bool seen = false;
  {
    Capture cap(model, [&](const Captured& c) {
      x.assign(c.x, c.x + c.rows * c.in), in = c.in, rows = c.rows, seen = true;
      throw StopForward{};
    }, [&](const std::string& n) { return n == name; });
    try {
      model.forward(images);
    } catch (const StopForward&) {
    }
  }
  check(seen, "calibration: the model has no layer '" + name + "'");
  return x;
}

}  // namespace vs::compress
