#include "nn/lowrank_linear.h"

#include "core/error.h"

namespace vs::nn {

LowRankLinear::LowRankLinear(std::unique_ptr<Linear> d, std::unique_ptr<Linear> u)
    : down(std::move(d)), up(std::move(u)) {
  check(down && up && down->out_features() == up->in_features(),
        "LowRankLinear: factor shapes do not chain (down out != up in)");
}

void LowRankLinear::forward(const float* x, float* y, int64_t M, Epilogue ep) const {
  Tensor h = Tensor::empty({M, rank()});
  down->forward(x, h.f32(), M, Epilogue::none);
  up->forward(h.f32(), y, M, ep);
}

void LowRankLinear::save(const std::string& prefix, StateDict& out) const {
  down->save(prefix + ".down", out);
  up->save(prefix + ".up", out);
}

std::unique_ptr<Linear> load_layer(ParamReader& p, const std::string& prefix, int64_t out, int64_t in,
                                   bool bias) {
  auto it = p.linear_specs.find(prefix);
  if (it == p.linear_specs.end() || it->second.rank <= 0) return load_linear(p, prefix, out, in, bias);
  const int64_t r = it->second.rank;
  check(r <= std::min(out, in), p.source() + ": layer '" + prefix + "' has rank " + std::to_string(r) +
                                    " > min(out, in) = " + std::to_string(std::min(out, in)));
  return std::make_unique<LowRankLinear>(load_linear(p, prefix + ".down", r, in, false),
                                         load_linear(p, prefix + ".up", out, r, bias));
}

}  // namespace vs::nn
