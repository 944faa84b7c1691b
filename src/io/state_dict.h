// A checkpoint in memory: parameter name (timm spelling, e.g. "blocks.3.attn.qkv.weight") -> tensor.
#pragma once
#include <map>
#include <string>

#include "core/tensor.h"

namespace vs {

using StateDict = std::map<std::string, Tensor>;

}  // namespace vs
