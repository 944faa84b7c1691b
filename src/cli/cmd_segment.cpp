#include <fmt/format.h>

#include <sstream>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "core/threading.h"
#include "io/image.h"
#include "models/sam.h"

namespace vs::cli {
namespace {

std::vector<float> parse_numbers(const std::string& s, const std::string& opt) {
  std::vector<float> v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t used = 0;
      v.push_back(std::stof(item, &used));
      check(used == item.size(), "");
    } catch (const std::exception&) {
      throw Error(opt + " '" + s + "': '" + item + "' is not a number");
    }
  }
  return v;
}

void blend(Image& img, int x, int y, std::array<uint8_t, 3> c, float a) {
  if (x < 0 || y < 0 || x >= img.width || y >= img.height) return;
  uint8_t* p = img.row(y) + x * 3;
  for (int k = 0; k < 3; ++k) p[k] = uint8_t(float(p[k]) * (1 - a) + float(c[size_t(k)]) * a + 0.5f);
}

// The image with the mask tinted, its outline drawn, and the prompt marked (box in green,
// positive clicks green, negative red), for checking a result by eye.
Image overlay(const Image& img, const Tensor& logits, const models::SamPrompt& p) {
  Image out = img;
  const int W = img.width, H = img.height;
  auto in = [&](int x, int y) { return x >= 0 && y >= 0 && x < W && y < H && logits.f32()[int64_t(y) * W + x] > 0.f; };
  const int t = std::max(1, std::max(W, H) / 400);  // line thickness
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) {
      if (!in(x, y)) continue;
      bool edge = !in(x - t, y) || !in(x + t, y) || !in(x, y - t) || !in(x, y + t);
      blend(out, x, y, edge ? std::array<uint8_t, 3>{255, 255, 0} : std::array<uint8_t, 3>{30, 144, 255}, edge ? 1.f : 0.5f);
    }
  if (p.box) {
    const auto& b = *p.box;
    for (int d = 0; d < t; ++d)
      for (int x = int(b[0]); x <= int(b[2]); ++x)
        for (int y : {int(b[1]) + d, int(b[3]) - d}) blend(out, x, y, {0, 220, 0}, 1.f);
    for (int d = 0; d < t; ++d)
      for (int y = int(b[1]); y <= int(b[3]); ++y)
        for (int x : {int(b[0]) + d, int(b[2]) - d}) blend(out, x, y, {0, 220, 0}, 1.f);
  }
  for (size_t i = 0; i < p.points.size(); ++i) {
    const std::array<uint8_t, 3> c = p.labels[i] > 0 ? std::array<uint8_t, 3>{0, 220, 0} : std::array<uint8_t, 3>{230, 0, 0};
    const int r = 3 * t;
    for (int dy = -r; dy <= r; ++dy)
      for (int dx = -r; dx <= r; ++dx)
        if (dx * dx + dy * dy <= r * r) blend(out, int(p.points[i][0]) + dx, int(p.points[i][1]) + dy, c, 1.f);
  }
  return out;
}

}  // namespace

void add_segment(CLI::App& app) {
  auto* cmd = app.add_subcommand("segment", "Segment one object of an image with a SAM model, from a box or clicks");
  struct Args {
    std::string model, image, box, out, overlay;
    std::vector<std::string> points;
    int threads = 0;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("model", a->model, "SAM model folder (written by import-sam)")->required();
  cmd->add_option("image", a->image, "JPEG or PNG image")->required()->check(CLI::ExistingFile);
  auto* box = cmd->add_option("--box", a->box, "object box x0,y0,x1,y1 in image pixels");
  auto* pts = cmd->add_option("--point", a->points,
                              "click x,y[,label] in image pixels; label 1 = object (default), 0 = background; repeatable");
  box->excludes(pts);
  cmd->add_option("--out", a->out, "mask PNG to write (255 = object), at the image's size")->required();
  cmd->add_option("--overlay", a->overlay, "also write the image with the mask and prompt drawn on it (PNG)");
  cmd->add_option("--threads", a->threads, "CPU threads (default: all cores)")->check(CLI::Range(1, 1024));
  cmd->callback([a] {
    models::SamPrompt prompt;
    if (!a->box.empty()) {
      auto v = parse_numbers(a->box, "--box");
      check(v.size() == 4 && v[0] <= v[2] && v[1] <= v[3], "--box: expected x0,y0,x1,y1 with x0 <= x1 and y0 <= y1");
      prompt.box = std::array<float, 4>{v[0], v[1], v[2], v[3]};
    }
    for (auto& s : a->points) {
      auto v = parse_numbers(s, "--point");
      check(v.size() == 2 || v.size() == 3, "--point '" + s + "': expected x,y or x,y,label");
      check(v.size() == 2 || v[2] == 0.f || v[2] == 1.f, "--point '" + s + "': label must be 0 or 1");
      prompt.points.push_back({v[0], v[1]});
      prompt.labels.push_back(v.size() == 3 ? v[2] : 1.f);
    }
    check(prompt.box || !prompt.points.empty(), "segment: give --box or at least one --point");
    set_num_threads(a->threads);
    models::SamModel m = models::SamModel::load(a->model);
    Image img = load_image(a->image);
    auto inside = [&](float x, float y) { return x >= 0 && y >= 0 && x <= float(img.width) && y <= float(img.height); };
    if (prompt.box) check(inside((*prompt.box)[0], (*prompt.box)[1]) && inside((*prompt.box)[2], (*prompt.box)[3]),
                          "--box: outside the " + std::to_string(img.width) + "x" + std::to_string(img.height) + " image");
    for (auto& p : prompt.points)
      check(inside(p[0], p[1]), "--point: outside the " + std::to_string(img.width) + "x" + std::to_string(img.height) + " image");
    models::SamImageInput in = m.preprocess(img);
    models::SamMask mask = m.segment(m.embed(in), in, prompt);
    Image out{img.width, img.height, 1, std::vector<uint8_t>(size_t(img.width) * img.height)};
    int64_t area = 0;
    for (size_t i = 0; i < out.pixels.size(); ++i) {
      out.pixels[i] = mask.logits.f32()[i] > 0.f ? 255 : 0;
      area += out.pixels[i] != 0;
    }
    if (!a->overlay.empty()) save_png(a->overlay, overlay(img, mask.logits, prompt));
    save_png(a->out, out);
    fmt::print("{}: mask of {} pixels ({:.1f}% of the image), predicted IoU {:.3f} (mask token {}) -> {}\n", a->image,
               area, 100.0 * double(area) / double(out.pixels.size()), mask.iou_pred, mask.token, a->out);
  });
}

}  // namespace vs::cli
