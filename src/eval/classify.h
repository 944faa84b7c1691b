// Classification: batches of preprocessed images, top-k, and accuracy over a labelled folder.
#pragma once
#include <cstdint>
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
  double seconds = 0;         // loading and the model's forward passes (not the reference's)
  // Fidelity to a reference model (e.g. the original of a compressed one), when one is given:
  // mean KL(reference softmax || model softmax) over the images, and the percent of images whose
  // top-1 class is the reference's. Unlike top-1 on a few hundred labelled images, these see every
  // change in the logits, so they separate models whose accuracies differ by noise only.
  bool has_reference = false;
  double kl = 0, agreement = 0;
  // Per image, in the samples' order: top-1 correct, and (with a reference) the image's KL. Two
  // models evaluated on the same images can then be compared image by image (paired), which
  // separates much smaller differences than two means do (bench/paired_compare.py).
  std::vector<uint8_t> image_top1;
  std::vector<double> image_kl;
};

Accuracy evaluate(const models::ViT& model, const std::vector<Sample>& samples, int batch = 32,
                  bool progress = true, const models::ViT* reference = nullptr);

}  // namespace vs::eval
