#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/threading.h"
#include "eval/segment.h"
#include "nn/exec_mode.h"

namespace vs::cli {

void add_eval_seg(CLI::App& app) {
  auto* cmd = app.add_subcommand("eval-seg",
                                 "mIoU of a SAM model on an instance-segmentation set (e.g. ../shared/data/coco-mval)");
  struct Args {
    std::string model, data, split, prompt = "box", report;
    int threads = 0;
    int64_t limit = 0;
    bool simulate = false;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("model", a->model, "SAM model folder (written by import-sam)")->required();
  cmd->add_option("--data", a->data, "folder with img/NAME.jpg and gt/NAME.png (255 = object)")->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--split", a->split, "file listing NAME.jpg, one per line (e.g. DATA/eval.txt)")->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--prompt", a->prompt,
                  "box: the ground-truth mask's tight box; click: one positive click at the mask point "
                  "farthest from its border; box,click: both, from one encoder pass per image (default box)")
      ->check(CLI::IsMember({"box", "click", "box,click"}));
  cmd->add_option("--report", a->report, "write every instance's IoU and the mIoU to this JSON file");
  cmd->add_option("--limit", a->limit, "evaluate only the first N listed images")->check(CLI::Range(int64_t(1), int64_t(1) << 40));
  cmd->add_option("--threads", a->threads, "CPU threads (default: all cores)")->check(CLI::Range(1, 1024));
  cmd->add_flag("--simulate", a->simulate,
                "run a quantised model's integer products as exact float math on the same codes (cross-check)");
  cmd->callback([a] {
    set_num_threads(a->threads);
    nn::set_exec_mode(a->simulate ? nn::ExecMode::simulated : nn::ExecMode::integer);
    models::SamModel m = models::SamModel::load(a->model);
    auto kinds = eval::parse_seg_prompts(a->prompt);
    auto results = eval::evaluate_segmentation(m, a->data, a->split, kinds, a->limit);
    nlohmann::json report = {{"model", a->model}, {"data", a->data}, {"split", a->split}};
    for (size_t k = 0; k < kinds.size(); ++k) {
      const auto& r = results[k];
      const std::string name = eval::seg_prompt_name(kinds[k]);
      fmt::print("{} prompt, {} instances: mIoU {:.4f}\n", name, r.ious.size(), r.miou);
      nlohmann::json per;
      for (size_t i = 0; i < r.names.size(); ++i) per[r.names[i]] = r.ious[i];
      report[name] = {{"instances", r.ious.size()}, {"miou", r.miou}, {"iou", per}};
    }
    if (!a->report.empty()) write_json(a->report, report);
  });
}

}  // namespace vs::cli
