// PyTorch checkpoints (.pth/.pt): the zip + pickle format of torch.save(state_dict), read without
// libtorch and safely. Only the pickle opcodes and globals a state_dict needs are accepted
// (torch._utils._rebuild_tensor_v2, collections.OrderedDict, torch.*Storage, ...); any other
// global or opcode is refused with vs::Error naming the file - nothing is ever executed.
#pragma once
#include <string>

#include "io/state_dict.h"

namespace vs {

// Reads the state_dict; when the top-level object is a dict holding "model" or "state_dict"
// (a training checkpoint), that entry is returned. fp16/bf16 tensors are converted to fp32;
// non-contiguous views are materialised. Throws vs::Error("FILE: problem") on bad input.
StateDict load_pth(const std::string& path);

}  // namespace vs
