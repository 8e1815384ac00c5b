// CPU backend: the detection layers' box steps (gather, anchor assignment, training targets, proposals) with
// OpenMP over the boxes or images; the per-box code is backend/box_math.h, shared with the CUDA plugin. Every
// output element is written by one iteration and the best IoU of each ground-truth record is a maximum
// (order-free), so the results do not depend on the thread count.
#include <algorithm>
#include <vector>

#include "backend/box_math.h"
#include "backend/cpu/cpu_backend.h"

namespace opendl {

void CpuBackend::box_gather(const BoxGatherArgs& a, const float* src, float* dst) {
  const int64_t n = a.box_n * (a.proposals ? a.a : a.a * a.hw);
#pragma omp parallel for schedule(static) if (n > 4096)
  for (int64_t e = 0; e < n; ++e) bm::box_gather_one(a, src, dst, e);
}

void CpuBackend::box_assign(const BoxAssignArgs& a, const float* boxes, const float* gt, double* best, float* out) {
  const int64_t total = a.n * a.t;
  std::fill(best, best + a.n * a.g, 0.0);
  int32_t* list = reinterpret_cast<int32_t*>(best + a.n * a.g);
  for (int64_t n = 0; n < a.n; ++n) bm::truth_list(a, gt, list, n);
#pragma omp parallel if (total > 1024)
  {
    std::vector<double> mine(size_t(a.n * a.g), 0.0);  // this thread's best IoU per record
#pragma omp for schedule(static) nowait
    for (int64_t e = 0; e < total; ++e) {
      const int64_t n = e / a.t;
      bm::assign_pass1(a, boxes, gt, list, out, n, e % a.t, [&](int64_t r, double q) {
        double& b = mine[size_t(n * a.g + r)];
        b = std::max(b, q);
      });
    }
#pragma omp critical
    for (size_t r = 0; r < mine.size(); ++r) best[r] = std::max(best[r], mine[r]);
#pragma omp barrier
#pragma omp for schedule(static)
    for (int64_t e = 0; e < total; ++e) bm::assign_pass2(a, boxes, gt, list, best, out, e / a.t, e % a.t);
  }
}

void CpuBackend::box_targets(const BoxTargetArgs& a, const float* assign, const float* gt, float* y) {
  if (a.kind == BoxTargetKind::kNumFg) {
    for (int64_t n = 0; n < a.n; ++n) {
      const float* m = assign + n * a.t * (1 + a.d);
      y[n] = float(std::count_if(m, m + a.t, [](float v) { return v >= 0; }));
    }
    return;
  }
  const int64_t rows = a.n * a.a * a.per;  // (image, depth) rows of hw values
#pragma omp parallel for schedule(static) if (rows * a.hw > 16384)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t n = r / (a.a * a.per), dep = r % (a.a * a.per);
    float* yr = y + r * a.hw;
    for (int64_t pos = 0; pos < a.hw; ++pos) yr[pos] = bm::box_target_value(a, assign, gt, n, dep / a.per, dep % a.per, pos);
  }
}

// Per image: the selection keys that name a candidate, the `sel` smallest in order, decoded.
void CpuBackend::box_select(const ProposalSelectArgs& a, const float* scores, const float* deltas, const float* boxes,
                            double* cand) {
  const int64_t pos_n = a.hw, per_pos = a.a * a.k;
#pragma omp parallel for schedule(dynamic) if (a.n > 1)
  for (int64_t n = 0; n < a.n; ++n) {
    std::vector<uint64_t> keys;
    for (int64_t ak = 0; ak < per_pos; ++ak)  // the scores in memory order: box, class, position
      for (int64_t pos = 0; pos < pos_n; ++pos) {
        const uint64_t q = bm::select_key(a, scores, boxes, n, (pos * a.a + ak / a.k) * a.k + ak % a.k);
        if (q != bm::kNoCandidate) keys.push_back(q);
      }
    const size_t sel = std::min(size_t(a.sel), keys.size());
    std::partial_sort(keys.begin(), keys.begin() + std::ptrdiff_t(sel), keys.end());
    for (int64_t r = 0; r < a.sel; ++r)
      bm::select_decode(a, scores, deltas, boxes, n, r, size_t(r) < sel ? keys[size_t(r)] : bm::kNoCandidate, cand);
  }
}

// Per image, greedy NMS in the candidates' order (ProposalNmsArgs). The two passes run together: whether a
// candidate survives each depends only on the candidates ahead of it. Suppressions are computed for the
// candidates kept by the per-class pass only, and the scan ends at the mnr-th survivor (nothing after it
// changes the records written).
void CpuBackend::box_nms(const ProposalNmsArgs& a, const double* cand, float* y) {
#pragma omp parallel for schedule(dynamic) if (a.n > 1)
  for (int64_t n = 0; n < a.n; ++n) {
    std::vector<uint64_t> order;
    for (int64_t s = 0; s < a.slots; ++s) {
      const uint64_t q = bm::nms_key(a, cand, n, s);
      if (q != bm::kNoCandidate) order.push_back(q);
    }
    std::sort(order.begin(), order.end());
    auto at = [&](size_t x) { return bm::candidate(a, cand, n, int64_t(order[x] & 0xffffffffu)); };
    std::vector<unsigned char> gone(order.size(), 0);  // bit 0: dropped per class, bit 1: class-agnostically
    int64_t m = 0;
    for (size_t x = 0; x < order.size() && m < a.mnr; ++x) {
      if (gone[x] & 1u) continue;
      const bool keep = !(gone[x] & 2u);
      const double* cx = at(x);
      for (size_t z = x + 1; z < order.size(); ++z)
        if (!(gone[z] & 1u)) gone[z] |= bm::suppression(a, cx, at(z)) & (keep ? 3u : 1u);
      if (keep) bm::write_proposal(a, cx, y, n, m++);
    }
    for (; m < a.mnr; ++m) bm::write_proposal(a, nullptr, y, n, m);
  }
}

}  // namespace opendl
