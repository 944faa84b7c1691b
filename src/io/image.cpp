// JPEG / PNG decoding that reproduces PIL's Image.open(path).convert("RGB" | "L") byte for byte,
// and atomic PNG writing.
//
// libjpeg and libpng report fatal errors through a callback that must not return. Throwing a C++
// exception through their C frames is not guaranteed to work, so each decoder runs in a small
// C-style function that catches the callback with setjmp/longjmp (no C++ object with a destructor
// is created between setjmp and a possible longjmp) and reports failure through its return value;
// the C++ caller then throws vs::Error.
#include "io/image.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <memory>

// jpeglib.h needs FILE and size_t declared before it.
#include <jerror.h>
#include <jpeglib.h>
#include <png.h>

#include "core/error.h"

namespace vs {
namespace {

// PIL refuses images above twice Image.MAX_IMAGE_PIXELS (DecompressionBombError); we do the same,
// which also keeps a forged header from making us allocate gigabytes.
constexpr uint64_t kMaxPixels = 2ull * 89478485ull;

// A decoded image before conversion: gray (1), RGB (3) or CMYK (4) bytes, row-major.
struct RawImage {
  int width = 0, height = 0, channels = 0;
  bool adobe_cmyk = false;  // CMYK stored inverted (Adobe convention)
  std::vector<uint8_t> pixels;
};

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), std::fclose);
  if (!f) throw Error(path + ": cannot open (" + std::strerror(errno) + ")");
  std::vector<uint8_t> data;
  uint8_t buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f.get())) > 0) data.insert(data.end(), buf, buf + n);
  if (std::ferror(f.get())) throw Error(path + ": cannot read (" + std::strerror(errno) + ")");
  return data;
}

bool starts_with(const std::vector<uint8_t>& data, std::initializer_list<uint8_t> magic) {
  return data.size() >= magic.size() && std::equal(magic.begin(), magic.end(), data.begin());
}

bool is_jpeg(const std::vector<uint8_t>& d) { return starts_with(d, {0xFF, 0xD8, 0xFF}); }
bool is_png(const std::vector<uint8_t>& d) {
  return starts_with(d, {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A});
}

void check_size(const std::string& path, uint64_t w, uint64_t h) {
  check(w > 0 && h > 0, path + ": image has zero width or height");
  check(w * h <= kMaxPixels, path + ": image too large (" + std::to_string(w) + "x" +
                                 std::to_string(h) + " pixels, limit " +
                                 std::to_string(kMaxPixels) + ")");
}

// ---------------------------------------------------------------------------------------------
// JPEG

struct JpegErrors {
  jpeg_error_mgr mgr;  // first member: libjpeg hands us a jpeg_error_mgr*
  jmp_buf jump;
  bool truncated = false;
  char message[JMSG_LENGTH_MAX] = {};
};

[[noreturn]] void jpeg_fail(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegErrors*>(cinfo->err);
  cinfo->err->format_message(cinfo, err->message);
  longjmp(err->jump, 1);
}

// libjpeg only warns when the data ends early and decodes the rest as grey. PIL feeds libjpeg
// through a suspending source and raises "image file is truncated" instead, so running out of
// data is fatal here too. Other warnings (e.g. extraneous bytes before a marker) are ignored, as
// PIL ignores them.
void jpeg_warn(j_common_ptr cinfo, int level) {
  if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
    reinterpret_cast<JpegErrors*>(cinfo->err)->truncated = true;
    jpeg_fail(cinfo);
  }
}

