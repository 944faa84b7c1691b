#include "eval/segment.h"

#include <filesystem>
#include <limits>

#include "core/error.h"
#include "core/progress.h"
#include "io/file.h"

namespace vs::eval {
namespace fs = std::filesystem;

std::vector<SegPrompt> parse_seg_prompts(const std::string& s) {
  if (s == "box") return {SegPrompt::box};
  if (s == "click") return {SegPrompt::click};
  if (s == "box,click") return {SegPrompt::box, SegPrompt::click};
  throw Error("--prompt: expected box, click or box,click, got '" + s + "'");
}

std::string seg_prompt_name(SegPrompt p) { return p == SegPrompt::box ? "box" : "click"; }

std::array<float, 4> mask_box(const Image& m, const std::string& name) {
  int x0 = m.width, y0 = m.height, x1 = -1, y1 = -1;
  for (int y = 0; y < m.height; ++y)
    for (int x = 0; x < m.width; ++x)
      if (m.row(y)[x] > 127) x0 = std::min(x0, x), y0 = std::min(y0, y), x1 = std::max(x1, x), y1 = std::max(y1, y);
  check(x1 >= 0, name + ": ground-truth mask is empty");
  return {float(x0), float(y0), float(x1), float(y1)};
}

// 1-d squared Euclidean distance transform (Felzenszwalb & Huttenlocher 2012), in place:
// f[q] <- min_p (q - p)^2 + f[p], via the lower envelope of parabolas.
static void edt_1d(std::vector<double>& f) {
  const int n = int(f.size());
  std::vector<double> d(static_cast<size_t>(n)), z(static_cast<size_t>(n) + 1);
  std::vector<int> v(static_cast<size_t>(n));
  auto meet = [&](int q, int p) { return ((f[size_t(q)] + double(q) * q) - (f[size_t(p)] + double(p) * p)) / (2.0 * (q - p)); };
  int k = 0;
  z[0] = -std::numeric_limits<double>::infinity();
  z[1] = std::numeric_limits<double>::infinity();
  for (int q = 1; q < n; ++q) {
    double s = meet(q, v[size_t(k)]);
    while (s <= z[size_t(k)]) s = meet(q, v[size_t(--k)]);
    v[size_t(++k)] = q;
    z[size_t(k)] = s;
    z[size_t(k) + 1] = std::numeric_limits<double>::infinity();
  }
  k = 0;
  for (int q = 0; q < n; ++q) {
    while (z[size_t(k) + 1] < q) ++k;
    const int p = v[size_t(k)];
    d[size_t(q)] = double(q - p) * (q - p) + f[size_t(p)];
  }
  f = d;
}

std::array<float, 2> mask_click(const Image& m, const std::string& name) {
  // Pad by one background pixel so that the image border counts as background (RITM pads too).
  const int W = m.width + 2, H = m.height + 2;
  const double inf = 1e18;
  std::vector<double> dt(size_t(W) * H, 0.0);
  bool any = false;
  for (int y = 0; y < m.height; ++y)
    for (int x = 0; x < m.width; ++x)
      if (m.row(y)[x] > 127) dt[size_t(y + 1) * W + x + 1] = inf, any = true;
  check(any, name + ": ground-truth mask is empty");
  std::vector<double> col(static_cast<size_t>(H)), row(static_cast<size_t>(W));
  for (int x = 0; x < W; ++x) {
    for (int y = 0; y < H; ++y) col[size_t(y)] = dt[size_t(y) * W + x];
    edt_1d(col);
    for (int y = 0; y < H; ++y) dt[size_t(y) * W + x] = col[size_t(y)];
  }
  double best = -1;
  std::array<float, 2> click{};
  for (int y = 1; y + 1 < H; ++y) {
    for (int x = 0; x < W; ++x) row[size_t(x)] = dt[size_t(y) * W + x];
    edt_1d(row);
    for (int x = 1; x + 1 < W; ++x)
      if (row[size_t(x)] > best) best = row[size_t(x)], click = {float(x - 1), float(y - 1)};
  }
  return click;
}

models::SamPrompt prompt_for(const Image& gt, SegPrompt kind, const std::string& name) {
  models::SamPrompt p;
  if (kind == SegPrompt::box) {
    p.box = mask_box(gt, name);
  } else {
    p.points.push_back(mask_click(gt, name));
    p.labels.push_back(1.f);
  }
  return p;
}

double mask_iou(const Image& gt, const Tensor& logits) {
  int64_t inter = 0, uni = 0;
  for (int y = 0; y < gt.height; ++y)
    for (int x = 0; x < gt.width; ++x) {
      const bool g = gt.row(y)[x] > 127, p = logits.f32()[int64_t(y) * gt.width + x] > 0.f;
      inter += g && p;
      uni += g || p;
    }
  return uni == 0 ? 1.0 : double(inter) / double(uni);
}

std::vector<std::string> read_seg_split(const std::string& split) {
  std::vector<std::string> names;
  std::string text = read_text(split), line;
  for (size_t i = 0; i <= text.size(); ++i) {
    if (i == text.size() || text[i] == '\n') {
      while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
      if (!line.empty()) names.push_back(line);
      line.clear();
    } else {
      line += text[i];
    }
  }
  check(!names.empty(), split + ": no images listed");
  return names;
}

std::string seg_gt_path(const std::string& dir, const std::string& name) {
  return (fs::path(dir) / "gt" / fs::path(name).replace_extension(".png")).string();
}

std::vector<SegResult> evaluate_segmentation(const models::SamModel& model, const std::string& dir,
                                             const std::string& split, const std::vector<SegPrompt>& kinds,
                                             int64_t limit) {
  std::vector<std::string> names = read_seg_split(split);
  if (limit > 0 && int64_t(names.size()) > limit) names.resize(size_t(limit));
  std::vector<SegResult> results(kinds.size());
  std::vector<double> sums(kinds.size(), 0.0);
  Progress bar("eval-seg", int64_t(names.size()));
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string img_path = (fs::path(dir) / "img" / names[i]).string();
    const std::string gt_path = seg_gt_path(dir, names[i]);
    Image img = load_image(img_path), gt = load_gray(gt_path);
    check(gt.width == img.width && gt.height == img.height, gt_path + ": mask size differs from its image");
    models::SamImageInput in = model.preprocess(img);
    Tensor emb = model.embed(in);
    std::string extra;
    for (size_t k = 0; k < kinds.size(); ++k) {
      models::SamMask m = model.segment(emb, in, prompt_for(gt, kinds[k], gt_path));
      results[k].names.push_back(names[i]);
      results[k].ious.push_back(mask_iou(gt, m.logits));
      sums[k] += results[k].ious.back();
      extra += seg_prompt_name(kinds[k]) + " mIoU " + std::to_string(sums[k] / double(i + 1)).substr(0, 6) + " ";
    }
    bar.update(int64_t(i) + 1, extra);
  }
  bar.finish();
  for (size_t k = 0; k < kinds.size(); ++k) results[k].miou = sums[k] / double(names.size());
  return results;
}

}  // namespace vs::eval
