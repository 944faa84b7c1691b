#include "nn/exec_mode.h"

#include <atomic>

namespace vs::nn {

static std::atomic<ExecMode> g_mode{ExecMode::integer};
void set_exec_mode(ExecMode m) { g_mode = m; }
ExecMode exec_mode() { return g_mode; }

}  // namespace vs::nn
