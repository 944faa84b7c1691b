// Images: decode JPEG / PNG to 8-bit RGB exactly as PIL's Image.open(f).convert("RGB") does
// (libjpeg-turbo with default settings, PNG gray/palette/alpha handled as PIL converts them),
// and write PNG.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace vs {

struct Image {
  int width = 0, height = 0, channels = 3;  // channels: 3 (RGB) or 1 (gray, e.g. masks)
  std::vector<uint8_t> pixels;             // row-major, interleaved
  uint8_t* row(int y) { return pixels.data() + size_t(y) * width * channels; }
  const uint8_t* row(int y) const { return pixels.data() + size_t(y) * width * channels; }
};

// Detects the format from the file's magic bytes. Throws vs::Error("FILE: problem") on an
// unreadable, truncated or unsupported file.
Image load_image(const std::string& path);
// As load_image but keeps one channel (for masks; RGB is converted like PIL's convert("L")).
Image load_gray(const std::string& path);
// Writes atomically (temporary file + rename).
void save_png(const std::string& path, const Image& img);

}  // namespace vs
