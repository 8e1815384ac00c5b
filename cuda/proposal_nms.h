// The CUDA plugin's box-proposal NMS (box_kernels.cu) as per-thread code: the suppression bit masks, and the greedy
// scan of one image by one thread block. Host and device code, so that cuda/checks/proposal_nms_check.cpp runs
// the same code on the host (one thread, no barrier) against a two-pass reference of the documented rules.
#pragma once

#include <stdint.h>

#include "backend/box_math.h"

namespace opendl {
namespace pn {

// Element i of the masks of images [n0, n0 + g): word w of row x (the x-th candidate in the image's order, `sorted`
// holding the images' NMS keys sorted) has bit b set when x suppresses candidate y = 64 w + b > x, mask1 in the
// per-class pass, mask2 in the class-agnostic one. Words left of the row's own word are never read and not written.
OPENDL_HD void mask_word(const ProposalNmsArgs& a, const double* cand, const uint64_t* sorted, int64_t n0,
                         int64_t words, int64_t i, uint64_t* mask1, uint64_t* mask2) {
  const int64_t w = i % words, x = (i / words) % a.slots, n = n0 + i / (words * a.slots);
  if (w < (x >> 6)) return;
  const uint64_t* order = sorted + n * a.slots;
  uint64_t m1 = 0, m2 = 0;
  const uint64_t kx = order[x];
  if (kx != bm::kNoCandidate) {
    const double* cx = bm::candidate(a, cand, n, int64_t(kx & 0xffffffffu));
    const int64_t y1 = a.slots < 64 * w + 64 ? a.slots : 64 * w + 64;
    for (int64_t y = x + 1 > 64 * w ? x + 1 : 64 * w; y < y1; ++y) {
      const uint64_t ky = order[y];
      if (ky == bm::kNoCandidate) break;  // empty slots sort last
      const unsigned s = bm::suppression(a, cx, bm::candidate(a, cand, n, int64_t(ky & 0xffffffffu)));
      m1 |= uint64_t(s & 1u) << (y - 64 * w);
      m2 |= uint64_t((s >> 1) & 1u) << (y - 64 * w);
    }
  }
  mask1[i] = m1;
  mask2[i] = m2;
}

// The greedy scan of image n0 + j of the group, as CpuBackend::box_nms, by thread t of the T threads of a block
// (`sync` their barrier): candidates in order; one dropped per class is skipped; one kept per class suppresses
// per class, and class-agnostically as well when it is not dropped there (then it is written). `gone` holds
// 2 * words flag words per image of the group; the threads share the work on each mask row. The loop's branches
// depend on values every thread reads alike, so all threads meet at every barrier.
#if defined(__CUDACC__)
#pragma nv_exec_check_disable  // instantiated with a device-only `sync` in device code only
#endif
template <class Sync>
OPENDL_HD void scan(const ProposalNmsArgs& a, const double* cand, const uint64_t* sorted, int64_t n0, int64_t j,
                    int64_t words, const uint64_t* mask1, const uint64_t* mask2, uint64_t* gone, float* y, int64_t t,
                    int64_t T, Sync&& sync) {
  const int64_t n = n0 + j;
  uint64_t* gone1 = gone + j * 2 * words;
  uint64_t* gone2 = gone1 + words;
  for (int64_t w = t; w < words; w += T) gone1[w] = gone2[w] = 0;
  sync();
  const uint64_t* order = sorted + n * a.slots;
  int64_t m = 0;
  for (int64_t x = 0; x < a.slots && m < a.mnr; ++x) {
    const uint64_t kx = order[x];
    if (kx == bm::kNoCandidate) break;
    const uint64_t bit = uint64_t(1) << (x & 63);
    const bool dropped = (gone1[x >> 6] & bit) != 0, keep = (gone2[x >> 6] & bit) == 0;
    sync();  // every thread has read the flags before any adds to them
    if (!dropped) {
      const uint64_t* r1 = mask1 + (j * a.slots + x) * words;
      const uint64_t* r2 = mask2 + (j * a.slots + x) * words;
      for (int64_t w = (x >> 6) + t; w < words; w += T) {
        gone1[w] |= r1[w];
        if (keep) gone2[w] |= r2[w];
      }
      if (keep) {
        if (t == 0) bm::write_proposal(a, bm::candidate(a, cand, n, int64_t(kx & 0xffffffffu)), y, n, m);
        ++m;
      }
    }
    sync();
  }
  for (int64_t r = m + t; r < a.mnr; r += T) bm::write_proposal(a, nullptr, y, n, r);
}

}  // namespace pn
}  // namespace opendl
