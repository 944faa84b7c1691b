// safetensors: 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}, then the data.
#pragma once
#include <map>
#include <string>

#include "io/state_dict.h"

namespace vs {

struct SafetensorsFile {
  StateDict tensors;                             // F16/BF16/F64 converted to F32; ints kept
  std::map<std::string, std::string> metadata;   // "__metadata__"
};

// Validates everything (header size, JSON, dtypes, shapes vs offsets, bounds) and throws
// vs::Error("PATH: problem") on the first violation.
SafetensorsFile load_safetensors(const std::string& path);

// Writes atomically (PATH.tmp + rename), tensors in name order, 64-byte aligned data.
void save_safetensors(const std::string& path, const StateDict& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace vs
