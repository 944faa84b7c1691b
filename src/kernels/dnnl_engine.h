// The one oneDNN CPU engine and stream every kernel in src/kernels uses.
#pragma once
#include <dnnl.hpp>

namespace vs::kernels {

dnnl::engine& dnnl_engine();
dnnl::stream& dnnl_stream();

}  // namespace vs::kernels