// PIL decodes with libjpeg's defaults (islow DCT, fancy upsampling, no scaling); so do we. Only
// the output colour space is chosen, from the component count, as PIL's JpegImagePlugin does.
// Returns false with err->message set on failure.
bool jpeg_decode(const uint8_t* data, size_t size, uint64_t max_pixels, RawImage* out,
                 JpegErrors* err) {
  jpeg_decompress_struct cinfo;
  cinfo.err = jpeg_std_error(&err->mgr);
  err->mgr.error_exit = jpeg_fail;
  err->mgr.emit_message = jpeg_warn;
  if (setjmp(err->jump)) {
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&cinfo, TRUE);

  const int comps = cinfo.num_components;
  if (comps == 1) cinfo.out_color_space = JCS_GRAYSCALE;
  else if (comps == 3) cinfo.out_color_space = JCS_RGB;
  else if (comps == 4) cinfo.out_color_space = JCS_CMYK;  // libjpeg turns YCCK into CMYK
  else {
    std::snprintf(err->message, sizeof err->message, "unsupported %d-component JPEG", comps);
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  if (uint64_t(cinfo.image_width) * cinfo.image_height > max_pixels) {
    std::snprintf(err->message, sizeof err->message, "image too large (%ux%u pixels)",
                  cinfo.image_width, cinfo.image_height);
    jpeg_destroy_decompress(&cinfo);
    return false;
  }

  jpeg_start_decompress(&cinfo);
  out->width = int(cinfo.output_width);
  out->height = int(cinfo.output_height);
  out->channels = cinfo.output_components;
  out->adobe_cmyk = comps == 4 && cinfo.saw_Adobe_marker;
  out->pixels.resize(size_t(out->width) * out->height * out->channels);
  const size_t stride = size_t(out->width) * out->channels;
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = out->pixels.data() + cinfo.output_scanline * stride;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  // Reading up to EOI catches a file cut after the last scanline, which PIL rejects as well.
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return true;
}

RawImage read_jpeg(const std::string& path, const std::vector<uint8_t>& data) {
  RawImage raw;
  JpegErrors err;
  if (!jpeg_decode(data.data(), data.size(), kMaxPixels, &raw, &err))
    throw Error(path + (err.truncated ? ": truncated JPEG (" : ": corrupt JPEG (") + err.message +
                ")");
  return raw;
}

// ---------------------------------------------------------------------------------------------
// PNG

struct PngSource {
  const uint8_t* data;
  size_t size, pos;
};

struct PngErrors {
  bool truncated = false;
  char message[256] = {};
};

[[noreturn]] void png_fail(png_structp png, png_const_charp msg) {
  auto* err = static_cast<PngErrors*>(png_get_error_ptr(png));
  std::snprintf(err->message, sizeof err->message, "%s", msg);
  png_longjmp(png, 1);
}

// libpng warnings concern ancillary chunks (bad CRC, odd gamma); PIL ignores those as well.
void png_warn(png_structp, png_const_charp) {}

void png_read_mem(png_structp png, png_bytep dst, size_t n) {
  auto* src = static_cast<PngSource*>(png_get_io_ptr(png));
  if (n > src->size - src->pos) {
    static_cast<PngErrors*>(png_get_error_ptr(png))->truncated = true;
    png_error(png, "unexpected end of file");
  }
  std::memcpy(dst, src->data + src->pos, n);
  src->pos += n;
}

// Sample layout of libpng's output rows, before narrowing to PIL's 8-bit modes.
struct PngRows {
  int color_type = 0, channels = 0, bytes = 1;  // bytes per sample: 1 or 2 (big-endian)
  size_t stride = 0;
};

// Runs libpng, expanding only palettes and sub-byte gray to 8 bits (both as PIL unpacks them:
// palette looked up, 1/2/4-bit gray scaled to 0..255); tRNS is not turned into alpha. Gamma and
// colour chunks are ignored, as by PIL. Returns false with err->message set on failure.
bool png_decode(const uint8_t* data, size_t size, uint64_t max_pixels, RawImage* out,
                PngRows* rows, PngErrors* err) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, err, png_fail, png_warn);
  if (!png) {
    std::snprintf(err->message, sizeof err->message, "cannot initialise libpng");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  PngSource src{data, size, 0};
  if (!info || setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, info ? &info : nullptr, nullptr);
    if (!err->message[0]) std::snprintf(err->message, sizeof err->message, "out of memory");
    return false;
  }
  png_set_read_fn(png, &src, png_read_mem);
  // Leave the image-size limit to max_pixels, like PIL (libpng's default caps width at 1M).
  png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
  png_read_info(png, info);

  const png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  const int color = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
  if (uint64_t(w) * h > max_pixels) {
    std::snprintf(err->message, sizeof err->message, "image too large (%ux%u pixels)", w, h);
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  const int passes = png_set_interlace_handling(png);
  png_read_update_info(png, info);
  rows->color_type = color;
  rows->channels = png_get_channels(png, info);
  rows->bytes = png_get_bit_depth(png, info) == 16 ? 2 : 1;
  rows->stride = png_get_rowbytes(png, info);

  // Each interlace pass refines rows already read, so the whole image is decoded in place.
  out->pixels.resize(rows->stride * h);
  for (int pass = 0; pass < passes; ++pass)
    for (png_uint_32 y = 0; y < h; ++y)
      png_read_row(png, out->pixels.data() + y * rows->stride, nullptr);
  // Not reading on to IEND: PIL accepts a PNG whose trailing chunks are missing.
  png_destroy_read_struct(&png, &info, nullptr);
  out->width = int(w);
  out->height = int(h);
  return true;
}

