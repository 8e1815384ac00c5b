// CPU backend: the detection layers' box steps (gather, anchor assignment, training targets) with OpenMP over
// the boxes; the per-box code is backend/box_math.h, shared with the CUDA plugin. Every output element is
// written by one iteration and the best IoU of each ground-truth record is a maximum (order-free), so the
// results do not depend on the thread count.
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

}  // namespace opendl
