// Index math of activation layouts and convolution filters, host and device code alike: the CUDA plugin's kernels
// for channels-last (N, H, W, C) activations use it, and cuda/checks/layout_index_check.cpp checks it against the
// plain and blocked layouts of backend.h on the host (no GPU needed).
#pragma once

#include <stdint.h>

#if defined(__CUDACC__)
#define OPENDL_LI_HD __host__ __device__ inline
#else
#define OPENDL_LI_HD inline
#endif

namespace opendl {
namespace li {

// Element (n, c, p) of an activation with C channels and P positions per plane: plain (N, C, P) or channels-last
// (N, P, C), the channel block B = C of backend.h.
OPENDL_LI_HD int64_t offset(int64_t n, int64_t c, int64_t p, int64_t C, int64_t P, bool last) {
  return last ? (n * P + p) * C + c : (n * C + c) * P + p;
}
// Distance between the elements of positions p and p + 1 of one channel.
OPENDL_LI_HD int64_t position_step(int64_t C, bool last) { return last ? C : 1; }
// The inverse of offset.
OPENDL_LI_HD void coords(int64_t i, int64_t C, int64_t P, bool last, int64_t& n, int64_t& c, int64_t& p) {
  if (last) {
    c = i % C;
    p = i / C % P;
    n = i / (C * P);
  } else {
    p = i % P;
    c = i / P % C;
    n = i / (P * C);
  }
}
OPENDL_LI_HD int64_t channel_of(int64_t i, int64_t C, int64_t P, bool last) { return last ? i % C : i / P % C; }

// Convolution weights in opendl's order (groups, a, b, khw) (a output, b input channels per group; kernel position
// r) against cuDNN's filter: the same order, with `swap` (a transposed convolution's filter, whose output channels
// are opendl's input ones) (groups, b, a, khw), and for channels-last convolutions the kernel position before the
// inner channel axis: (groups, a, khw, b) or (groups, b, khw, a). The filter index of weight (g, k, j, r).
OPENDL_LI_HD int64_t filter_index(int64_t g, int64_t k, int64_t j, int64_t r, int64_t a, int64_t b, int64_t khw,
                                  bool swap, bool last) {
  const int64_t o = swap ? j : k, q = swap ? k : j, O = swap ? b : a, Q = swap ? a : b;
  return last ? ((g * O + o) * khw + r) * Q + q : ((g * O + o) * Q + q) * khw + r;
}

}  // namespace li
}  // namespace opendl
