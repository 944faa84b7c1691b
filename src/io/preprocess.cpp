// PIL's Image.resize (libImaging/Resample.c for BILINEAR / BICUBIC, the nearest-neighbour affine
// scale of libImaging/Geometry.c for NEAREST) and timm's eval transform on top of it. Every
// rounding step follows PIL so the output pixels are byte-identical; the reasons are noted where
// an expression might look needlessly particular.
#include <cstring>
#include <exception>
#include "io/preprocess.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/error.h"

namespace vs {
namespace {

// Weights are fixed point with 22 fractional bits: 8 bits of pixel value plus 2 bits of headroom
// for filters whose lobes sum above 1 must fit a 32-bit accumulator.
constexpr int kPrecisionBits = 32 - 8 - 2;

struct Filter {
  double (*weight)(double x);
  double support;  // half-width of the kernel at scale 1
};

// Input window and fixed-point weights of every output position along one axis.
struct Taps {
  int ksize = 0;                 // stride of `weights` (the widest window)
  std::vector<int> first;        // first input index of each window
  std::vector<int> count;        // window length
  std::vector<int32_t> weights;  // out_size * ksize
};

// PIL is compiled without fused multiply-add; letting the compiler fuse a*b+c here (it does
// under -march=native) would change weights in the last bit and, rarely, a pixel.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif

double bilinear_weight(double x) {
  x = std::fabs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

// Keys' cubic convolution with a = -0.5, in PIL's algebraic form (the form fixes the rounding).
double bicubic_weight(double x) {
  constexpr double a = -0.5;
  x = std::fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

int to_fixed(double k) {
  // Round half away from zero, as PIL's normalize_coeffs_8bpc.
  return k < 0 ? int(-0.5 + k * (1 << kPrecisionBits)) : int(0.5 + k * (1 << kPrecisionBits));
}

// PIL's precompute_coeffs: a filter stretched by the downscale factor (antialiasing), centred on
// each output pixel's centre, truncated to whole input pixels and normalised to sum 1.
Taps make_taps(int in_size, int out_size, const Filter& filter) {
  const double scale = double(in_size) / out_size;
  const double filterscale = std::max(scale, 1.0);
  const double support = filter.support * filterscale;
  const double ss = 1.0 / filterscale;
  Taps t;
  t.ksize = int(std::ceil(support)) * 2 + 1;
  t.first.resize(out_size);
  t.count.resize(out_size);
  t.weights.assign(size_t(out_size) * t.ksize, 0);
  std::vector<double> k(t.ksize);
  for (int i = 0; i < out_size; ++i) {
    const double center = (i + 0.5) * scale;
    // int() truncates toward zero, as in PIL (the "+ 0.5" is PIL's rounding of the bounds).
    const int xmin = std::max(int(center - support + 0.5), 0);
    const int n = std::min(int(center + support + 0.5), in_size) - xmin;
    double sum = 0.0;
    for (int x = 0; x < n; ++x) {
      k[x] = filter.weight((x + xmin - center + 0.5) * ss);
      sum += k[x];
    }
    for (int x = 0; x < n; ++x) {
      const double w = sum != 0.0 ? k[x] / sum : k[x];
      t.weights[size_t(i) * t.ksize + x] = to_fixed(w);
    }
    t.first[i] = xmin;
    t.count[i] = n;
  }
  return t;
}

#if defined(__clang__)
#pragma clang fp contract(on)
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif

Filter filter_for(const std::string& interpolation) {
  if (interpolation == "bicubic") return {bicubic_weight, 2.0};
  if (interpolation == "bilinear") return {bilinear_weight, 1.0};
  throw Error("unknown interpolation '" + interpolation +
              "' (expected bicubic, bilinear or nearest)");
}

// Accumulators start at one half so the final shift rounds to nearest; the clamp replaces PIL's
// lookup table (same values over its range).
constexpr int32_t kHalf = 1 << (kPrecisionBits - 1);

inline uint8_t clip8(int32_t acc) {
  return uint8_t(std::clamp(acc >> kPrecisionBits, 0, 255));  // >> floors, as in PIL
}

// Horizontal pass over input rows [y0, y0 + out.height).
template <int C>
void resample_rows(const Image& in, int y0, const Taps& t, Image& out) {
  for (int y = 0; y < out.height; ++y) {
    const uint8_t* src = in.row(y0 + y);
    uint8_t* dst = out.row(y);
    for (int x = 0; x < out.width; ++x) {
      const int32_t* k = &t.weights[size_t(x) * t.ksize];
      const uint8_t* s = src + size_t(t.first[x]) * C;
      int32_t acc[C];
      for (int c = 0; c < C; ++c) acc[c] = kHalf;
      for (int i = 0; i < t.count[x]; ++i)
        for (int c = 0; c < C; ++c) acc[c] += s[i * C + c] * k[i];
      for (int c = 0; c < C; ++c) dst[x * C + c] = clip8(acc[c]);
    }
  }
}

// Vertical pass; window starts are shifted by -y0 when `in` holds only rows y0.. of the source.
// Integer sums do not depend on the order of addition, so whole rows are accumulated at once
// (vectorisable) and the result still equals PIL's pixel-by-pixel loop.
void resample_columns(const Image& in, int y0, const Taps& t, Image& out) {
  const size_t n = size_t(in.width) * in.channels;
  std::vector<int32_t> acc(n);
  for (int y = 0; y < out.height; ++y) {
    std::fill(acc.begin(), acc.end(), kHalf);
    const int32_t* k = &t.weights[size_t(y) * t.ksize];
    for (int i = 0; i < t.count[y]; ++i) {
      const uint8_t* src = in.row(t.first[y] - y0 + i);
      const int32_t w = k[i];
      for (size_t j = 0; j < n; ++j) acc[j] += src[j] * w;
    }
    uint8_t* dst = out.row(y);
    for (size_t j = 0; j < n; ++j) dst[j] = clip8(acc[j]);
  }
}

Image blank(int width, int height, int channels) {
  Image img;
  img.width = width;
  img.height = height;
  img.channels = channels;
  img.pixels.assign(size_t(width) * height * channels, 0);
  return img;
}

// PIL's ImagingResampleInner: the horizontal pass runs only on the rows the vertical pass reads,
// into an 8-bit image; a pass is skipped when its size does not change.
Image resample(const Image& in, int out_w, int out_h, const Filter& filter) {
  const Taps vert = make_taps(in.height, out_h, filter);
  Image cur;
  const Image* src = &in;
  int y0 = 0;
  if (out_w != in.width) {
    const Taps horiz = make_taps(in.width, out_w, filter);
    y0 = vert.first.front();
    const int y1 = vert.first.back() + vert.count.back();
    cur = blank(out_w, y1 - y0, in.channels);
    if (in.channels == 3) resample_rows<3>(in, y0, horiz, cur);
    else resample_rows<1>(in, y0, horiz, cur);
    src = &cur;
  }
  if (out_h == in.height) return src == &in ? in : cur;
  Image out = blank(out_w, out_h, in.channels);
  resample_columns(*src, y0, vert, out);
  return out;
}

// PIL's NEAREST resize is an affine scale (ImagingScaleAffine): the source coordinate of each
// output pixel is a running double sum of the step, which is kept here because it can round
// differently from (i + 0.5) * step.
std::vector<int> nearest_index(int in_size, int out_size) {
  const double step = double(in_size) / out_size;
  double pos = step * 0.5;
  std::vector<int> index(out_size);
  for (int i = 0; i < out_size; ++i) {
    index[i] = pos < 0.0 ? -1 : int(pos);
    pos += step;
  }
  return index;
}

Image resize_nearest(const Image& in, int out_w, int out_h) {
  const std::vector<int> xs = nearest_index(in.width, out_w), ys = nearest_index(in.height, out_h);
  const int C = in.channels;
  Image out = blank(out_w, out_h, C);
  for (int y = 0; y < out_h; ++y) {
    if (ys[y] < 0 || ys[y] >= in.height) continue;  // PIL fills with 0; unreachable in practice
    const uint8_t* src = in.row(ys[y]);
    uint8_t* dst = out.row(y);
    for (int x = 0; x < out_w; ++x)
      if (xs[x] >= 0 && xs[x] < in.width)
        std::copy_n(src + size_t(xs[x]) * C, C, dst + size_t(x) * C);
  }
  return out;
}

// Python's round() for the halves produced by (a - b) / 2.0: ties go to the even integer.
int round_half_even(double v) { return int(std::nearbyint(v)); }

// torchvision Resize(size) with an int size: the short side becomes `size`, the long side
// int(size * long / short) (true division, then truncation).
std::pair<int, int> short_side_size(int w, int h, int size) {
  const int short_side = std::min(w, h), long_side = std::max(w, h);
  const int scaled = int(double(int64_t(size) * long_side) / short_side);
  return w <= h ? std::pair{size, scaled} : std::pair{scaled, size};
}

// torchvision CenterCrop: offset int(round((dim - crop) / 2.0)); an image smaller than the crop
// is first zero-padded by (crop - dim) // 2 before it, which is a negative offset here.
int crop_offset(int dim, int crop) {
  return dim >= crop ? round_half_even((dim - crop) / 2.0) : -((crop - dim) / 2);
}

}  // namespace

Image resize_pil(const Image& img, int out_w, int out_h, const std::string& interpolation) {
  check(img.channels == 1 || img.channels == 3,
        "resize: expected a 1- or 3-channel image, got " + std::to_string(img.channels));
  check(img.width > 0 && img.height > 0 && out_w > 0 && out_h > 0,
        "resize: sizes must be positive (" + std::to_string(img.width) + "x" +
            std::to_string(img.height) + " -> " + std::to_string(out_w) + "x" +
            std::to_string(out_h) + ")");
  check(img.pixels.size() == size_t(img.width) * img.height * img.channels,
        "resize: image buffer does not match its size");
  if (interpolation == "nearest") {
    if (out_w == img.width && out_h == img.height) return img;
    return resize_nearest(img, out_w, out_h);
  }
  return resample(img, out_w, out_h, filter_for(interpolation));
}

Tensor preprocess(const Image& img, const PreprocessConfig& cfg) {
  check(img.channels == 3, "preprocess: expected an RGB image, got " +
                               std::to_string(img.channels) + " channels");
  check(cfg.input_size > 0 && cfg.crop_pct > 0,
        "preprocess: input_size and crop_pct must be positive");
  const int S = cfg.input_size;
  const int scale_size = int(std::floor(S / cfg.crop_pct));
  const auto [rw, rh] = short_side_size(img.width, img.height, scale_size);
  const Image resized = resize_pil(img, rw, rh, cfg.interpolation);
  const int top = crop_offset(rh, S), left = crop_offset(rw, S);

  // ToTensor then Normalize, both in float32: (float(v) / 255 - mean) / std. Only 256 values
  // per channel exist, so they are tabulated (same float operations, same results).
  float lut[3][256];
  for (int c = 0; c < 3; ++c)
    for (int v = 0; v < 256; ++v) lut[c][v] = (float(v) / 255.0f - cfg.mean[c]) / cfg.std[c];

  Tensor out({3, S, S});
  float* dst = out.f32();
  for (int y = 0; y < S; ++y) {
    const int sy = y + top;
    for (int x = 0; x < S; ++x) {
      const int sx = x + left;
      const bool inside = sy >= 0 && sy < rh && sx >= 0 && sx < rw;
      const uint8_t* p = inside ? resized.row(sy) + size_t(sx) * 3 : nullptr;
      for (int c = 0; c < 3; ++c) dst[(size_t(c) * S + y) * S + x] = lut[c][inside ? p[c] : 0];
    }
  }
  return out;
}

Tensor load_batch(const std::vector<std::string>& paths, const PreprocessConfig& cfg) {
  const int64_t B = int64_t(paths.size()), S = cfg.input_size;
  Tensor out({B, 3, S, S});
  std::exception_ptr err;
#pragma omp parallel for schedule(dynamic)
  for (int64_t i = 0; i < B; ++i) {
    try {
      Tensor t = preprocess(load_image(paths[size_t(i)]), cfg);
      std::memcpy(out.f32() + i * 3 * S * S, t.f32(), t.nbytes());
    } catch (...) {
#pragma omp critical
      if (!err) err = std::current_exception();
    }
  }
  if (err) std::rethrow_exception(err);
  return out;
}

}  // namespace vs
