// The one oneDNN CPU engine and stream every kernel in src/kernels uses, and the primitive cache
// they share.
#pragma once
#include <dnnl.hpp>
#include <map>
#include <mutex>

namespace vs::kernels {

dnnl::engine& dnnl_engine();
dnnl::stream& dnnl_stream();

// Finds the primitive for `key` in `cache`, building it with make() the first time. Creating a
// oneDNN primitive costs more than running a small GEMM, so each shape is built once.
// Thread-safe; map nodes are stable, so the reference stays valid.
template <class Key, class Value, class Make>
Value& cached_primitive(std::map<Key, Value>& cache, std::mutex& mu, const Key& key, Make make) {
  std::lock_guard lock(mu);
  auto it = cache.find(key);
  if (it == cache.end()) it = cache.emplace(key, make()).first;
  return it->second;
}

}  // namespace vs::kernels
