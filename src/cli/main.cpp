// vitshrink: compress pretrained Vision Transformers and run them fast on CPU.
#include <cstdio>
#include <exception>

#include "cli/commands.h"
#include "core/error.h"

int main(int argc, char** argv) {
  CLI::App app{
      "vitshrink - make pretrained Vision Transformers small and fast on CPU, and measure it.\n"
      "MODEL is a folder with config.json + model.safetensors (timm / Hugging Face layout, or one\n"
      "vitshrink wrote), or a .safetensors / .pth file with --arch NAME."};
  app.require_subcommand(1);
  if (argc == 1) {  // no command: show what there is to do
    std::fputs(app.help().c_str(), stdout);
    return 0;
  }
  vs::cli::add_info(app);
  vs::cli::add_classify(app);
  vs::cli::add_eval(app);
  vs::cli::add_bench(app);
  vs::cli::add_quantize(app);
  vs::cli::add_import_sam(app);
  vs::cli::add_segment(app);
  vs::cli::add_eval_seg(app);
  vs::cli::add_distill(app);
  vs::cli::add_lowrank(app);
  vs::cli::add_prune(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    std::fprintf(stderr, "vitshrink: error: %s (see --help)\n", e.what());
    return e.get_exit_code();
  } catch (const vs::Error& e) {
    std::fprintf(stderr, "vitshrink: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vitshrink: internal error: %s\n", e.what());
    return 2;
  }
  return 0;
}
