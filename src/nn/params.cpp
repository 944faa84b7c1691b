#include "nn/params.h"

#include "core/error.h"

namespace vs::nn {

Tensor ParamReader::get_any(const std::string& name) {
  auto it = sd_.find(name);
  check(it != sd_.end(), source_ + ": missing tensor '" + name + "'");
  used_.insert(name);
  return it->second;
}

Tensor ParamReader::get(const std::string& name, const Shape& expected) {
  Tensor t = get_any(name);
  check(t.shape() == expected, source_ + ": tensor '" + name + "' has shape " + shape_str(t.shape()) +
                                   ", expected " + shape_str(expected) + " (config mismatch?)");
  check(t.dtype() == DType::f32, source_ + ": tensor '" + name + "' must be floating point");
  return t;
}

void ParamReader::check_all_used() const {
  std::string first;
  size_t extra = 0;
  for (auto& [name, t] : sd_)
    if (!used_.count(name)) {
      if (first.empty()) first = name;
      ++extra;
    }
  check(extra == 0, source_ + ": unexpected tensor '" + first + "'" +
                        (extra > 1 ? " (and " + std::to_string(extra - 1) + " more)" : "") +
                        " - checkpoint does not match the architecture");
}

}  // namespace vs::nn
