// One function per `vitshrink` subcommand; main.cpp wires them to CLI11.
#pragma once
#include <CLI/CLI.hpp>

namespace vs::cli {

void add_info(CLI::App& app);
void add_classify(CLI::App& app);
void add_eval(CLI::App& app);
void add_bench(CLI::App& app);
void add_quantize(CLI::App& app);
void add_import_sam(CLI::App& app);
void add_segment(CLI::App& app);
void add_eval_seg(CLI::App& app);
void add_distill(CLI::App& app);
void add_lowrank(CLI::App& app);
void add_prune(CLI::App& app);

}  // namespace vs::cli
