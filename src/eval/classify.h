// Classification: batches of preprocessed images, top-k, and accuracy over a labelled folder.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "io/dataset.h"
#include "models/vit.h"

namespace vs::eval {

// The k largest (index, value) pairs of one row, best first (ties: lower index first).
std::vector<std::pair<int, float>> topk(const float* row, int n, int k);

struct Accuracy {
  double top1 = 0, top5 = 0;  // percent
  int64_t images = 0;
  double seconds = 0;
};

Accuracy evaluate(const models::ViT& model, const std::vector<Sample>& samples, int batch = 32,
                  bool progress = true);

}  // namespace vs::eval
