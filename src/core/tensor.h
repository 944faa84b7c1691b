// A dense, row-major, 64-byte-aligned n-d array. Copies share the buffer (like a handle); use
// clone() for a deep copy. Models and compressors pass Tensors around; kernels take raw pointers.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace vs {

using Shape = std::vector<int64_t>;

int64_t numel(const Shape& s);
std::string shape_str(const Shape& s);  // "[3, 224, 224]"

class Tensor {
 public:
  Tensor() = default;
  Tensor(Shape shape, DType dtype = DType::f32);  // zero-initialised

  static Tensor zeros(Shape shape, DType dtype = DType::f32) { return Tensor(std::move(shape), dtype); }
  // Uninitialised: for scratch buffers the next kernel overwrites completely (hot paths).
  static Tensor empty(Shape shape, DType dtype = DType::f32);
  static Tensor from(Shape shape, const std::vector<float>& values);

  const Shape& shape() const { return shape_; }
  int64_t dim(int i) const { return shape_.at(i < 0 ? shape_.size() + i : i); }
  int ndim() const { return int(shape_.size()); }
  int64_t numel() const { return vs::numel(shape_); }
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }
  bool defined() const { return buf_ != nullptr; }

  template <class T> T* data() { return static_cast<T*>(buf_.get()); }
  template <class T> const T* data() const { return static_cast<const T*>(buf_.get()); }
  float* f32() { return data<float>(); }
  const float* f32() const { return data<float>(); }
  void* raw() { return buf_.get(); }
  const void* raw() const { return buf_.get(); }

  // Same buffer, new shape (numel must match).
  Tensor reshape(Shape shape) const;
  Tensor clone() const;

 private:
  Tensor(Shape shape, DType dtype, bool zero);
  Shape shape_;
  DType dtype_ = DType::f32;
  std::shared_ptr<void> buf_;
};

}  // namespace vs
