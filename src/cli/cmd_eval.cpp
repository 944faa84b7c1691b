#include <filesystem>
#include <optional>
#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "eval/classify.h"
#include "models/load.h"

namespace vs::cli {

void add_eval(CLI::App& app) {
  auto* cmd = app.add_subcommand("eval", "Top-1 / top-5 accuracy on an ImageNet-style folder");
  struct Args : ModelArgs {
    std::string data, split, labels, report, reference;
    int batch = 32;
  };
  auto a = std::make_shared<Args>();
  add_model_args(cmd, *a);
  cmd->add_option("--data", a->data, "folder of WNID_*.JPEG images")->required();
  cmd->add_option("--split", a->split, "file listing the images to use (default: all in --data)");
  cmd->add_option("--labels", a->labels, "classes.txt (default: DATA/classes.txt)");
  cmd->add_option("--report", a->report, "write {top1, top5, images, seconds, ..., per_image: [{image, top1, kl}]} as JSON here");
  cmd->add_option("--batch", a->batch, "images per forward pass")->check(CLI::Range(1, 4096));
  cmd->add_option("--reference", a->reference,
                  "also compare with this model folder (e.g. the original of a compressed model): mean KL of\n"
                  "the logits (reference || model) and top-1 agreement, which see changes top-1 is too coarse for");
  cmd->callback([a] {
    auto m = open_model(*a);
    std::string labels_path = a->labels.empty() ? (std::filesystem::path(a->data) / "classes.txt").string() : a->labels;
    check(std::filesystem::exists(labels_path), labels_path + ": no labels file; pass --labels classes.txt");
    auto samples = imagenet_folder(a->data, a->split, load_labels(labels_path));
    std::optional<models::ViT> ref;
    if (!a->reference.empty()) ref = models::load_model(a->reference);
    auto r = eval::evaluate(m, samples, a->batch, true, ref ? &*ref : nullptr);
    fmt::print("top1 {:.2f}  top5 {:.2f}  images {}  seconds {:.1f}  ({:.1f} images/s)\n", r.top1,
               r.top5, r.images, r.seconds, double(r.images) / r.seconds);
    if (ref) fmt::print("vs reference {}: mean KL {:.5f}  top-1 agreement {:.2f}%\n", a->reference, r.kl, r.agreement);
    nlohmann::json report{{"model", a->path}, {"data", a->data}, {"split", a->split},
                          {"top1", r.top1}, {"top5", r.top5}, {"images", r.images},
                          {"seconds", r.seconds}, {"batch", a->batch}, {"quantized", quantized_points(m)}};
    if (ref) report["reference"] = {{"model", a->reference}, {"kl", r.kl}, {"agreement", r.agreement}};
    // Image by image, for paired comparisons of two models (bench/paired_compare.py).
    nlohmann::json per_image = nlohmann::json::array();
    for (size_t i = 0; i < samples.size(); ++i) {
      nlohmann::json row{{"image", std::filesystem::path(samples[i].path).filename().string()},
                         {"top1", bool(r.image_top1[i])}};
      if (ref) row["kl"] = r.image_kl[i];
      per_image.push_back(std::move(row));
    }
    report["per_image"] = std::move(per_image);
    if (!a->report.empty()) write_json(a->report, report);
  });
}

}  // namespace vs::cli
