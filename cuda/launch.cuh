// Launch configuration shared by the plugin's kernel files (CUDA only).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>

namespace opendl::cuda {

constexpr int kThreads = 256;
constexpr size_t kMaxBlocks = 65535;

// Blocks for a grid-stride loop over n elements.
inline unsigned grid_for(size_t n) {
  return unsigned(std::max<size_t>(1, std::min(kMaxBlocks, (n + kThreads - 1) / kThreads)));
}

}  // namespace opendl::cuda

// for (size_t i = ...; i < n; i += stride): each thread of the grid visits every stride-th element.
#define OPENDL_GRID_LOOP(i, n)                                                               \
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x, opendl_n_ = (n); i < opendl_n_; \
       i += size_t(gridDim.x) * blockDim.x)
