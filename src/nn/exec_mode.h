// How quantised layers compute their integer products: ExecMode::integer runs oneDNN's int8
// kernels; ExecMode::simulated computes the same integers with fp32 GEMMs on the codes (fake
// quantisation, exact: see kernels/gemm_int8.h). Both share every other step, so their outputs
// are bit-identical; `--simulate` cross-checks the integer kernels against float math.
#pragma once
#include "kernels/gemm_int8.h"

namespace vs::nn {

enum class ExecMode { integer, simulated };
void set_exec_mode(ExecMode m);  // process-wide; default integer
ExecMode exec_mode();
inline kernels::IntEngine int_engine() {
  return exec_mode() == ExecMode::integer ? kernels::IntEngine::onednn : kernels::IntEngine::float_exact;
}

}  // namespace vs::nn
