#include "io/safetensors.h"

#include <cstring>
#include <nlohmann/json.hpp>
#include <ostream>

#include "core/error.h"
#include "io/file.h"

namespace vs {
namespace {

struct StDtype {
  const char* name;
  size_t size;
};
constexpr StDtype kDtypes[] = {{"F32", 4}, {"F16", 2}, {"BF16", 2}, {"F64", 8}, {"I8", 1},
                               {"U8", 1},  {"I32", 4}, {"I64", 8}, {"BOOL", 1}};

Tensor decode(const std::string& dt, const Shape& shape, const char* src) {
  int64_t n = numel(shape);
  auto to_f32 = [&](auto conv) {
    Tensor t(shape);
    float* d = t.f32();
    for (int64_t i = 0; i < n; ++i) d[i] = conv(i);
    return t;
  };
  if (dt == "F32") {
    Tensor t(shape);
    std::memcpy(t.raw(), src, size_t(n) * 4);
    return t;
  }
  if (dt == "F16" || dt == "BF16") {
    bool half = dt == "F16";
    return to_f32([&](int64_t i) {
      uint16_t h;
      std::memcpy(&h, src + 2 * i, 2);
      return half ? f16_to_f32(h) : bf16_to_f32(h);
    });
  }
  if (dt == "F64") {
    return to_f32([&](int64_t i) {
      double v;
      std::memcpy(&v, src + 8 * i, 8);
      return float(v);
    });
  }
  DType it = dt == "I8" ? DType::i8 : dt == "I32" ? DType::i32 : dt == "I64" ? DType::i64 : DType::u8;
  Tensor t(shape, it);
  std::memcpy(t.raw(), src, t.nbytes());
  return t;
}

}  // namespace

SafetensorsFile load_safetensors(const std::string& path) {
  auto buf = read_file(path);
  check(buf.size() >= 8, path + ": truncated safetensors file (" + std::to_string(buf.size()) +
                             " bytes, no header)");
  uint64_t hlen;
  std::memcpy(&hlen, buf.data(), 8);
  check(hlen <= buf.size() - 8, path + ": safetensors header length " + std::to_string(hlen) +
                                    " runs past the end of the file (truncated?)");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(buf.begin() + 8, buf.begin() + 8 + long(hlen));
  } catch (const std::exception& e) {
    throw Error(path + ": safetensors header is not valid JSON");
  }
  check(header.is_object(), path + ": safetensors header is not a JSON object");
  const char* data = buf.data() + 8 + hlen;
  uint64_t data_len = buf.size() - 8 - hlen;

  SafetensorsFile out;
  for (auto& [name, info] : header.items()) {
    if (name == "__metadata__") {
      if (info.is_object())
        for (auto& [k, v] : info.items())
          if (v.is_string()) out.metadata[k] = v.get<std::string>();
      continue;
    }
    std::string where = path + ": tensor '" + name + "'";
    check(info.is_object() && info.contains("dtype") && info.contains("shape") &&
              info.contains("data_offsets"),
          where + " lacks dtype/shape/data_offsets");
    std::string dt = info["dtype"].is_string() ? info["dtype"].get<std::string>() : "";
    const StDtype* known = nullptr;
    for (auto& d : kDtypes)
      if (dt == d.name) known = &d;
    check(known != nullptr, where + " has unsupported dtype '" + dt + "'");
    Shape shape;
    for (auto& d : info["shape"]) {
      check(d.is_number_integer() && d.get<int64_t>() >= 0, where + " has an invalid shape");
      shape.push_back(d.get<int64_t>());
    }
    auto& off = info["data_offsets"];
    check(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() &&
              off[1].is_number_unsigned(),
          where + " has invalid data_offsets");
    uint64_t b = off[0], e = off[1];
    check(b <= e && e <= data_len, where + " data_offsets [" + std::to_string(b) + ", " +
                                       std::to_string(e) + "] run past the end of the file (" +
                                       std::to_string(data_len) + " data bytes; truncated?)");
    check(e - b == uint64_t(numel(shape)) * known->size,
          where + " byte size does not match its shape " + shape_str(shape));
    check(dt != "BOOL", where + " has dtype BOOL, which no vitshrink model uses");
    out.tensors[name] = decode(dt, shape, data + b);
  }
  return out;
}

void save_safetensors(const std::string& path, const StateDict& tensors,
                      const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (auto& [name, t] : tensors) {
    check(t.dtype() != DType::f16 && t.dtype() != DType::bf16, "save_safetensors: half tensors are not stored");
    header[name] = {{"dtype", dtype_name(t.dtype())}, {"shape", t.shape()},
                    {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  std::string h = header.dump();
  h.append((8 - (8 + h.size()) % 8) % 8, ' ');  // data starts 8-byte aligned, as the spec advises
  write_atomic(path, [&](std::ostream& f) {
    uint64_t n = h.size();
    f.write(reinterpret_cast<const char*>(&n), 8);
    f.write(h.data(), std::streamsize(h.size()));
    for (auto& [name, t] : tensors) f.write(static_cast<const char*>(t.raw()), std::streamsize(t.nbytes()));
  });
}

}  // namespace vs
