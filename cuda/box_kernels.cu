// CUDA kernels of the detection layers' box steps (gather, anchor assignment, training targets, proposals): one
// thread per box or output element running the per-box code of backend/box_math.h, the same code as the CPU
// backend. The best IoU of each ground-truth record is an atomic maximum over the bit patterns of the
// (non-negative) doubles, and the foreground counts are sums of ones, so the results do not depend on
// scheduling. The proposals sort unique 64-bit keys (CUB's segmented radix sort) and run a sequential greedy scan
// per image over suppression bit masks, so they match the CPU backend's order and choices exactly.
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_segmented_radix_sort.cuh>

#include <climits>

#include "backend/box_math.h"
#include "kernels.h"
#include "launch.cuh"
#include "proposal_nms.h"

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

// --- box proposals -----------------------------------------------------------------------------------------------

__global__ void segment_offsets_kernel(int* off, int64_t segments, int64_t per) {
  OPENDL_GRID_LOOP(i, size_t(segments + 1)) off[i] = int(int64_t(i) * per);
}

__global__ void select_key_kernel(ProposalSelectArgs a, const float* scores, const float* boxes, uint64_t* keys) {
  const int64_t e = bm::select_elements(a);
  OPENDL_GRID_LOOP(i, size_t(a.n * e)) keys[i] = bm::select_key(a, scores, boxes, int64_t(i) / e, int64_t(i) % e);
}

__global__ void select_decode_kernel(ProposalSelectArgs a, const float* scores, const float* deltas,
                                     const float* boxes, const uint64_t* sorted, double* cand) {
  const int64_t e = bm::select_elements(a);
  OPENDL_GRID_LOOP(i, size_t(a.n * a.sel)) {
    const int64_t n = int64_t(i) / a.sel, r = int64_t(i) % a.sel;
    bm::select_decode(a, scores, deltas, boxes, n, r, sorted[n * e + r], cand);
  }
}

__global__ void nms_key_kernel(ProposalNmsArgs a, const double* cand, uint64_t* keys) {
  OPENDL_GRID_LOOP(i, size_t(a.n * a.slots)) keys[i] = bm::nms_key(a, cand, int64_t(i) / a.slots, int64_t(i) % a.slots);
}

__global__ void nms_mask_kernel(ProposalNmsArgs a, const double* cand, const uint64_t* sorted, int64_t n0, int64_t g,
                                int64_t words, uint64_t* mask1, uint64_t* mask2) {
  OPENDL_GRID_LOOP(i, size_t(g * a.slots * words)) pn::mask_word(a, cand, sorted, n0, words, int64_t(i), mask1, mask2);
}

struct BlockSync {
  __device__ void operator()() const { __syncthreads(); }
};

// One block per image of the group.
__global__ void nms_scan_kernel(ProposalNmsArgs a, const double* cand, const uint64_t* sorted, int64_t n0,
                                int64_t words, const uint64_t* mask1, const uint64_t* mask2, uint64_t* gone,
                                float* y) {
  pn::scan(a, cand, sorted, n0, blockIdx.x, words, mask1, mask2, gone, y, threadIdx.x, blockDim.x, BlockSync{});
}

size_t align256(size_t b) { return (b + 255) / 256 * 256; }

// A segmented sort of `segments` runs of `per` 64-bit keys in a workspace: the keys, the sorted keys, the segment
// offsets and CUB's temporary storage, each 256-byte aligned. CUB's segmented sort gives each segment one thread
// block, so runs of kLargeSegment keys or more (a class-score map of a large level) are sorted one by one by its
// device-wide sort instead; both give the same ascending order.
constexpr int64_t kLargeSegment = int64_t(1) << 16;
struct SortSpace {
  int64_t segments = 0, per = 0;
  size_t keys = 0, offsets = 0, temp = 0;
  size_t bytes() const { return 2 * keys + offsets + temp; }
  uint64_t* in(void* work) const { return static_cast<uint64_t*>(work); }
  uint64_t* out(void* work) const { return reinterpret_cast<uint64_t*>(static_cast<char*>(work) + keys); }
};

cudaError_t sort_space(int64_t segments, int64_t per, SortSpace& s) {
  if (segments * per > INT_MAX) return cudaErrorInvalidValue;  // the callers check and explain first
  s.segments = segments;
  s.per = per;
  s.keys = align256(size_t(segments * per) * sizeof(uint64_t));
  s.offsets = align256(size_t(segments + 1) * sizeof(int));
  const uint64_t* none_in = nullptr;
  uint64_t* none_out = nullptr;
  const int* none_off = nullptr;
  cudaError_t e = per >= kLargeSegment
                      ? cub::DeviceRadixSort::SortKeys(nullptr, s.temp, none_in, none_out, int(per))
                      : cub::DeviceSegmentedRadixSort::SortKeys(nullptr, s.temp, none_in, none_out,
                                                                int(segments * per), int(segments), none_off,
                                                                none_off);
  s.temp = align256(s.temp);
  return e;
}

