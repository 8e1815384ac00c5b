// Plain CUDA kernels of the plugin, callable from host C++ without CUDA language extensions. Each launcher
// enqueues on the given stream and returns the launch error (execution errors surface at the next sync).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

namespace opendl::cuda {

// y = alpha * x + y over n floats.
cudaError_t launch_axpy(cudaStream_t stream, size_t n, float alpha, const float* x, float* y);

}  // namespace opendl::cuda
