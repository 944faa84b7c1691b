#include <cmath>
#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/common.h"
#include "eval/classify.h"
#include "io/dataset.h"

namespace vs::cli {

void add_classify(CLI::App& app) {
  auto* cmd = app.add_subcommand("classify", "Top-5 classes of each image, with probabilities");
  struct Args : ModelArgs {
    std::vector<std::string> images;
    std::string labels;
    int k = 5;
  };
  auto a = std::make_shared<Args>();
  add_model_args(cmd, *a);
  cmd->add_option("images", a->images, "JPEG or PNG files")->required()->check(CLI::ExistingFile);
  cmd->add_option("--labels", a->labels, "classes.txt: one 'wnid name' per line, in class order")
      ->check(CLI::ExistingFile);
  cmd->add_option("--top", a->k, "how many classes to print")->check(CLI::Range(1, 1000));
  cmd->callback([a] {
    auto m = open_model(*a);
    Labels labels;
    if (!a->labels.empty()) labels = load_labels(a->labels);
    const int K = int(m.cfg.num_classes);
    for (auto& path : a->images) {
      Tensor logits = m.forward(load_batch({path}, m.cfg.pre));
      std::vector<float> p(logits.f32(), logits.f32() + K);
      float mx = *std::max_element(p.begin(), p.end()), sum = 0;
      for (float& v : p) sum += (v = std::exp(v - mx));
      fmt::print("{}\n", path);
      for (auto& [c, v] : eval::topk(p.data(), K, a->k)) {
        std::string name = size_t(c) < labels.names.size()
                               ? labels.wnids[size_t(c)] + " " + labels.names[size_t(c)]
                               : "class " + std::to_string(c);
        fmt::print("  {:6.2f}%  {:>4}  {}\n", 100.0 * v / sum, c, name);
      }
    }
  });
}

}  // namespace vs::cli
