// Elementwise CUDA kernels of the plugin. Grid-stride loops so that one launch configuration covers any n;
// the grid is capped so tiny and huge arrays alike use a bounded number of blocks.
#include <algorithm>

#include "kernels.h"

namespace opendl::cuda {
namespace {

constexpr int kThreads = 256;
constexpr size_t kMaxBlocks = 65535;

__global__ void axpy_kernel(size_t n, float alpha, const float* __restrict__ x, float* __restrict__ y) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    y[i] = fmaf(alpha, x[i], y[i]);
}

unsigned grid_for(size_t n) { return unsigned(std::max<size_t>(1, std::min(kMaxBlocks, (n + kThreads - 1) / kThreads))); }

}  // namespace

cudaError_t launch_axpy(cudaStream_t stream, size_t n, float alpha, const float* x, float* y) {
  if (n == 0) return cudaSuccess;
  axpy_kernel<<<grid_for(n), kThreads, 0, stream>>>(n, alpha, x, y);
  return cudaGetLastError();
}

}  // namespace opendl::cuda