// Narrows libpng's rows to 8-bit gray or RGB as PIL opens the file (PngImagePlugin's mode
// table) and converts it: alpha dropped; 16-bit gray becomes PIL mode "I", whose conversion
// clips to 255, while 16-bit RGB / RGBA / gray+alpha keep the high byte (rawmodes "RGB;16B",
// "RGBA;16B", "LA;16B"). Works in place: each output pixel is no larger than its input pixel and
// lies at or before it.
void narrow_png(RawImage& raw, const PngRows& rows) {
  const bool gray = rows.color_type == PNG_COLOR_TYPE_GRAY ||
                    rows.color_type == PNG_COLOR_TYPE_GRAY_ALPHA;
  const bool clip16 = rows.color_type == PNG_COLOR_TYPE_GRAY && rows.bytes == 2;
  const int out_ch = gray ? 1 : 3;
  const size_t pixel = size_t(rows.channels) * rows.bytes;
  uint8_t* dst = raw.pixels.data();
  for (int y = 0; y < raw.height; ++y) {
    const uint8_t* row = raw.pixels.data() + y * rows.stride;
    for (int x = 0; x < raw.width; ++x) {
      for (int c = 0; c < out_ch; ++c) {
        const uint8_t* s = row + x * pixel + c * rows.bytes;  // s[0]: the high byte
        *dst++ = clip16 ? ((s[0] << 8 | s[1]) > 255 ? 255 : s[1]) : s[0];
      }
    }
  }
  raw.pixels.resize(size_t(raw.width) * raw.height * out_ch);
  raw.channels = out_ch;
}

RawImage read_png(const std::string& path, const std::vector<uint8_t>& data) {
  RawImage raw;
  PngRows rows;
  PngErrors err;
  if (!png_decode(data.data(), data.size(), kMaxPixels, &raw, &rows, &err))
    throw Error(path + (err.truncated ? ": truncated PNG (" : ": corrupt PNG (") + err.message +
                ")");
  narrow_png(raw, rows);
  return raw;
}

// ---------------------------------------------------------------------------------------------
// Conversions, with PIL's integer formulas (libImaging/Convert.c).

// ITU-R 601-2 luma in 16.16 fixed point, rounded (PIL's L24 macro).
inline uint8_t luma(const uint8_t* rgb) {
  return uint8_t((rgb[0] * 19595 + rgb[1] * 38470 + rgb[2] * 7471 + 0x8000) >> 16);
}

// a * b / 255, rounded (PIL's MULDIV255).
inline int muldiv255(int a, int b) {
  const int t = a * b + 128;
  return ((t >> 8) + t) >> 8;
}

// PIL opens Adobe CMYK JPEGs as "CMYK;I" (inverted), then converts with cmyk2rgb.
void cmyk_to_rgb(RawImage& raw) {
  const size_t n = size_t(raw.width) * raw.height;
  uint8_t* p = raw.pixels.data();
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* in = p + 4 * i;
    uint8_t cmyk[4];
    for (int c = 0; c < 4; ++c) cmyk[c] = raw.adobe_cmyk ? 255 - in[c] : in[c];
    const int nk = 255 - cmyk[3];
    uint8_t* out = p + 3 * i;  // never overtakes the input
    for (int c = 0; c < 3; ++c) out[c] = uint8_t(nk - muldiv255(cmyk[c], nk));
  }
  raw.pixels.resize(3 * n);
  raw.channels = 3;
}

