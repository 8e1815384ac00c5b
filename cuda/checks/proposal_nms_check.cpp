// Check of the CUDA plugin's box-proposal NMS (cuda/proposal_nms.h: suppression bit masks, greedy scan per image)
// run on the host with one thread per block, the images in groups as the plugin runs them, against a two-pass
// reference of the documented rules (backend.h ProposalNmsArgs): greedy NMS per class, then class-agnostic NMS
// over the survivors, the first max records by descending raw score (ties: lower slot). Candidates are random,
// crowded boxes (rectangle1 and rectangle2) with tied scores and empty slots, at slot counts around the 64-bit
// word boundaries. Plain C++, no GPU needed; run by tools/ci_cuda_check.sh:
//   g++ -std=c++17 -O1 -Icpp/src -Icuda cuda/checks/proposal_nms_check.cpp -o /tmp/pnc && /tmp/pnc
#include <algorithm>
#include <cstdio>
#include <random>
#include <vector>

#include "proposal_nms.h"

using namespace opendl;

namespace {

int failures = 0, cases = 0;

// The reference for image n: the records (P + 2 floats each, mnr of them).
std::vector<float> reference(const ProposalNmsArgs& a, const std::vector<double>& cand, int64_t n) {
  const int64_t R = a.p + kProposalExtra;
  std::vector<int64_t> order;
  for (int64_t s = 0; s < a.slots; ++s)
    if (cand[size_t((n * a.slots + s) * R + a.p + 3)] != 0.0) order.push_back(s);
  auto c = [&](int64_t s) { return &cand[size_t((n * a.slots + s) * R)]; };
  std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return float(c(x)[a.p]) > float(c(y)[a.p]); });
  auto iou = [&](int64_t x, int64_t y) {
    const double *p = c(x), *q = c(y);
    return a.p == 5 ? bm::box_iou(Box2{p[0], p[1], p[2], p[3], p[4]}, Box2{q[0], q[1], q[2], q[3], q[4]})
                    : bm::box_iou(Box1{p[0], p[1], p[2], p[3]}, Box1{q[0], q[1], q[2], q[3]});
  };
  auto greedy = [&](const std::vector<int64_t>& in, double thr, bool per_class) {
    std::vector<int64_t> keep;
    for (int64_t x : in) {
      bool ok = true;
      for (int64_t k : keep)
        if ((!per_class || c(k)[a.p + 1] == c(x)[a.p + 1]) && iou(k, x) > thr) ok = false;
      if (ok) keep.push_back(x);
    }
    return keep;
  };
  std::vector<int64_t> kept = greedy(order, a.max_overlap, true);  // the classes' passes, merged in order
  if (a.max_overlap_ca < 1.0) kept = greedy(kept, a.max_overlap_ca, false);
  std::vector<float> y(size_t(a.mnr * (a.p + 2)), 0.f);
  for (int64_t m = 0; m < a.mnr; ++m) {
    float* rec = &y[size_t(m * (a.p + 2))];
    if (m >= int64_t(kept.size())) {
      rec[a.p] = -1.f;
      continue;
    }
    const double* v = c(kept[size_t(m)]);
    for (int64_t q = 0; q < a.p; ++q) rec[q] = float(v[q]);
    rec[a.p] = float(v[a.p + 1]);
    rec[a.p + 1] = float(v[a.p + 2]);
  }
  return y;
}

void run(std::mt19937& rng, int64_t n, int64_t slots, int64_t p, int64_t k, int64_t mnr, double thr, double thr_ca,
         int64_t group) {
  ProposalNmsArgs a;
  a.n = n;
  a.slots = slots;
  a.p = p;
  a.mnr = mnr;
  a.max_overlap = thr;
  a.max_overlap_ca = thr_ca;
  const int64_t R = p + kProposalExtra;
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<double> cand(size_t(n * slots * R), 0.0);
  for (int64_t i = 0; i < n * slots; ++i) {
    double* c = &cand[size_t(i * R)];
    if (u(rng) < 0.15) continue;  // an empty slot
    const double r = 20 * u(rng), col = 20 * u(rng), h = 3 + 8 * u(rng), w = 3 + 8 * u(rng);
    if (p == 4) c[0] = r, c[1] = col, c[2] = r + h, c[3] = col + w;
    else c[0] = r, c[1] = col, c[2] = 3.0 * u(rng) - 1.5, c[3] = w / 2, c[4] = h / 2;
    const float logit = float(int(8 * u(rng)) - 4) / 2;  // few distinct values: many ties
    c[p] = logit;
    c[p + 1] = double(int64_t(double(k) * u(rng)));
    c[p + 2] = bm::kPi * logit;  // any confidence; the records must carry it
    c[p + 3] = 1.0;
  }
  // The plugin's steps: NMS keys sorted per image, masks and scans for `group` images at a time.
  std::vector<uint64_t> sorted(size_t(n * slots));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t s = 0; s < slots; ++s) sorted[size_t(i * slots + s)] = bm::nms_key(a, cand.data(), i, s);
    std::sort(sorted.begin() + i * slots, sorted.begin() + (i + 1) * slots);
  }
  const int64_t words = (slots + 63) / 64;
  std::vector<uint64_t> mask1(size_t(group * slots * words), 0xdeadbeefULL), mask2 = mask1;
  std::vector<uint64_t> gone(size_t(group * 2 * words), 0xdeadbeefULL);
  std::vector<float> y(size_t(n * mnr * (p + 2)), 7.f);
  for (int64_t n0 = 0; n0 < n; n0 += group) {
    const int64_t g = std::min(group, n - n0);
    for (int64_t i = 0; i < g * slots * words; ++i)
      pn::mask_word(a, cand.data(), sorted.data(), n0, words, i, mask1.data(), mask2.data());
    for (int64_t j = 0; j < g; ++j)
      pn::scan(a, cand.data(), sorted.data(), n0, j, words, mask1.data(), mask2.data(), gone.data(), y.data(), 0, 1,
               [] {});
  }
  for (int64_t i = 0; i < n; ++i) {
    ++cases;
    const std::vector<float> ref = reference(a, cand, i);
    const float* got = &y[size_t(i * mnr * (p + 2))];
    if (!std::equal(ref.begin(), ref.end(), got) && ++failures <= 20)
      std::printf("FAIL image %lld of %lld: slots %lld, P %lld, classes %lld, records %lld, IoU %.2f / %.2f\n",
                  (long long)i, (long long)n, (long long)slots, (long long)p, (long long)k, (long long)mnr, thr, thr_ca);
  }
}

}  // namespace

int main() {
  std::mt19937 rng(7);
  for (int64_t p : {4, 5})
    for (int64_t slots : {1, 2, 63, 64, 65, 127, 129, 200})
      for (int64_t k : {1, 3})
        for (double thr_ca : {1.0, 0.6})
          for (int64_t mnr : {1, 5, 300}) run(rng, 3, slots, p, k, mnr, 0.4, thr_ca, 2);
  if (failures) {
    std::printf("proposal_nms_check: %d of %d images FAILED\n", failures, cases);
    return 1;
  }
  std::printf("proposal_nms_check: %d images ok\n", cases);
  return 0;
}
