// timm's eval transform, bit-compatible with PIL + torchvision:
//   Resize(floor(input_size / crop_pct), interpolation)  # short side, PIL antialiased filter
//   CenterCrop(input_size) -> ToTensor -> Normalize(mean, std)
#pragma once
#include <array>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/image.h"

namespace vs {

struct PreprocessConfig {
  int input_size = 224;
  double crop_pct = 0.875;
  std::string interpolation = "bicubic";  // "bicubic" | "bilinear" | "nearest"
  std::array<float, 3> mean{0.485f, 0.456f, 0.406f};
  std::array<float, 3> std{0.229f, 0.224f, 0.225f};
  bool operator==(const PreprocessConfig&) const = default;
};

// PIL Image.resize(size, filter) on 8-bit RGB, same fixed-point arithmetic and rounding
// (horizontal pass, then vertical).
Image resize_pil(const Image& img, int out_w, int out_h, const std::string& interpolation);

// Returns a [3, input_size, input_size] float tensor.
Tensor preprocess(const Image& img, const PreprocessConfig& cfg);

// Loads, decodes and preprocesses images in parallel into [B, 3, S, S]; the first failure is
// rethrown (naming its file).
Tensor load_batch(const std::vector<std::string>& paths, const PreprocessConfig& cfg);

}  // namespace vs
