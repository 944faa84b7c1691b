// ONNX model files (protobuf, read with Debian's libonnx_proto): initialisers, Constant-node
// tensors and the node list with the few attributes an importer needs. Only float32 tensors are
// kept as data (what exported PyTorch weights are); shape tensors and other dtypes are skipped.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "io/state_dict.h"

namespace vs {

struct OnnxNode {
  std::string op, name;  // op_type ("MatMul") and the exporter's node name ("/layers.0/.../MatMul")
  std::vector<std::string> inputs, outputs;
  std::map<std::string, std::vector<int64_t>> ints;  // int and int-list attributes
  std::map<std::string, float> floats;
};

struct OnnxModel {
  StateDict initializers;  // float32 initialisers by name (many anonymous: "onnx::MatMul_2385")
  StateDict constants;     // float32 outputs of Constant nodes, by output name
  std::vector<OnnxNode> nodes;  // in graph order, Constant nodes left out
  std::string producer;    // "pytorch 2.1.0"

  // Nodes that read the value `name` as an input.
  std::vector<const OnnxNode*> consumers(const std::string& name) const;
};

// Throws vs::Error("PATH: problem") on an unreadable or invalid file.
OnnxModel load_onnx(const std::string& path);

}  // namespace vs
