// Image decoding, PNG writing, PIL-exact resizing and timm's eval preprocessing.
//
// Exactness is checked against PIL itself through tests/ref/pil_preprocess.py (run with
// /usr/bin/python3, which has PIL and numpy); those tests skip with a message when that Python or
// ../shared is absent. Bad-input fixtures are made at test time in a temporary directory.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <jpeglib.h>

#include "core/error.h"
#include "io/image.h"
#include "io/preprocess.h"

namespace fs = std::filesystem;

namespace {

const std::string kSourceDir = VS_SOURCE_DIR;
const std::string kPython = "/usr/bin/python3";
const std::string kRefScript = kSourceDir + "/tests/ref/pil_preprocess.py";

fs::path samples_dir() { return fs::path(kSourceDir) / ".." / "shared" / "data" / "imagenet-sample"; }

bool have_pil() {
  static const bool ok =
      std::system((kPython + " -c 'import PIL, numpy' >/dev/null 2>&1").c_str()) == 0;
  return ok;
}

#define REQUIRE_PIL()                                                                      \
  if (!have_pil()) GTEST_SKIP() << kPython << " with PIL and numpy not found: the PIL "   \
                                              "comparison is skipped"
#define REQUIRE_SAMPLES()                                                                  \
  if (!fs::is_directory(samples_dir()))                                                    \
  GTEST_SKIP() << samples_dir() << " is absent (../shared not checked out): skipped"

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Runs the reference script; returns false (and the test fails) when it exits non-zero.
bool run_ref(const std::vector<std::string>& args) {
  std::string cmd = kPython + " " + shell_quote(kRefScript);
  for (const auto& a : args) cmd += " " + shell_quote(a);
  const int rc = std::system(cmd.c_str());
  EXPECT_EQ(rc, 0) << "reference script failed: " << cmd;
  return rc == 0;
}

struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "vs_image_test_XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path = tmpl;
  }
  ~TempDir() { fs::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

std::vector<uint8_t> read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

void write_all(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

// PIL's output for one image of the "decode" subcommand; width 0 means PIL rejected the file.
struct RefImage {
  int width = 0, height = 0, channels = 0;
  std::vector<uint8_t> pixels;
};

std::vector<RefImage> parse_decoded(const std::vector<uint8_t>& bytes) {
  std::vector<RefImage> out;
  size_t pos = 0;
  while (pos + 12 <= bytes.size()) {
    RefImage r;
    int32_t hdr[3];
    std::memcpy(hdr, bytes.data() + pos, 12);
    pos += 12;
    r.width = hdr[0], r.height = hdr[1], r.channels = hdr[2];
    const size_t n = size_t(r.width) * r.height * r.channels;
    r.pixels.assign(bytes.begin() + pos, bytes.begin() + pos + n);
    pos += n;
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<RefImage> pil_decode(const std::vector<std::string>& paths, const std::string& mode,
                                 const TempDir& tmp) {
  std::vector<std::string> args = {"decode", "--mode", mode, "--out", tmp.file("decoded.bin")};
  args.insert(args.end(), paths.begin(), paths.end());
  if (!run_ref(args)) return {};
  return parse_decoded(read_all(tmp.file("decoded.bin")));
}

// Number of differing bytes, or -1 when the sizes differ.
long count_diff(const vs::Image& img, const RefImage& ref) {
  if (img.width != ref.width || img.height != ref.height || img.channels != ref.channels) return -1;
  long n = 0;
  for (size_t i = 0; i < ref.pixels.size(); ++i) n += img.pixels[i] != ref.pixels[i];
  return n;
}

vs::Image make_image(int w, int h, int channels, const std::function<int(int, int, int)>& f) {
  vs::Image img;
  img.width = w, img.height = h, img.channels = channels;
  img.pixels.resize(size_t(w) * h * channels);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < channels; ++c) img.row(y)[x * channels + c] = uint8_t(f(x, y, c));
  return img;
}

vs::Image random_image(int w, int h, int channels, unsigned seed) {
  std::mt19937 rng(seed);
  return make_image(w, h, channels, [&](int, int, int) { return int(rng() & 255); });
}

// A smooth picture with some detail, so JPEG tests have real content and few bytes.
vs::Image smooth_image(int w, int h) {
  return make_image(w, h, 3, [w, h](int x, int y, int c) {
    return c == 0 ? x * 255 / (w - 1) : c == 1 ? y * 255 / (h - 1) : (x + y) * 255 / (w + h - 2);
  });
}

// Self-contained JPEG encoding with libjpeg, so the bad-input tests need neither Python nor
// ../shared.
std::vector<uint8_t> encode_jpeg(const vs::Image& img, int quality) {
  jpeg_compress_struct c;
  jpeg_error_mgr err;
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&c, &buf, &size);
  c.image_width = img.width;
  c.image_height = img.height;
  c.input_components = 3;
  c.in_color_space = JCS_RGB;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, quality, TRUE);
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = const_cast<uint8_t*>(img.row(int(c.next_scanline)));
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  std::vector<uint8_t> out(buf, buf + size);
  std::free(buf);
  return out;
}

// Expects load_image and load_gray to throw a vs::Error naming `path` and containing `what`.
void expect_load_error(const std::string& path, const std::string& what) {
  for (auto load : {vs::load_image, vs::load_gray}) {
    try {
      load(path);
      ADD_FAILURE() << path << ": loaded, expected an error containing '" << what << "'";
    } catch (const vs::Error& e) {
      const std::string msg = e.what();
      EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << msg;
      EXPECT_NE(msg.find(what), std::string::npos) << msg;
    }
  }
}

std::string sample(const std::string& name) { return (samples_dir() / name).string(); }

// ImageNet samples of many shapes: landscape, portrait, square, odd sizes, tiny (upscaled by
// the transform), large, and grayscale JPEGs.
const std::vector<std::string> kVariedSamples = {
    "n01440764_tench.JPEG",              // 500x375
    "n01443537_goldfish.JPEG",           // 376x263
    "n01484850_great_white_shark.JPEG",  // 500x333
    "n01491361_tiger_shark.JPEG",        // 500x313
    "n01494475_hammerhead.JPEG",         // 333x500
    "n01537544_indigo_bunting.JPEG",     // 433x500
    "n01688243_frilled_lizard.JPEG",     // 613x920
    "n01871265_tusker.JPEG",             // 75x56
    "n03866082_overskirt.JPEG",          // 68x121
    "n02817516_bearskin.JPEG",           // 95x95
    "n02091032_Italian_greyhound.JPEG",  // 2400x1600
    "n03617480_kimono.JPEG",             // 1124x1632
    "n02692877_airship.JPEG",            // 350x156, grayscale
    "n02815834_beaker.JPEG",             // 320x221, grayscale
};

// ---------------------------------------------------------------------------------------------
// Decoding and writing (self-contained)

TEST(ImageIo, SavePngRoundTrips) {
  TempDir tmp;
  const vs::Image rgb = random_image(41, 23, 3, 1);
  const vs::Image gray = random_image(17, 9, 1, 2);
  vs::save_png(tmp.file("rgb.png"), rgb);
  vs::save_png(tmp.file("gray.png"), gray);

  const vs::Image rgb2 = vs::load_image(tmp.file("rgb.png"));
  EXPECT_EQ(rgb2.width, 41);
  EXPECT_EQ(rgb2.height, 23);
  EXPECT_EQ(rgb2.channels, 3);
  EXPECT_EQ(rgb2.pixels, rgb.pixels);

  EXPECT_EQ(vs::load_gray(tmp.file("gray.png")).pixels, gray.pixels);
  const vs::Image gray_as_rgb = vs::load_image(tmp.file("gray.png"));
  ASSERT_EQ(gray_as_rgb.channels, 3);
  for (size_t i = 0; i < gray.pixels.size(); ++i)
    for (int c = 0; c < 3; ++c) ASSERT_EQ(gray_as_rgb.pixels[3 * i + c], gray.pixels[i]);
}

TEST(ImageIo, SavePngIsAtomic) {
  TempDir tmp;
  const std::string path = tmp.file("out.png");
  vs::save_png(path, random_image(8, 8, 3, 3));
  const vs::Image second = random_image(5, 6, 1, 4);
  vs::save_png(path, second);  // replaces the first
  EXPECT_EQ(vs::load_gray(path).pixels, second.pixels);
  int files = 0;
  for (const auto& e : fs::directory_iterator(tmp.path)) files += 1, (void)e;
  EXPECT_EQ(files, 1) << "temporary file left behind";

  const std::string bad = tmp.file("no/such/dir/out.png");
  try {
    vs::save_png(bad, second);
    ADD_FAILURE() << "expected an error";
  } catch (const vs::Error& e) {
    EXPECT_NE(std::string(e.what()).find(bad + ": cannot write"), std::string::npos) << e.what();
  }
  vs::Image wrong = second;
  wrong.channels = 4;
  EXPECT_THROW(vs::save_png(path, wrong), vs::Error);
}

TEST(ImageIo, DecodesJpeg) {
  TempDir tmp;
  const vs::Image src = smooth_image(64, 48);
  write_all(tmp.file("a.jpg"), encode_jpeg(src, 95));
  const vs::Image img = vs::load_image(tmp.file("a.jpg"));
  ASSERT_EQ(img.width, 64);
  ASSERT_EQ(img.height, 48);
  ASSERT_EQ(img.channels, 3);
  double err = 0;
  for (size_t i = 0; i < img.pixels.size(); ++i) err += std::abs(img.pixels[i] - src.pixels[i]);
  EXPECT_LT(err / img.pixels.size(), 4.0);  // lossy, but close at quality 95
  EXPECT_EQ(vs::load_gray(tmp.file("a.jpg")).channels, 1);
}

// ---------------------------------------------------------------------------------------------
// Bad input: every failure is a vs::Error that names the file; nothing exits or crashes.

TEST(ImageErrors, MissingEmptyAndTextFiles) {
  TempDir tmp;
  const std::string missing = tmp.file("missing.jpg");
  try {
    vs::load_image(missing);
    ADD_FAILURE() << "expected an error";
  } catch (const vs::Error& e) {
    EXPECT_EQ(std::string(e.what()), missing + ": cannot open (No such file or directory)");
  }
  write_all(tmp.file("empty.jpg"), {});
  expect_load_error(tmp.file("empty.jpg"), "not a JPEG or PNG image");
  const std::string text = "hello, this is not an image\n";
  write_all(tmp.file("text.png"), std::vector<uint8_t>(text.begin(), text.end()));
  expect_load_error(tmp.file("text.png"), "not a JPEG or PNG image");
  expect_load_error(tmp.path.string(), "");  // a directory
}

// Bad JPEG / PNG variants of valid files, written to `tmp`; each is rejected by PIL as well
// (checked in ImageErrors.PilRejectsTheSameFiles).
struct BadFile {
  std::string name, expected;
};

std::vector<BadFile> write_bad_files(const TempDir& tmp) {
  const std::vector<uint8_t> jpg = encode_jpeg(smooth_image(96, 64), 90);
  const size_t mid = jpg.size() / 2;
  std::vector<BadFile> files;
  auto add = [&](const std::string& name, std::vector<uint8_t> bytes, const std::string& what) {
    write_all(tmp.file(name), bytes);
    files.push_back({name, what});
  };
  auto edit = [](std::vector<uint8_t> b, size_t at, std::vector<uint8_t> bytes) {
    std::copy(bytes.begin(), bytes.end(), b.begin() + long(at));
    return b;
  };
  add("jpeg_header_zeroed.jpg", edit(jpg, 6, std::vector<uint8_t>(24, 0)), "corrupt JPEG (");
  std::vector<uint8_t> garbage(40);
  std::mt19937 rng(5);
  for (auto& g : garbage) g = uint8_t(rng());
  garbage[0] = 0xFF;  // keep the magic so the JPEG decoder, not format detection, rejects it
  add("jpeg_header_garbage.jpg", edit(jpg, 2, garbage), "corrupt JPEG (");
  add("jpeg_bad_marker_mid.jpg", edit(jpg, mid, {0xFF, 0x02}), "corrupt JPEG (");
  add("jpeg_soi_mid.jpg", edit(jpg, mid, {0xFF, 0xD8}), "corrupt JPEG (");
  add("jpeg_sof_mid.jpg", edit(jpg, mid, {0xFF, 0xC0, 0x00, 0x02}), "corrupt JPEG (");
  for (size_t cut : {jpg.size() - 1, jpg.size() - 2, jpg.size() - 10, mid, size_t(300), size_t(3)})
    add("jpeg_cut_" + std::to_string(cut) + ".jpg", {jpg.begin(), jpg.begin() + long(cut)},
        "truncated JPEG (");

  TempDir png_tmp;
  vs::save_png(png_tmp.file("a.png"), random_image(64, 64, 3, 6));
  const std::vector<uint8_t> png = read_all(png_tmp.file("a.png"));
  for (size_t cut : {png.size() / 2, size_t(60), size_t(20)})
    add("png_cut_" + std::to_string(cut) + ".png", {png.begin(), png.begin() + long(cut)},
        "truncated PNG (");
  add("png_zero_width.png", edit(png, 16, {0, 0, 0, 0}), "corrupt PNG (");
  return files;
}

TEST(ImageErrors, CorruptAndTruncatedFiles) {
  TempDir tmp;
  for (const auto& f : write_bad_files(tmp)) expect_load_error(tmp.file(f.name), f.expected);

  // A damaged IDAT checksum: libpng rejects it (PIL does not check IDAT checksums).
  vs::save_png(tmp.file("a.png"), random_image(32, 32, 3, 7));
  std::vector<uint8_t> png = read_all(tmp.file("a.png"));
  png[png.size() - 20] ^= 0x55;
  write_all(tmp.file("crc.png"), png);
  expect_load_error(tmp.file("crc.png"), "corrupt PNG (");
}

TEST(ImageErrors, PilRejectsTheSameFiles) {
  REQUIRE_PIL();
  TempDir tmp;
  const auto files = write_bad_files(tmp);
  std::vector<std::string> paths;
  for (const auto& f : files) paths.push_back(tmp.file(f.name));
  const auto ref = pil_decode(paths, "RGB", tmp);
  ASSERT_EQ(ref.size(), files.size());
  for (size_t i = 0; i < files.size(); ++i)
    EXPECT_EQ(ref[i].width, 0) << files[i].name << ": PIL loads it but we reject it";
}

TEST(ImageErrors, AcceptsWhatPilAccepts) {
  TempDir tmp;
  // Trailing bytes after EOI, and a PNG that ends right after its image data (no IEND).
  std::vector<uint8_t> jpg = encode_jpeg(smooth_image(32, 32), 90);
  jpg.insert(jpg.end(), {1, 2, 3, 4});
  write_all(tmp.file("trailing.jpg"), jpg);
  EXPECT_EQ(vs::load_image(tmp.file("trailing.jpg")).width, 32);
  vs::save_png(tmp.file("a.png"), random_image(16, 16, 3, 8));
  std::vector<uint8_t> png = read_all(tmp.file("a.png"));
  png.erase(png.end() - 12, png.end());  // drop the IEND chunk
  write_all(tmp.file("no_iend.png"), png);
  EXPECT_EQ(vs::load_image(tmp.file("no_iend.png")).pixels, random_image(16, 16, 3, 8).pixels);
}

// ---------------------------------------------------------------------------------------------
// Decoding matches PIL's Image.open(...).convert("RGB" / "L") byte for byte.

void expect_decodes_like_pil(const std::vector<std::string>& paths, const TempDir& tmp) {
  for (const std::string mode : {"RGB", "L"}) {
    const auto ref = pil_decode(paths, mode, tmp);
    ASSERT_EQ(ref.size(), paths.size());
    for (size_t i = 0; i < paths.size(); ++i) {
      ASSERT_GT(ref[i].width, 0) << paths[i] << ": PIL cannot read it";
      const vs::Image img = mode == "RGB" ? vs::load_image(paths[i]) : vs::load_gray(paths[i]);
      EXPECT_EQ(count_diff(img, ref[i]), 0) << paths[i] << " (" << mode << ")";
    }
  }
}

TEST(ImageDecode, MatchesPilOnAllFormats) {
  REQUIRE_PIL();
  TempDir tmp;
  ASSERT_TRUE(run_ref({"fixtures", tmp.path.string()}));
  std::vector<std::string> paths;
  for (const auto& e : fs::directory_iterator(tmp.path)) paths.push_back(e.path().string());
  std::sort(paths.begin(), paths.end());
  ASSERT_GE(paths.size(), 20u);
  expect_decodes_like_pil(paths, tmp);
}

TEST(ImageDecode, MatchesPilOnImageNetSamples) {
  REQUIRE_PIL();
  REQUIRE_SAMPLES();
  std::vector<std::string> all;
  for (const auto& e : fs::directory_iterator(samples_dir()))
    if (e.path().extension() == ".JPEG") all.push_back(e.path().string());
  std::sort(all.begin(), all.end());
  std::vector<std::string> paths;
  for (size_t i = 0; i < all.size(); i += 25) paths.push_back(all[i]);
  for (const auto& name : kVariedSamples) paths.push_back(sample(name));
  TempDir tmp;
  expect_decodes_like_pil(paths, tmp);
}

// ---------------------------------------------------------------------------------------------
// resize_pil matches PIL's Image.resize byte for byte.

const std::vector<std::pair<int, int>> kSizes = {
    {333, 249}, {224, 168}, {101, 77},  // downscale by non-integer factors
    {731, 613}, {1003, 752},            // upscale
    {500, 200}, {321, 375},             // one dimension only (for a 500x375 input)
    {1, 1},     {7, 5},     {3, 999},   {499, 376}};

std::string sizes_arg(const std::vector<std::pair<int, int>>& sizes) {
  std::string s;
  for (auto [w, h] : sizes) s += (s.empty() ? "" : ",") + std::to_string(w) + "x" + std::to_string(h);
  return s;
}

void expect_resizes_like_pil(const std::string& path, const std::string& mode,
                             const std::vector<std::pair<int, int>>& sizes, const TempDir& tmp) {
  const vs::Image img = mode == "RGB" ? vs::load_image(path) : vs::load_gray(path);
  for (const std::string interp : {"bicubic", "bilinear", "nearest"}) {
    ASSERT_TRUE(run_ref({"resize", "--mode", mode, "--interpolation", interp, "--sizes",
                         sizes_arg(sizes), "--out", tmp.file("resized.bin"), path}));
    const std::vector<uint8_t> ref = read_all(tmp.file("resized.bin"));
    size_t pos = 0;
    for (auto [w, h] : sizes) {
      const vs::Image out = vs::resize_pil(img, w, h, interp);
      ASSERT_EQ(out.width, w);
      ASSERT_EQ(out.height, h);
      const size_t n = size_t(w) * h * img.channels;
      ASSERT_LE(pos + n, ref.size());
      long diff = 0;
      for (size_t i = 0; i < n; ++i) diff += out.pixels[i] != ref[pos + i];
      EXPECT_EQ(diff, 0) << path << " " << mode << " " << interp << " -> " << w << "x" << h;
      pos += n;
    }
    EXPECT_EQ(pos, ref.size());
  }
}

TEST(ImageResize, MatchesPilOnPhotos) {
  REQUIRE_PIL();
  REQUIRE_SAMPLES();
  TempDir tmp;
  expect_resizes_like_pil(sample("n01440764_tench.JPEG"), "RGB", kSizes, tmp);
  expect_resizes_like_pil(sample("n01440764_tench.JPEG"), "L", kSizes, tmp);
  expect_resizes_like_pil(sample("n01443537_goldfish.JPEG"), "RGB",
                          {{248, 173}, {173, 248}, {377, 263}, {376, 1000}, {2, 263}}, tmp);
  expect_resizes_like_pil(sample("n01871265_tusker.JPEG"), "RGB", {{331, 248}, {298, 224}}, tmp);
}

TEST(ImageResize, MatchesPilOnRandomImage) {
  REQUIRE_PIL();
  TempDir tmp;
  // Noise has the largest overshoot, exercising the clipping of bicubic's negative lobes.
  vs::save_png(tmp.file("rgb.png"), random_image(97, 61, 3, 9));
  vs::save_png(tmp.file("gray.png"), random_image(61, 97, 1, 10));
  const std::vector<std::pair<int, int>> sizes = {{48, 30}, {33, 59},  {250, 171}, {97, 200},
                                                  {1, 61},  {97, 1},   {1, 1},     {96, 60},
                                                  {98, 62}, {97, 61}, {13, 500}};
  expect_resizes_like_pil(tmp.file("rgb.png"), "RGB", sizes, tmp);
  expect_resizes_like_pil(tmp.file("gray.png"), "L", sizes, tmp);
}

TEST(ImageResize, IdentityAndBadArguments) {
  const vs::Image img = random_image(20, 10, 3, 11);
  for (const std::string interp : {"bicubic", "bilinear", "nearest"})
    EXPECT_EQ(vs::resize_pil(img, 20, 10, interp).pixels, img.pixels) << interp;
  // A constant image stays constant whatever the filter (weights are normalised).
  const vs::Image flat = make_image(9, 7, 3, [](int, int, int c) { return 40 + c; });
  const vs::Image up = vs::resize_pil(flat, 31, 3, "bicubic");
  for (size_t i = 0; i < up.pixels.size(); ++i) ASSERT_EQ(up.pixels[i], 40 + int(i % 3));
  EXPECT_THROW(vs::resize_pil(img, 10, 10, "lanczos4"), vs::Error);
  EXPECT_THROW(vs::resize_pil(img, 0, 10, "bicubic"), vs::Error);
}

// ---------------------------------------------------------------------------------------------
// preprocess matches timm's eval transform (PIL + torchvision rules) to the last bit.

struct Config {
  int size;
  double crop_pct;
  std::string interp;
  std::array<float, 3> mean, std;
};

TEST(ImagePreprocess, MatchesTimmEvalTransform) {
  REQUIRE_PIL();
  REQUIRE_SAMPLES();
  const std::array<float, 3> in_mean{0.485f, 0.456f, 0.406f}, in_std{0.229f, 0.224f, 0.225f};
  const std::array<float, 3> half{0.5f, 0.5f, 0.5f};
  const std::vector<Config> configs = {
      {224, 0.9, "bicubic", half, half},        // vit_tiny_patch16_224.augreg_in21k_ft_in1k
      {224, 0.875, "bilinear", in_mean, in_std},
      {224, 0.875, "bicubic", in_mean, in_std},
      {160, 0.95, "bilinear", half, half},
      {96, 1.0, "nearest", in_mean, in_std},
      {224, 1.15, "bicubic", half, half},  // crop larger than the resized image: zero padding
  };
  std::vector<std::string> paths;
  for (const auto& name : kVariedSamples) paths.push_back(sample(name));
  TempDir tmp;
  for (const auto& cfg : configs) {
    std::vector<std::string> args = {"preprocess", "--size", std::to_string(cfg.size),
                                     "--crop-pct", std::to_string(cfg.crop_pct),
                                     "--interpolation", cfg.interp, "--out", tmp.file("ref.bin"),
                                     "--mean"};
    for (float m : cfg.mean) args.push_back(std::to_string(m));
    args.push_back("--std");
    for (float s : cfg.std) args.push_back(std::to_string(s));
    args.insert(args.end(), paths.begin(), paths.end());
    ASSERT_TRUE(run_ref(args));
    const std::vector<uint8_t> bytes = read_all(tmp.file("ref.bin"));
    const size_t per = size_t(3) * cfg.size * cfg.size;
    ASSERT_EQ(bytes.size(), per * paths.size() * 4);
    const float* ref = reinterpret_cast<const float*>(bytes.data());

    vs::PreprocessConfig pc;
    pc.input_size = cfg.size;
    pc.crop_pct = cfg.crop_pct;
    pc.interpolation = cfg.interp;
    pc.mean = cfg.mean;
    pc.std = cfg.std;
    for (size_t i = 0; i < paths.size(); ++i) {
      const vs::Tensor t = vs::preprocess(vs::load_image(paths[i]), pc);
      ASSERT_EQ(t.shape(), (vs::Shape{3, cfg.size, cfg.size}));
      float max_diff = 0;
      for (size_t j = 0; j < per; ++j)
        max_diff = std::max(max_diff, std::abs(t.f32()[j] - ref[i * per + j]));
      EXPECT_LE(max_diff, 1e-6f) << paths[i] << " size " << cfg.size << " crop_pct "
                                 << cfg.crop_pct << " " << cfg.interp;
    }
  }
}

TEST(ImagePreprocess, ShapeNormalisationAndCrop) {
  // 300x200 -> short side floor(224 / 0.875) = 256 -> 384x256, crop offsets 80 and 16.
  vs::Image img = make_image(300, 200, 3, [](int x, int, int c) { return c == 0 ? (x < 150 ? 0 : 255) : 128; });
  vs::PreprocessConfig cfg;
  cfg.interpolation = "nearest";
  const vs::Tensor t = vs::preprocess(img, cfg);
  ASSERT_EQ(t.shape(), (vs::Shape{3, 224, 224}));
  const float g = (128.0f / 255.0f - cfg.mean[1]) / cfg.std[1];
  EXPECT_EQ(t.f32()[224 * 224 + 5 * 224 + 7], g);
  const float r0 = (0.0f - cfg.mean[0]) / cfg.std[0], r1 = (1.0f - cfg.mean[0]) / cfg.std[0];
  // The red edge sits at resized x = 192, crop column 192 - 80 = 112.
  EXPECT_EQ(t.f32()[3 * 224 + 111], r0);
  EXPECT_EQ(t.f32()[3 * 224 + 112], r1);

  EXPECT_THROW(vs::preprocess(random_image(10, 10, 1, 12), cfg), vs::Error);
  cfg.interpolation = "area";
  EXPECT_THROW(vs::preprocess(img, cfg), vs::Error);
}

TEST(ImagePreprocess, TakesAFewMilliseconds) {
  REQUIRE_SAMPLES();
  const std::string path = sample("n01440764_tench.JPEG");  // 500x375
  vs::PreprocessConfig cfg;
  cfg.crop_pct = 0.9;
  double best_ms = 1e9;
  for (int i = 0; i < 5; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    const vs::Tensor t = vs::preprocess(vs::load_image(path), cfg);
    const auto t1 = std::chrono::steady_clock::now();
    best_ms = std::min(best_ms, std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  std::printf("load + preprocess of a 500x375 JPEG: %.2f ms\n", best_ms);
  EXPECT_LT(best_ms, 50.0);  // typically a few ms; generous for loaded machines
}

}  // namespace
