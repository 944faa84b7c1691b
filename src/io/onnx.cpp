#include "io/onnx.h"

#include <onnx/onnx_pb.h>

#include <cstring>
#include <limits>

#include "core/error.h"
#include "io/file.h"

namespace vs {

// A float32 TensorProto as a Tensor (raw_data or float_data; external data is not supported).
static Tensor to_tensor(const onnx::TensorProto& t, const std::string& where) {
  Shape shape(t.dims().begin(), t.dims().end());
  for (int64_t d : shape) check(d >= 0, where + ": negative dimension");
  Tensor out(shape);
  const size_t n = size_t(out.numel());
  check(t.data_location() != onnx::TensorProto::EXTERNAL, where + ": external tensor data is not supported");
  if (!t.raw_data().empty()) {
    check(t.raw_data().size() == n * 4, where + ": raw data holds " + std::to_string(t.raw_data().size()) +
                                            " bytes, shape " + shape_str(shape) + " needs " + std::to_string(n * 4));
    std::memcpy(out.raw(), t.raw_data().data(), n * 4);
  } else {
    check(size_t(t.float_data_size()) == n, where + ": float_data does not match shape " + shape_str(shape));
    std::copy(t.float_data().begin(), t.float_data().end(), out.f32());
  }
  return out;
}

std::vector<const OnnxNode*> OnnxModel::consumers(const std::string& name) const {
  std::vector<const OnnxNode*> out;
  for (auto& n : nodes)
    for (auto& in : n.inputs)
      if (in == name) {
        out.push_back(&n);
        break;
      }
  return out;
}

OnnxModel load_onnx(const std::string& path) {
  std::vector<char> bytes = read_file(path);
  check(bytes.size() < size_t(std::numeric_limits<int>::max()), path + ": file too large for protobuf");
  onnx::ModelProto proto;
  check(proto.ParseFromArray(bytes.data(), int(bytes.size())) && proto.has_graph(),
        path + ": not a valid ONNX model (protobuf parse failed)");
  OnnxModel m;
  m.producer = proto.producer_name() + " " + proto.producer_version();
  const auto& g = proto.graph();
  for (auto& t : g.initializer())
    if (t.data_type() == onnx::TensorProto::FLOAT)
      m.initializers[t.name()] = to_tensor(t, path + ": initializer " + t.name());
  for (auto& n : g.node()) {
    if (n.op_type() == "Constant") {
      for (auto& a : n.attribute())
        if (a.name() == "value" && a.has_t() && a.t().data_type() == onnx::TensorProto::FLOAT)
          m.constants[n.output(0)] = to_tensor(a.t(), path + ": constant " + n.output(0));
      continue;
    }
    OnnxNode node{n.op_type(), n.name(), {n.input().begin(), n.input().end()},
                  {n.output().begin(), n.output().end()}, {}, {}};
    for (auto& a : n.attribute()) {
      if (a.type() == onnx::AttributeProto::INT) node.ints[a.name()] = {a.i()};
      if (a.type() == onnx::AttributeProto::INTS) node.ints[a.name()] = {a.ints().begin(), a.ints().end()};
      if (a.type() == onnx::AttributeProto::FLOAT) node.floats[a.name()] = a.f();
    }
    m.nodes.push_back(std::move(node));
  }
  check(!m.nodes.empty(), path + ": ONNX graph has no nodes");
  return m;
}

}  // namespace vs
