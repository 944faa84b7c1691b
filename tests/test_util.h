// Shared helpers for the tests: temporary folders, ../shared and python3-torch discovery, running
// the CLI.
#pragma once
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/image.h"
#include "io/safetensors.h"

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

// A tiny valid ViT (2 blocks, 32 wide, 16x16 images, 8x8 patches) written by vitshrink itself.
inline std::string write_tiny_model(const TempDir& tmp, const std::string& name = "tiny") {
  std::string dir = tmp / name;
  std::filesystem::create_directories(dir);
  StateDict sd;
  const int64_t C = 32, T = 5, K = 10, P = 8;
  unsigned seed = 1;
  auto r = [&](Shape s) { return random_tensor(std::move(s), seed++, 0.1f); };
  sd["cls_token"] = r({1, 1, C});
  sd["pos_embed"] = r({1, T, C});
  sd["patch_embed.proj.weight"] = r({C, 3, P, P});
  sd["patch_embed.proj.bias"] = r({C});
  for (int b = 0; b < 2; ++b) {
    std::string p = "blocks." + std::to_string(b) + ".";
    for (auto n : {"norm1", "norm2"}) {
      sd[p + n + ".weight"] = r({C});
      sd[p + n + ".bias"] = r({C});
    }
    sd[p + "attn.qkv.weight"] = r({3 * C, C});
    sd[p + "attn.qkv.bias"] = r({3 * C});
    sd[p + "attn.proj.weight"] = r({C, C});
    sd[p + "attn.proj.bias"] = r({C});
    sd[p + "mlp.fc1.weight"] = r({4 * C, C});
    sd[p + "mlp.fc1.bias"] = r({4 * C});
    sd[p + "mlp.fc2.weight"] = r({C, 4 * C});
    sd[p + "mlp.fc2.bias"] = r({C});
  }
  sd["norm.weight"] = r({C});
  sd["norm.bias"] = r({C});
  sd["head.weight"] = r({K, C});
  sd["head.bias"] = r({K});
  save_safetensors(dir + "/model.safetensors", sd);
  std::ofstream(dir + "/config.json") << R"({"architecture": "vit_tiny_patch8_16", "num_classes": 10,
    "model_args": {"patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2, "img_size": 16}})";
  return dir;
}

// n small random PNG images (a few sizes) in `dir`, for calibration in tests.
inline std::vector<std::string> random_images(const TempDir& dir, int n) {
  std::vector<std::string> out;
  std::mt19937 rng(7);
  for (int i = 0; i < n; ++i) {
    Image im;
    im.width = 20 + i % 5;
    im.height = 18 + i % 3;
    im.pixels.resize(size_t(im.width) * im.height * 3);
    for (auto& p : im.pixels) p = uint8_t(rng() % 256);
    out.push_back(dir / ("img" + std::to_string(i) + ".png"));
    save_png(out.back(), im);
  }
  return out;
}

}  // namespace vs::test
