// Shared helpers for the tests: temporary folders, ../shared and python3-torch discovery, running
// the CLI.
#pragma once
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "core/tensor.h"

namespace vs::test {

inline std::string source_dir() { return VS_SOURCE_DIR; }
inline std::string cli() { return VS_CLI_PATH; }
inline std::string shared_dir() { return source_dir() + "/../shared"; }
inline std::string vit_tiny_dir() {
  return shared_dir() + "/models/vit_tiny_patch16_224.augreg_in21k_ft_in1k";
}
inline std::string imagenet_dir() { return shared_dir() + "/data/imagenet-sample"; }
inline bool have_shared() { return std::filesystem::exists(vit_tiny_dir() + "/model.safetensors"); }

// Debian's python3-torch is the independent reference (not the pyenv python3 on PATH).
inline bool have_torch() {
  static int ok = -1;
  if (ok < 0) ok = std::system("/usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1") == 0;
  return ok == 1;
}

// Runs a shell command, returns its exit status (not the raw wait status).
inline int run(const std::string& cmd) {
  int st = std::system(cmd.c_str());
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

// Runs a command and returns its stdout+stderr.
inline std::string run_output(const std::string& cmd, int* status = nullptr) {
  std::string out;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int st = pclose(p);
  if (status) *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
  return out;
}

// A fresh temporary folder, removed when the object dies.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "vitshrink-test-XXXXXX").string();
    path = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

inline Tensor random_tensor(Shape shape, unsigned seed, float stddev = 1.f) {
  Tensor t(std::move(shape));
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, stddev);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = nd(rng);
  return t;
}

// Raw float32 + a JSON sidecar with the shape (what tests/ref/*.py read).
inline void write_raw(const std::string& path, const Tensor& t) {
  std::ofstream(path, std::ios::binary).write(static_cast<const char*>(t.raw()), std::streamsize(t.nbytes()));
  std::ofstream js(path + ".json");
  js << "{\"shape\": [";
  for (int i = 0; i < t.ndim(); ++i) js << (i ? ", " : "") << t.dim(i);
  js << "]}";
}

inline Tensor read_raw(const std::string& path, Shape shape) {
  Tensor t(std::move(shape));
  std::ifstream(path, std::ios::binary).read(static_cast<char*>(t.raw()), std::streamsize(t.nbytes()));
  return t;
}

inline float max_abs_diff(const Tensor& a, const Tensor& b) {
  float m = 0;
  for (int64_t i = 0; i < a.numel(); ++i) m = std::max(m, std::abs(a.f32()[i] - b.f32()[i]));
  return m;
}

}  // namespace vs::test
