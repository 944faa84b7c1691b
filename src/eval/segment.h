// Interactive-segmentation evaluation (COCO-MVal protocol): prompt a SAM model with the box of
// each ground-truth instance mask, or one click at the mask's interior point farthest from its
// border, and report the IoU of the predicted mask with the ground truth, averaged (mIoU).
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "io/image.h"
#include "models/sam.h"

namespace vs::eval {

enum class SegPrompt { box, click };
std::vector<SegPrompt> parse_seg_prompts(const std::string& s);  // "box", "click" or "box,click"
std::string seg_prompt_name(SegPrompt p);

// Tight box (inclusive pixel extents x0, y0, x1, y1) of the non-zero pixels; throws on an empty mask.
std::array<float, 4> mask_box(const Image& mask, const std::string& name);
// The object pixel farthest (exact Euclidean distance) from any background pixel or the image
// border; ties go to the first in row-major order (as RITM's np.where(dt == max)[0]).
std::array<float, 2> mask_click(const Image& mask, const std::string& name);
models::SamPrompt prompt_for(const Image& gt, SegPrompt kind, const std::string& name);

double mask_iou(const Image& gt, const Tensor& logits);  // gt > 127 vs logits > 0

struct SegResult {
  std::vector<std::string> names;
  std::vector<double> ious;
  double miou = 0;
};

// The NAME.jpg lines of a split file (blank lines skipped); throws when there are none.
std::vector<std::string> read_seg_split(const std::string& split);
std::string seg_gt_path(const std::string& dir, const std::string& name);  // DIR/gt/NAME.png

// DIR/img/NAME.jpg with DIR/gt/NAME.png for each NAME.jpg listed in `split`; one result per
// prompt kind, all from the same image embedding (the encoder runs once per image).
std::vector<SegResult> evaluate_segmentation(const models::SamModel& model, const std::string& dir,
                                             const std::string& split, const std::vector<SegPrompt>& kinds,
                                             int64_t limit = 0);

}  // namespace vs::eval
