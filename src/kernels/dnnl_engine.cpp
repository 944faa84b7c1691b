#include "kernels/dnnl_engine.h"

namespace vs::kernels {

dnnl::engine& dnnl_engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

dnnl::stream& dnnl_stream() {  // one per thread: kernels/gemm_int8 runs matmuls on two threads at once
  thread_local dnnl::stream s(dnnl_engine());
  return s;
}

}  // namespace vs::kernels
