// CUDA kernels of the detection layers' box steps (gather, anchor assignment, training targets): one thread per
// box or output element running the per-box code of backend/box_math.h, the same code as the CPU backend. The
// best IoU of each ground-truth record is an atomic maximum over the bit patterns of the (non-negative) doubles,
// and the foreground counts are sums of ones, so the results do not depend on scheduling.
#include "backend/box_math.h"
#include "kernels.h"
#include "launch.cuh"

namespace opendl::cuda {
namespace {

__global__ void box_gather_kernel(BoxGatherArgs a, const float* src, float* dst, size_t n) {
  OPENDL_GRID_LOOP(e, n) bm::box_gather_one(a, src, dst, int64_t(e));
}

// Non-negative doubles order like their bit patterns read as unsigned integers.
struct KeepBest {
  unsigned long long* best;
  int64_t row;
  __device__ void operator()(int64_t r, double q) const {
    atomicMax(best + row + r, static_cast<unsigned long long>(__double_as_longlong(q)));
  }
};

__global__ void truth_list_kernel(BoxAssignArgs a, const float* gt, int32_t* list) {
  OPENDL_GRID_LOOP(n, size_t(a.n)) bm::truth_list(a, gt, list, int64_t(n));
}

__global__ void box_assign_pass1_kernel(BoxAssignArgs a, const float* boxes, const float* gt, const int32_t* list,
                                        double* best, float* out) {
  OPENDL_GRID_LOOP(e, size_t(a.n * a.t)) {
    const int64_t n = int64_t(e) / a.t;
    bm::assign_pass1(a, boxes, gt, list, out, n, int64_t(e) % a.t,
                     KeepBest{reinterpret_cast<unsigned long long*>(best), n * a.g});
  }
}

__global__ void box_assign_pass2_kernel(BoxAssignArgs a, const float* boxes, const float* gt, const int32_t* list,
                                        const double* best, float* out) {
  OPENDL_GRID_LOOP(e, size_t(a.n * a.t)) {
    bm::assign_pass2(a, boxes, gt, list, best, out, int64_t(e) / a.t, int64_t(e) % a.t);
  }
}

__global__ void box_targets_kernel(BoxTargetArgs a, const float* assign, const float* gt, float* y, size_t n) {
  OPENDL_GRID_LOOP(e, n) y[e] = bm::box_target_value(a, assign, gt, int64_t(e));
}

__global__ void box_num_fg_kernel(BoxTargetArgs a, const float* assign, float* y) {
  OPENDL_GRID_LOOP(e, size_t(a.n * a.t)) {
    const int64_t n = int64_t(e) / a.t, i = int64_t(e) % a.t;
    if (assign[n * a.t * (1 + a.d) + i] >= 0) atomicAdd(y + n, 1.f);  // exact: integers below 2^24
  }
}

}  // namespace

cudaError_t launch_box_gather(cudaStream_t stream, const BoxGatherArgs& a, const float* src, float* dst) {
  const size_t n = size_t(a.box_n * (a.proposals ? a.a : a.a * a.hw));
  if (n == 0) return cudaSuccess;
  box_gather_kernel<<<grid_for(n), kThreads, 0, stream>>>(a, src, dst, n);
  return cudaGetLastError();
}

cudaError_t launch_box_assign(cudaStream_t stream, const BoxAssignArgs& a, const float* boxes, const float* gt,
                              double* best, float* out) {
  const size_t n = size_t(a.n * a.t);
  if (n == 0) return cudaSuccess;
  if (a.g > 0) {
    cudaError_t e = cudaMemsetAsync(best, 0, size_t(a.n * a.g) * sizeof(double), stream);
    if (e != cudaSuccess) return e;
  }
  int32_t* list = reinterpret_cast<int32_t*>(best + a.n * a.g);
  truth_list_kernel<<<grid_for(size_t(a.n)), kThreads, 0, stream>>>(a, gt, list);
  box_assign_pass1_kernel<<<grid_for(n), kThreads, 0, stream>>>(a, boxes, gt, list, best, out);
  box_assign_pass2_kernel<<<grid_for(n), kThreads, 0, stream>>>(a, boxes, gt, list, best, out);
  return cudaGetLastError();
}

cudaError_t launch_box_targets(cudaStream_t stream, const BoxTargetArgs& a, const float* assign, const float* gt,
                               float* y) {
  if (a.kind == BoxTargetKind::kNumFg) {
    cudaError_t e = cudaMemsetAsync(y, 0, size_t(a.n) * sizeof(float), stream);
    if (e != cudaSuccess || a.n * a.t == 0) return e;
    box_num_fg_kernel<<<grid_for(size_t(a.n * a.t)), kThreads, 0, stream>>>(a, assign, y);
    return cudaGetLastError();
  }
  const size_t n = size_t(a.numel());
  if (n == 0) return cudaSuccess;
  box_targets_kernel<<<grid_for(n), kThreads, 0, stream>>>(a, assign, gt, y, n);
  return cudaGetLastError();
}

}  // namespace opendl::cuda
