#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/common.h"
#include "eval/latency.h"

namespace vs::cli {

void add_bench(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench", "Latency (median, p90), throughput and peak memory");
  struct Args : ModelArgs {
    std::vector<int64_t> batches{1};
    int iters = 20;
    double seconds = 2.0;
    std::string json;
  };
  auto a = std::make_shared<Args>();
  add_model_args(cmd, *a);
  cmd->add_option("--batch", a->batches, "batch size(s), e.g. --batch 1 8")
      ->check(CLI::Range(int64_t(1), int64_t(4096)));
  cmd->add_option("--iters", a->iters, "minimum timed iterations")->check(CLI::Range(1, 100000));
  cmd->add_option("--seconds", a->seconds, "minimum timed seconds per batch size")
      ->check(CLI::Range(0.0, 3600.0));
  cmd->add_option("--json", a->json, "also write the results as JSON here");
  cmd->callback([a] {
    auto m = open_model(*a);
    nlohmann::json runs = nlohmann::json::array();
    fmt::print("{} ({} params, {})\n", a->path, m.num_params(), human_bytes(m.param_bytes()));
    for (int64_t b : a->batches) {
      auto r = eval::measure_latency(m, b, a->iters, a->seconds);
      fmt::print("batch {:>3}  threads {}  median {:8.2f} ms  p90 {:8.2f} ms  {:8.1f} images/s  peak RSS {}\n",
                 r.batch, r.threads, r.median_ms, r.p90_ms, r.images_per_s, human_bytes(r.peak_rss_bytes));
      runs.push_back({{"batch", r.batch}, {"threads", r.threads}, {"iters", r.iters},
                      {"median_ms", r.median_ms}, {"p90_ms", r.p90_ms}, {"mean_ms", r.mean_ms},
                      {"images_per_s", r.images_per_s}, {"peak_rss_bytes", r.peak_rss_bytes}});
    }
    if (!a->json.empty())
      write_json(a->json, {{"model", a->path}, {"params", m.num_params()}, {"quantized", quantized_points(m)},
                           {"bytes", m.param_bytes()}, {"runs", runs}});
  });
}

}  // namespace vs::cli