// Sorts the keys at s.in(work) into s.out(work), each segment ascending.
cudaError_t sort_segments(cudaStream_t stream, const SortSpace& s, void* work) {
  char* base = static_cast<char*>(work);
  void* temp_storage = base + 2 * s.keys + s.offsets;
  size_t temp = s.temp;
  if (s.per >= kLargeSegment) {
    for (int64_t i = 0; i < s.segments; ++i) {
      cudaError_t e = cub::DeviceRadixSort::SortKeys(temp_storage, temp, s.in(work) + i * s.per,
                                                     s.out(work) + i * s.per, int(s.per), 0, 64, stream);
      if (e != cudaSuccess) return e;
    }
    return cudaSuccess;
  }
  int* off = reinterpret_cast<int*>(base + 2 * s.keys);
  segment_offsets_kernel<<<grid_for(size_t(s.segments + 1)), kThreads, 0, stream>>>(off, s.segments, s.per);
  return cub::DeviceSegmentedRadixSort::SortKeys(temp_storage, temp, s.in(work), s.out(work), int(s.segments * s.per),
                                                 int(s.segments), off, off + 1, 0, 64, stream);
}

// The NMS workspace: the order sort, then for `group` images at a time the two masks and the scan's flags.
constexpr size_t kMaskBytes = size_t(256) << 20;
struct NmsSpace {
  SortSpace sort;
  int64_t words = 0, group = 1;
  size_t mask = 0, gone = 0;  // bytes of one mask, of the flags (for the group)
  size_t bytes() const { return sort.bytes() + 2 * mask + gone; }
};

cudaError_t nms_space(const ProposalNmsArgs& a, NmsSpace& s) {
  s.words = (a.slots + 63) / 64;
  const size_t per_image = size_t(a.slots * s.words) * sizeof(uint64_t) * 2;
  s.group = std::max<int64_t>(1, std::min<int64_t>(a.n, int64_t(kMaskBytes / std::max<size_t>(per_image, 1))));
  s.mask = align256(size_t(s.group * a.slots * s.words) * sizeof(uint64_t));
  s.gone = align256(size_t(s.group * 2 * s.words) * sizeof(uint64_t));
  return sort_space(a.n, a.slots, s.sort);
}

}  // namespace

cudaError_t box_select_workspace(const ProposalSelectArgs& a, size_t* bytes) {
  SortSpace s;
  cudaError_t e = sort_space(a.n, bm::select_elements(a), s);
  *bytes = s.bytes();
  return e;
}

cudaError_t launch_box_select(cudaStream_t stream, const ProposalSelectArgs& a, const float* scores,
                              const float* deltas, const float* boxes, double* cand, void* work) {
  if (a.n * a.sel == 0) return cudaSuccess;
  if (a.sel > bm::select_elements(a)) return cudaErrorInvalidValue;
  SortSpace s;
  cudaError_t e = sort_space(a.n, bm::select_elements(a), s);
  if (e != cudaSuccess) return e;
  select_key_kernel<<<grid_for(size_t(a.n * bm::select_elements(a))), kThreads, 0, stream>>>(a, scores, boxes, s.in(work));
  e = sort_segments(stream, s, work);
  if (e != cudaSuccess) return e;
  select_decode_kernel<<<grid_for(size_t(a.n * a.sel)), kThreads, 0, stream>>>(a, scores, deltas, boxes, s.out(work),
                                                                                 cand);
  return cudaGetLastError();
}

cudaError_t box_nms_workspace(const ProposalNmsArgs& a, size_t* bytes) {
  NmsSpace s;
  cudaError_t e = nms_space(a, s);
  *bytes = s.bytes();
  return e;
}

cudaError_t launch_box_nms(cudaStream_t stream, const ProposalNmsArgs& a, const double* cand, float* y, void* work) {
  if (a.n * a.mnr == 0) return cudaSuccess;
  NmsSpace s;
  cudaError_t e = nms_space(a, s);
  if (e != cudaSuccess) return e;
  if (a.slots > 0) {
    nms_key_kernel<<<grid_for(size_t(a.n * a.slots)), kThreads, 0, stream>>>(a, cand, s.sort.in(work));
    e = sort_segments(stream, s.sort, work);
    if (e != cudaSuccess) return e;
  }
  const uint64_t* sorted = s.sort.out(work);
  char* rest = static_cast<char*>(work) + s.sort.bytes();
  uint64_t* mask1 = reinterpret_cast<uint64_t*>(rest);
  uint64_t* mask2 = reinterpret_cast<uint64_t*>(rest + s.mask);
  uint64_t* gone = reinterpret_cast<uint64_t*>(rest + 2 * s.mask);
  for (int64_t n0 = 0; n0 < a.n; n0 += s.group) {
    const int64_t g = std::min(s.group, a.n - n0);
    if (a.slots > 0)
      nms_mask_kernel<<<grid_for(size_t(g * a.slots * s.words)), kThreads, 0, stream>>>(a, cand, sorted, n0, g,
                                                                                        s.words, mask1, mask2);
    nms_scan_kernel<<<unsigned(g), kThreads, 0, stream>>>(a, cand, sorted, n0, s.words, mask1, mask2, gone, y);
  }
  return cudaGetLastError();
}

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
