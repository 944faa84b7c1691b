// A SAM-family segmenter: image encoder (TinyViT), prompt encoder and mask decoder, loaded from a
// model folder (config.json with "architecture": "sam" + model.safetensors, as `import-sam`
// writes), with SAM's preprocessing (resize longest side to 1024, normalise, zero-pad
// bottom/right) and mask post-processing back to the original image size (SamOnnxModel's:
// bilinear to 1024, crop the padding, bilinear to the original size).
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "io/image.h"
#include "models/sam_decoder.h"
#include "models/tiny_vit.h"

namespace vs::models {

// One prompt in original-image pixel coordinates: a box, or clicks (label 1 positive, 0 negative).
struct SamPrompt {
  std::optional<std::array<float, 4>> box;  // x0, y0, x1, y1
  std::vector<std::array<float, 2>> points;
  std::vector<float> labels;
};

struct SamImageInput {
  Tensor pixels;  // [3, S, S] normalised, padded
  int orig_w = 0, orig_h = 0, new_w = 0, new_h = 0;
};

struct SamMask {
  Tensor logits;  // [orig_h, orig_w]; the mask is logits > 0
  float iou_pred = 0;
  int token = 0;  // which mask token it came from
};

class SamModel {
 public:
  nlohmann::json config;
  TinyViT encoder;
  PromptEncoder prompt_encoder;
  MaskDecoder mask_decoder;
  std::array<float, 3> pixel_mean{123.675f, 116.28f, 103.53f}, pixel_std{58.395f, 57.12f, 57.375f};

  // Throws vs::Error naming the file on a folder that is not a SAM model.
  static SamModel load(const std::string& dir);
  static bool is_sam_folder(const std::string& dir);
  StateDict state_dict() const;
  int64_t num_params() const;
  // Every Linear layer (encoder 1x1 convs, attention and MLP layers; decoder projections and
  // heads) with its name, for compression stages and `info`.
  std::vector<std::pair<std::string, std::unique_ptr<nn::Linear>*>> linears();
  // Every attention module (encoder windows, decoder self / cross attention), for quantisation.
  std::vector<nn::MhaModule> attentions();

  SamImageInput preprocess(const Image& img) const;
  Tensor embed(const SamImageInput& in) const;  // [C, grid, grid]
  // Points as SamOnnxModel takes them (model input frame, padding point included).
  SamPoints to_model_points(const SamPrompt& p, const SamImageInput& in) const;
  MaskDecoderOutput decode(const Tensor& embedding, const SamPoints& pts, const Tensor* mask_input = nullptr) const;
  SamMask segment(const Tensor& embedding, const SamImageInput& in, const SamPrompt& p) const;

 private:
  Tensor dense_pe_;  // [grid*grid, C], computed once
};

// SamOnnxModel.mask_postprocessing: [4g, 4g] low-res logits -> [orig_h, orig_w] logits.
Tensor postprocess_mask(const Tensor& low_res, int input_size, int new_w, int new_h, int orig_w, int orig_h);
// ONNX Resize (linear, half_pixel) of one [H, W] plane.
Tensor resize_bilinear(const float* src, int H, int W, int out_h, int out_w);

}  // namespace vs::models
