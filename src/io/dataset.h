// ImageNet-style classification folders: files named WNID_anything.JPEG, the class index is the
// line of the wnid in classes.txt ("wnid readable_label" per line, standard class order).
#pragma once
#include <string>
#include <vector>

namespace vs {

struct Labels {
  std::vector<std::string> wnids, names;  // index = class id
  int index_of(const std::string& wnid) const;  // -1 if absent
};

// Reads classes.txt. Throws vs::Error naming the file on an empty or malformed list.
Labels load_labels(const std::string& path);

struct Sample {
  std::string path;
  int label = -1;
};

// The images of DIR (or those listed in SPLIT, one file name per line), labelled by wnid.
// Throws on an empty folder, a split naming a missing file, or an unknown wnid.
std::vector<Sample> imagenet_folder(const std::string& dir, const std::string& split,
                                    const Labels& labels);

}  // namespace vs