Image to_rgb(RawImage raw) {
  if (raw.channels == 4) cmyk_to_rgb(raw);
  Image img;
  img.width = raw.width;
  img.height = raw.height;
  img.channels = 3;
  if (raw.channels == 3) {
    img.pixels = std::move(raw.pixels);
    return img;
  }
  img.pixels.resize(raw.pixels.size() * 3);
  for (size_t i = 0; i < raw.pixels.size(); ++i)
    img.pixels[3 * i] = img.pixels[3 * i + 1] = img.pixels[3 * i + 2] = raw.pixels[i];
  return img;
}

Image to_gray(RawImage raw) {
  if (raw.channels == 4) cmyk_to_rgb(raw);  // PIL goes CMYK -> RGB -> L as well
  Image img;
  img.width = raw.width;
  img.height = raw.height;
  img.channels = 1;
  if (raw.channels == 1) {
    img.pixels = std::move(raw.pixels);
    return img;
  }
  const size_t n = size_t(raw.width) * raw.height;
  img.pixels.resize(n);
  for (size_t i = 0; i < n; ++i) img.pixels[i] = luma(&raw.pixels[3 * i]);
  return img;
}

RawImage load_raw(const std::string& path) {
  const std::vector<uint8_t> data = read_bytes(path);
  if (data.empty()) throw Error(path + ": not a JPEG or PNG image (empty file)");
  RawImage raw;
  if (is_jpeg(data)) raw = read_jpeg(path, data);
  else if (is_png(data)) raw = read_png(path, data);
  else throw Error(path + ": not a JPEG or PNG image");
  check_size(path, uint64_t(raw.width), uint64_t(raw.height));
  return raw;
}

// ---------------------------------------------------------------------------------------------
// PNG writing

// Returns false with err->message set on failure.
bool png_encode(FILE* file, const Image& img, PngErrors* err) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, err, png_fail, png_warn);
  if (!png) {
    std::snprintf(err->message, sizeof err->message, "cannot initialise libpng");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  if (!info || setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, info ? &info : nullptr);
    if (!err->message[0]) std::snprintf(err->message, sizeof err->message, "out of memory");
    return false;
  }
  png_init_io(png, file);
  const int color = img.channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB;
  png_set_IHDR(png, info, png_uint_32(img.width), png_uint_32(img.height), 8, color,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int y = 0; y < img.height; ++y) png_write_row(png, img.row(y));
  png_write_end(png, info);
  png_destroy_write_struct(&png, &info);
  return true;
}

}  // namespace

Image load_image(const std::string& path) { return to_rgb(load_raw(path)); }

Image load_gray(const std::string& path) { return to_gray(load_raw(path)); }

void save_png(const std::string& path, const Image& img) {
  check(img.channels == 1 || img.channels == 3,
        path + ": cannot save a " + std::to_string(img.channels) + "-channel image as PNG");
  check(img.width > 0 && img.height > 0, path + ": cannot save an empty image");
  check(img.pixels.size() == size_t(img.width) * img.height * img.channels,
        path + ": image buffer does not match its size");

  // Write next to the target and rename, so readers never see a half-written file.
  std::string tmp = path + ".tmp.XXXXXX";
  const int fd = mkstemp(tmp.data());
  if (fd < 0) throw Error(path + ": cannot write (" + std::strerror(errno) + ")");
  FILE* file = fdopen(fd, "wb");
  if (!file) {
    const int e = errno;
    close(fd);
    std::remove(tmp.c_str());
    throw Error(path + ": cannot write (" + std::strerror(e) + ")");
  }
  PngErrors err;
  const bool encoded = png_encode(file, img, &err);
  // mkstemp creates the file 0600; outputs are meant to be shared like any other file.
  fchmod(fd, 0644);
  const bool flushed = std::fflush(file) == 0;
  const int e = errno;
  const bool closed = std::fclose(file) == 0;
  if (!encoded || !flushed || !closed) {
    std::remove(tmp.c_str());
    throw Error(path + ": cannot write (" + (encoded ? std::strerror(e) : err.message) + ")");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int re = errno;
    std::remove(tmp.c_str());
    throw Error(path + ": cannot write (" + std::strerror(re) + ")");
  }
}

}  // namespace vs
