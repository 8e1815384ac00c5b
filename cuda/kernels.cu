// Elementwise CUDA kernels of the plugin. Grid-stride loops so that one launch configuration covers any n;
// the grid is capped so tiny and huge arrays alike use a bounded number of blocks. Semantics: the CPU
// backend's entries of the same names (kernels.h).
#include <algorithm>

#include "backend/element_math.h"
#include "kernels.h"
#include "launch.cuh"

namespace opendl::cuda {
namespace {

__device__ inline void put(float* d, size_t i, float g, bool accumulate) { d[i] = accumulate ? d[i] + g : g; }

__global__ void fill_kernel(float* p, size_t n, float v) {
  OPENDL_GRID_LOOP(i, n) p[i] = v;
}

__global__ void axpy_kernel(size_t n, float alpha, const float* __restrict__ x, float* __restrict__ y) {
  OPENDL_GRID_LOOP(i, n) y[i] = fmaf(alpha, x[i], y[i]);
}

__global__ void mul_kernel(size_t n, const float* a, const float* b, float* y, bool accumulate) {
  OPENDL_GRID_LOOP(i, n) put(y, i, a[i] * b[i], accumulate);
}

__global__ void copy2d_kernel(float* dst, int64_t dst_ld, int64_t dst_off, const float* src, int64_t src_ld,
                              int64_t src_off, int64_t rows, int64_t cols, float alpha, bool accumulate) {
  OPENDL_GRID_LOOP(i, size_t(rows * cols)) {
    const int64_t r = int64_t(i) / cols, j = int64_t(i) % cols;
    put(dst, size_t(r * dst_ld + dst_off + j), alpha * src[r * src_ld + src_off + j], accumulate);
  }
}

__global__ void minmax_forward_kernel(size_t n, bool is_max, const float* a, const float* b, float* y) {
  OPENDL_GRID_LOOP(i, n) y[i] = is_max ? (a[i] < b[i] ? b[i] : a[i]) : (b[i] < a[i] ? b[i] : a[i]);
}

__global__ void minmax_backward_kernel(size_t n, bool is_max, bool first, const float* a, const float* b,
                                       const float* dy, float* dx, bool accumulate) {
  OPENDL_GRID_LOOP(i, n) {
    const bool a_wins = is_max ? a[i] >= b[i] : a[i] <= b[i];
    put(dx, i, a_wins == first ? dy[i] : 0.f, accumulate);
  }
}

__global__ void act_forward_kernel(Act a, size_t n, const float* x, float* y) {
  OPENDL_GRID_LOOP(i, n) y[i] = em::act_value(a, x[i]);
}

__global__ void act_backward_kernel(Act a, size_t n, const float* y, const float* dy, float* dx, bool accumulate) {
  OPENDL_GRID_LOOP(i, n) put(dx, i, em::act_grad(a, y[i], dy[i]), accumulate);
}

__global__ void pointwise_forward_kernel(PointwiseOp p, size_t n, const float* x, float* y) {
  OPENDL_GRID_LOOP(i, n) y[i] = float(em::pointwise_value(p, double(x[i])));
}

__global__ void pointwise_backward_kernel(PointwiseOp p, size_t n, const float* x, const float* y, const float* dy,
                                          float* dx, bool accumulate) {
  OPENDL_GRID_LOOP(i, n)
  put(dx, i, float(double(dy[i]) * em::pointwise_derivative(p, double(x[i]), double(y[i]))), accumulate);
}

// One thread per (outer, inner) position; the C values of a position are `inner` apart.
__global__ void softmax_forward_kernel(int64_t outer, int64_t c, int64_t inner, const float* x, float* y) {
  OPENDL_GRID_LOOP(pos, size_t(outer * inner)) {
    const int64_t o = int64_t(pos) / inner, i = int64_t(pos) % inner;
    const float* xo = x + o * c * inner + i;
    float* yo = y + o * c * inner + i;
    float m = -INFINITY;
    for (int64_t k = 0; k < c; ++k) m = fmaxf(m, xo[k * inner]);
    double s = 0;
    for (int64_t k = 0; k < c; ++k) {
      const float e = expf(xo[k * inner] - m);
      yo[k * inner] = e;
      s += e;
    }
    const float inv = float(1.0 / s);
    for (int64_t k = 0; k < c; ++k) yo[k * inner] *= inv;
  }
}

__global__ void softmax_backward_kernel(int64_t outer, int64_t c, int64_t inner, const float* y, const float* dy,
                                        float* dx, bool accumulate) {
  OPENDL_GRID_LOOP(pos, size_t(outer * inner)) {
    const int64_t o = int64_t(pos) / inner, i = int64_t(pos) % inner;
    const int64_t base = o * c * inner + i;
    double dot = 0;
    for (int64_t k = 0; k < c; ++k) dot += double(y[base + k * inner]) * dy[base + k * inner];
    for (int64_t k = 0; k < c; ++k) {
      const int64_t j = base + k * inner;
      put(dx, size_t(j), y[j] * float(dy[j] - dot), accumulate);
    }
  }
}

}  // namespace

cudaError_t launch_fill(cudaStream_t stream, float* p, size_t n, float v) {
  if (n == 0) return cudaSuccess;
  fill_kernel<<<grid_for(n), kThreads, 0, stream>>>(p, n, v);
  return cudaGetLastError();
}

cudaError_t launch_axpy(cudaStream_t stream, size_t n, float alpha, const float* x, float* y) {
  if (n == 0) return cudaSuccess;
  axpy_kernel<<<grid_for(n), kThreads, 0, stream>>>(n, alpha, x, y);
  return cudaGetLastError();
}

cudaError_t launch_mul(cudaStream_t stream, size_t n, const float* a, const float* b, float* y) {
  return launch_mul_acc(stream, n, a, b, y, false);
}

cudaError_t launch_mul_acc(cudaStream_t stream, size_t n, const float* a, const float* b, float* y, bool accumulate) {
  if (n == 0) return cudaSuccess;
  mul_kernel<<<grid_for(n), kThreads, 0, stream>>>(n, a, b, y, accumulate);
  return cudaGetLastError();
}

cudaError_t launch_copy2d(cudaStream_t stream, float* dst, int64_t dst_ld, int64_t dst_off, const float* src,
                          int64_t src_ld, int64_t src_off, int64_t rows, int64_t cols, float alpha, bool accumulate) {
  if (rows <= 0 || cols <= 0) return cudaSuccess;
  copy2d_kernel<<<grid_for(size_t(rows * cols)), kThreads, 0, stream>>>(dst, dst_ld, dst_off, src, src_ld, src_off,
                                                                        rows, cols, alpha, accumulate);
  return cudaGetLastError();
}

cudaError_t launch_minmax_forward(cudaStream_t stream, size_t n, bool is_max, const float* a, const float* b,
                                  float* y) {
  if (n == 0) return cudaSuccess;
  minmax_forward_kernel<<<grid_for(n), kThreads, 0, stream>>>(n, is_max, a, b, y);
  return cudaGetLastError();
}

cudaError_t launch_minmax_backward(cudaStream_t stream, size_t n, bool is_max, bool first, const float* a,
                                   const float* b, const float* dy, float* dx, bool accumulate) {
  if (n == 0) return cudaSuccess;
  minmax_backward_kernel<<<grid_for(n), kThreads, 0, stream>>>(n, is_max, first, a, b, dy, dx, accumulate);
  return cudaGetLastError();
}

cudaError_t launch_act_forward(cudaStream_t stream, Act a, size_t n, const float* x, float* y) {
  if (n == 0) return cudaSuccess;
  if (a == Act::kNone) return x == y ? cudaSuccess : cudaMemcpyAsync(y, x, n * sizeof(float), cudaMemcpyDeviceToDevice, stream);
  act_forward_kernel<<<grid_for(n), kThreads, 0, stream>>>(a, n, x, y);
  return cudaGetLastError();
}

cudaError_t launch_act_backward(cudaStream_t stream, Act a, size_t n, const float* y, const float* dy, float* dx,
                                bool accumulate) {
  if (n == 0) return cudaSuccess;
  if (a == Act::kNone && !accumulate)
    return dx == dy ? cudaSuccess : cudaMemcpyAsync(dx, dy, n * sizeof(float), cudaMemcpyDeviceToDevice, stream);
  act_backward_kernel<<<grid_for(n), kThreads, 0, stream>>>(a, n, y, dy, dx, accumulate);
  return cudaGetLastError();
}

cudaError_t launch_pointwise_forward(cudaStream_t stream, const PointwiseOp& p, size_t n, const float* x, float* y) {
  if (n == 0) return cudaSuccess;
  pointwise_forward_kernel<<<grid_for(n), kThreads, 0, stream>>>(p, n, x, y);
  return cudaGetLastError();
}

cudaError_t launch_pointwise_backward(cudaStream_t stream, const PointwiseOp& p, size_t n, const float* x,
                                      const float* y, const float* dy, float* dx, bool accumulate) {
  if (n == 0) return cudaSuccess;
  pointwise_backward_kernel<<<grid_for(n), kThreads, 0, stream>>>(p, n, x, y, dy, dx, accumulate);
  return cudaGetLastError();
}

cudaError_t launch_softmax_forward(cudaStream_t stream, int64_t outer, int64_t c, int64_t inner, const float* x,
                                   float* y) {
  if (outer * inner <= 0) return cudaSuccess;
  softmax_forward_kernel<<<grid_for(size_t(outer * inner)), kThreads, 0, stream>>>(outer, c, inner, x, y);
  return cudaGetLastError();
}

cudaError_t launch_softmax_backward(cudaStream_t stream, int64_t outer, int64_t c, int64_t inner, const float* y,
                                    const float* dy, float* dx, bool accumulate) {
  if (outer * inner <= 0) return cudaSuccess;
  softmax_backward_kernel<<<grid_for(size_t(outer * inner)), kThreads, 0, stream>>>(outer, c, inner, y, dy, dx,
                                                                                   accumulate);
  return cudaGetLastError();
}

}  // namespace opendl::cuda
