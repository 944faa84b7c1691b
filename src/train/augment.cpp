#include "train/augment.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"

namespace vs::train {
namespace {

double uniform(std::mt19937_64& rng, double a, double b) {
  return a + (b - a) * double(rng() >> 11) * 0x1.0p-53;  // platform-independent, unlike std::uniform_real
}

double beta(std::mt19937_64& rng, double alpha) {
  std::gamma_distribution<double> g(alpha, 1.0);
  const double x = g(rng), y = g(rng);
  return x + y > 0 ? x / (x + y) : 0.5;
}

// torchvision's RandomResizedCrop parameters: area fraction and log-uniform aspect ratio, ten
// tries, then a centre crop as fallback.
Image random_resized_crop(const Image& img, int S, double min_scale, const std::string& filter,
                          std::mt19937_64& rng) {
  const double area = double(img.width) * img.height;
  int w = img.width, h = img.height, x0 = 0, y0 = 0;
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target = area * uniform(rng, min_scale, 1.0);
    const double ratio = std::exp(uniform(rng, std::log(3.0 / 4.0), std::log(4.0 / 3.0)));
    const int cw = int(std::lround(std::sqrt(target * ratio))), ch = int(std::lround(std::sqrt(target / ratio)));
    if (cw > 0 && ch > 0 && cw <= img.width && ch <= img.height) {
      w = cw;
      h = ch;
      x0 = int(uniform(rng, 0, double(img.width - w + 1)));
      y0 = int(uniform(rng, 0, double(img.height - h + 1)));
      break;
    }
  }
  Image crop;
  crop.width = w;
  crop.height = h;
  crop.pixels.resize(size_t(w) * h * 3);
  for (int y = 0; y < h; ++y) std::memcpy(crop.row(y), img.row(y0 + y) + size_t(x0) * 3, size_t(w) * 3);
  return resize_pil(crop, S, S, filter);
}

}  // namespace

Tensor augment_batch(const std::vector<const Image*>& images, const PreprocessConfig& pre,
                     const AugmentSettings& s, std::mt19937_64& rng) {
  const int64_t B = int64_t(images.size()), S = pre.input_size, plane = S * S;
  Tensor out({B, 3, S, S});
  // Draw every random number first, in a fixed order, then do the pixel work in parallel.
  std::vector<std::mt19937_64> per_image;
  std::vector<bool> flip;
  for (int64_t i = 0; i < B; ++i) {
    per_image.emplace_back(rng());
    flip.push_back(s.flip && (rng() & 1));
  }
  std::exception_ptr err;
#pragma omp parallel for schedule(dynamic)
  for (int64_t i = 0; i < B; ++i) {
    try {
      const Image& src = *images[size_t(i)];
      check(src.channels == 3, "augment: expected RGB images");
      Image im = random_resized_crop(src, int(S), s.min_scale, pre.interpolation, per_image[size_t(i)]);
      float* dst = out.f32() + i * 3 * plane;
      for (int64_t y = 0; y < S; ++y)
        for (int64_t x = 0; x < S; ++x) {
          const uint8_t* p = im.row(int(y)) + size_t(flip[size_t(i)] ? S - 1 - x : x) * 3;
          for (int c = 0; c < 3; ++c)  // ToTensor + Normalize, as in preprocess()
            dst[c * plane + y * S + x] = (float(p[c]) / 255.0f - pre.mean[size_t(c)]) / pre.std[size_t(c)];
        }
    } catch (...) {
#pragma omp critical
      if (!err) err = std::current_exception();
    }
  }
  if (err) std::rethrow_exception(err);
  if (B < 2 || uniform(rng, 0, 1) >= s.mix_prob) return out;
  // Mix image i with image B-1-i of the original batch.
  Tensor orig = out.clone();
  const float* o = orig.f32();
  float* d = out.f32();
  if (rng() & 1) {  // mixup
    const float lam = float(beta(rng, s.mixup_alpha));
    for (int64_t i = 0; i < B; ++i)
      for (int64_t k = 0; k < 3 * plane; ++k)
        d[i * 3 * plane + k] = lam * o[i * 3 * plane + k] + (1.f - lam) * o[(B - 1 - i) * 3 * plane + k];
  } else {  // cutmix: a box of area (1 - lambda) from the partner image
    const double lam = beta(rng, s.cutmix_alpha), cut = std::sqrt(1.0 - lam);
    const int64_t bw = int64_t(double(S) * cut), bh = bw;
    const int64_t cx = int64_t(uniform(rng, 0, double(S))), cy = int64_t(uniform(rng, 0, double(S)));
    const int64_t x0 = std::clamp(cx - bw / 2, int64_t(0), S), x1 = std::clamp(cx + bw / 2, int64_t(0), S);
    const int64_t y0 = std::clamp(cy - bh / 2, int64_t(0), S), y1 = std::clamp(cy + bh / 2, int64_t(0), S);
    for (int64_t i = 0; i < B; ++i)
      for (int64_t c = 0; c < 3; ++c)
        for (int64_t y = y0; y < y1; ++y)
          for (int64_t x = x0; x < x1; ++x)
            d[i * 3 * plane + c * plane + y * S + x] = o[(B - 1 - i) * 3 * plane + c * plane + y * S + x];
  }
  return out;
}

}  // namespace vs::train
