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
  vs::cli::add_info(app);
  vs::cli::add_classify(app);
  vs::cli::add_eval(app);
  vs::cli::add_bench(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const vs::Error& e) {
    std::fprintf(stderr, "vitshrink: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vitshrink: internal error: %s\n", e.what());
    return 2;
  }
  return 0;
}
