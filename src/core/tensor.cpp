#include "core/tensor.h"

#include <cstdlib>
#include <cstring>

#include "core/error.h"

namespace vs {

int64_t numel(const Shape& s) {
  int64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

Tensor::Tensor(Shape shape, DType dtype) : Tensor(std::move(shape), dtype, true) {}

Tensor Tensor::empty(Shape shape, DType dtype) { return Tensor(std::move(shape), dtype, false); }

Tensor::Tensor(Shape shape, DType dtype, bool zero) : shape_(std::move(shape)), dtype_(dtype) {
  for (auto d : shape_) check(d >= 0, "negative dimension in shape " + shape_str(shape_));
  size_t bytes = nbytes();
  size_t alloc = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, alloc ? alloc : 64);
  if (!p) throw std::bad_alloc();
  if (zero) std::memset(p, 0, alloc ? alloc : 64);
  buf_ = std::shared_ptr<void>(p, [](void* q) { std::free(q); });
}

Tensor Tensor::from(Shape shape, const std::vector<float>& values) {
  Tensor t(std::move(shape));
  check(int64_t(values.size()) == t.numel(), "Tensor::from: value count does not match shape");
  std::memcpy(t.raw(), values.data(), values.size() * 4);
  return t;
}

Tensor Tensor::reshape(Shape shape) const {
  check(vs::numel(shape) == numel(),
        "cannot reshape " + shape_str(shape_) + " to " + shape_str(shape));
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::clone() const {
  Tensor t(shape_, dtype_);
  if (buf_) std::memcpy(t.raw(), raw(), nbytes());
  return t;
}

}  // namespace vs
