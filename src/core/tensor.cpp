#include "core/tensor.h"

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

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

namespace {

// Freed buffers are kept by size and handed out again. A forward pass allocates the same scratch
// sizes every time, and glibc's malloc/free of multi-megabyte blocks (mmap, page faults,
// consolidation) took ~8% of a quantised ViT-Ti forward pass (perf, batch 1). Bounded: at most
// kMaxPooled bytes are kept; beyond that buffers go back to the system. 1 GiB because SAM's
// encoder at 1024 x 1024 cycles through more than 256 MiB of scratch per image (with 256 MiB,
// page faults were 16 % of its W8A8 time).
class BufferPool {
 public:
  static constexpr size_t kMaxPooled = size_t(1024) << 20;

  void* get(size_t bytes) {
    {
      std::lock_guard lock(mu_);
      auto it = free_.find(bytes);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        pooled_ -= bytes;
        return p;
      }
    }
    void* p = std::aligned_alloc(64, bytes);
    if (!p) throw std::bad_alloc();
    return p;
  }

  void put(void* p, size_t bytes) {
    {
      std::lock_guard lock(mu_);
      if (pooled_ + bytes <= kMaxPooled) {
        free_[bytes].push_back(p);
        pooled_ += bytes;
        return;
      }
    }
    std::free(p);
  }

 private:
  std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;
  size_t pooled_ = 0;
};

BufferPool& pool() {
  static BufferPool* p = new BufferPool;  // never destroyed: tensors may outlive static destructors
  return *p;
}

}  // namespace

Tensor::Tensor(Shape shape, DType dtype) : Tensor(std::move(shape), dtype, true) {}

Tensor Tensor::empty(Shape shape, DType dtype) { return Tensor(std::move(shape), dtype, false); }

Tensor::Tensor(Shape shape, DType dtype, bool zero) : shape_(std::move(shape)), dtype_(dtype) {
  for (auto d : shape_) check(d >= 0, "negative dimension in shape " + shape_str(shape_));
  size_t bytes = nbytes();
  const size_t alloc = bytes ? (bytes + 63) / 64 * 64 : 64;
  void* p = pool().get(alloc);
  if (zero) std::memset(p, 0, alloc);
  buf_ = std::shared_ptr<void>(p, [alloc](void* q) { pool().put(q, alloc); });
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
