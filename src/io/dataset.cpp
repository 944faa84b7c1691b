#include "io/dataset.h"

#include <algorithm>
#include <filesystem>
#include <sstream>

#include "core/error.h"
#include "io/file.h"

namespace vs {
namespace fs = std::filesystem;

int Labels::index_of(const std::string& wnid) const {
  auto it = std::find(wnids.begin(), wnids.end(), wnid);
  return it == wnids.end() ? -1 : int(it - wnids.begin());
}

Labels load_labels(const std::string& path) {
  std::istringstream in(read_text(path));
  Labels l;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    auto sp = line.find(' ');
    l.wnids.push_back(line.substr(0, sp));
    l.names.push_back(sp == std::string::npos ? line : line.substr(sp + 1));
  }
  check(!l.wnids.empty(), path + ": no class labels in this file");
  return l;
}

static bool is_image_name(const fs::path& p) {
  std::string e = p.extension().string();
  std::transform(e.begin(), e.end(), e.begin(), ::tolower);
  return e == ".jpeg" || e == ".jpg" || e == ".png";
}

std::vector<Sample> imagenet_folder(const std::string& dir, const std::string& split,
                                    const Labels& labels) {
  check(fs::is_directory(dir), dir + ": not a folder");
  std::vector<std::string> names;
  if (!split.empty()) {
    std::istringstream in(read_text(split));
    std::string line;
    while (std::getline(in, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty()) continue;
      check(fs::exists(fs::path(dir) / line), split + ": lists '" + line + "', which is not in " + dir);
      names.push_back(line);
    }
    check(!names.empty(), split + ": split file lists no images");
  } else {
    for (auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file() && is_image_name(e.path())) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    check(!names.empty(), dir + ": no .JPEG/.jpg/.png images in this folder");
  }
  std::vector<Sample> out;
  for (auto& n : names) {
    std::string wnid = n.substr(0, n.find('_'));
    int label = labels.index_of(wnid);
    check(label >= 0, (fs::path(dir) / n).string() + ": class '" + wnid + "' is not in the labels file");
    out.push_back({(fs::path(dir) / n).string(), label});
  }
  return out;
}

}  // namespace vs
