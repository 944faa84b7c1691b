// Training-time augmentation for small calibration sets (labels are not needed: the teacher sees
// exactly the images the student sees): random resized crop, horizontal flip, and mixing two
// images of the batch (mixup or cutmix). Everything is drawn from the given generator, so the
// same seed gives the same batches.
#pragma once
#include <random>
#include <vector>

#include "core/tensor.h"
#include "io/image.h"
#include "io/preprocess.h"

namespace vs::train {

struct AugmentSettings {
  double min_scale = 0.25;     // random resized crop: area fraction in [min_scale, 1]
  bool flip = true;            // horizontal flip with probability 1/2
  double mix_prob = 0.5;       // probability that a batch is mixed (then mixup or cutmix, 1/2 each)
  double mixup_alpha = 0.8;    // lambda ~ Beta(alpha, alpha)
  double cutmix_alpha = 1.0;
};

// One augmented, normalised batch [images.size(), 3, S, S] (S, mean, std, filter from pre).
Tensor augment_batch(const std::vector<const Image*>& images, const PreprocessConfig& pre,
                     const AugmentSettings& s, std::mt19937_64& rng);

}  // namespace vs::train
