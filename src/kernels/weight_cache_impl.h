// WeightCache's inside, shared by the kernels that pack weights (gemm.cpp, conv.cpp): copies of
// one weight tensor reordered into the layouts oneDNN primitives asked for, made once each.
#pragma once
#include <dnnl.hpp>
#include <mutex>
#include <utility>
#include <vector>

#include "kernels/dnnl_engine.h"
#include "kernels/gemm.h"

namespace vs::kernels {

struct WeightCache::Impl {
  std::mutex mu;
  std::vector<std::pair<dnnl::memory::desc, dnnl::memory>> packed;

  // The weights `w` (laid out as `plain`) in layout `want`, reordered the first time.
  dnnl::memory get(const dnnl::memory::desc& want, const dnnl::memory::desc& plain, const void* w) {
    std::lock_guard lock(mu);
    for (auto& [d, m] : packed)
      if (d == want) return m;
    dnnl::memory src(plain, dnnl_engine(), const_cast<void*>(w)), out(want, dnnl_engine());
    dnnl::reorder(src, out).execute(dnnl_stream(), src, out);
    dnnl_stream().wait();
    packed.emplace_back(want, out);
    return out;
  }
};

}  // namespace vs::kernels
