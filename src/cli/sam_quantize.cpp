#include "cli/sam_quantize.h"

#include <filesystem>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "compress/quant/sam_ptq.h"
#include "core/error.h"
#include "core/threading.h"
#include "eval/segment.h"
#include "models/load.h"
#include "nn/exec_mode.h"

namespace vs::cli {

void quantize_sam_folder(const ModelArgs& a, const quant::PtqSettings& s, const std::string& data,
                         const std::string& split, const std::string& out) {
  check(!data.empty() && !split.empty(), "quantize (SAM): needs --calib DIR (img/, gt/) and --split FILE (e.g. DIR/calib.txt)");
  set_num_threads(a.threads);
  nn::set_exec_mode(a.simulate ? nn::ExecMode::simulated : nn::ExecMode::integer);
  models::SamModel m = models::SamModel::load(a.path);
  std::vector<quant::SamCalibItem> calib;
  for (auto& name : eval::read_seg_split(split)) {
    const std::string img = (std::filesystem::path(data) / "img" / name).string(), gt_path = eval::seg_gt_path(data, name);
    check(std::filesystem::exists(img), img + ": calibration image not found");
    Image gt = load_gray(gt_path);
    calib.push_back({img, {eval::prompt_for(gt, eval::SegPrompt::box, gt_path), eval::prompt_for(gt, eval::SegPrompt::click, gt_path)}});
  }
  nlohmann::json section = quant::quantize_sam(m, s, calib);
  nlohmann::json cfg = m.config;
  cfg["quantization"] = section;
  models::save_model_folder(out, m.state_dict(), cfg);
  fmt::print("quantized {} -> {}: W{}A{}, {} Linear layers, {} attention modules, calibrated on {} images (box + click prompts)\n",
             a.path, out, s.wbits, s.abits, section["layers"].size(), section["attention"].size(), calib.size());
  if (s.big) {
    std::vector<std::string> fired;
    for (auto& [name, r] : section["big"].items())
      if (r["flipped_channels"].get<int>() > 0) fired.push_back(fmt::format("{} ({} ch)", name, r["flipped_channels"].get<int>()));
    fmt::print("BIG: keys bimodal (flipped) in {} of {} attention modules{}{}\n", fired.size(), section["big"].size(),
               fired.empty() ? "" : ": ", fmt::join(fired, ", "));
  }
  if (s.prob_quantizer != quant::ProbQuantizer::uniform && s.prob_bits < 16) {
    fmt::print("probability quantizer {} ({}-bit), tau per attention module (0 = uniform):", quant::prob_quantizer_name(s.prob_quantizer), s.prob_bits);
    for (auto& [name, at] : section["attention"].items()) fmt::print(" {}", at["p_tau"].get<int>());
    fmt::print("\n");
  }
}

}  // namespace vs::cli
