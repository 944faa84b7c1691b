// `vitshrink quantize` on a SAM model folder (compress/quant/sam_ptq.h).
#pragma once
#include <string>

#include "cli/common.h"
#include "compress/quant/ptq.h"

namespace vs::cli {

// Calibration: the images of `split` in `data` (img/NAME.jpg, gt/NAME.png), each with the box and
// the click prompt of its ground-truth instance (eval/segment.h's protocol).
void quantize_sam_folder(const ModelArgs& a, const quant::PtqSettings& s, const std::string& data,
                         const std::string& split, const std::string& out);

}  // namespace vs::cli
