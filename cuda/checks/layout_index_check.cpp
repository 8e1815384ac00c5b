// Check of the index math behind the GPU's channels-last activations (backend/layout_index.h, em::plain_index,
// the strided pooling windows of backend/sampling_index.h): against the layouts backend.h defines (plain, and
// blocked with block B, channels-last being B = C), against the filter orders cuDNN documents (KCRS, and KRSC for
// channels-last) and against the plain pooling of each channel's plane. Plain C++, no GPU needed; run by
// tools/ci_cuda_check.sh:
//   g++ -std=c++17 -O1 -Icpp/src cuda/checks/layout_index_check.cpp -o /tmp/layout_check && /tmp/layout_check
#include <cstdio>
#include <vector>

#include "backend/element_math.h"
#include "backend/layout_index.h"
#include "backend/sampling_index.h"

using namespace opendl;

namespace {

int failures = 0;

void expect(bool ok, const char* what, long a, long b, long c, long d) {
  if (ok) return;
  if (++failures <= 20) std::printf("FAIL %s (%ld %ld %ld %ld)\n", what, a, b, c, d);
}

// backend.h's blocked layout: element (n, c, p) at ((n * C/B + c/B) * P + p) * B + c % B; B = 0 plain.
long blocked(long n, long c, long p, long C, long P, long B) {
  return B == 0 ? (n * C + c) * P + p : ((n * (C / B) + c / B) * P + p) * B + c % B;
}

void activations(long N, long C, long P) {
  for (bool last : {false, true}) {
    std::vector<int> seen(size_t(N * C * P), 0);
    for (long n = 0; n < N; ++n)
      for (long c = 0; c < C; ++c)
        for (long p = 0; p < P; ++p) {
          const long i = li::offset(n, c, p, C, P, last);
          expect(i == blocked(n, c, p, C, P, last ? C : 0), "offset is backend.h's layout", N, C, P, last);
          if (i < 0 || i >= N * C * P) {
            expect(false, "offset in range", N, C, P, i);
            continue;
          }
          ++seen[size_t(i)];
          int64_t n2, c2, p2;
          li::coords(i, C, P, last, n2, c2, p2);
          expect(n2 == n && c2 == c && p2 == p, "coords inverts offset", N, C, P, i);
          expect(li::channel_of(i, C, P, last) == c, "channel_of", N, C, P, i);
          expect(i == li::offset(n, c, 0, C, P, last) + p * li::position_step(C, last), "position step", N, C, P, i);
        }
    for (int s : seen) expect(s == 1, "offset is a bijection", N, C, P, last);
  }
  // Dropout's draw index: the plain index of the element at each position of any blocked layout.
  for (long B : {0L, C, 8L, 16L}) {
    if (B && C % B) continue;
    for (long n = 0; n < N; ++n)
      for (long c = 0; c < C; ++c)
        for (long p = 0; p < P; ++p)
          expect(long(em::plain_index(size_t(blocked(n, c, p, C, P, B)), C, P, B)) == blocked(n, c, p, C, P, 0),
                 "plain_index", C, P, B, blocked(n, c, p, C, P, B));
  }
}

// Weights (g, k, j, r) (oc = g * a + k, ic within the group j, kernel position r) in the four filter orders.
void filters(long G, long a, long b, long khw) {
  for (bool swap : {false, true})
    for (bool last : {false, true}) {
      std::vector<int> seen(size_t(G * a * b * khw), 0);
      for (long g = 0; g < G; ++g)
        for (long k = 0; k < a; ++k)
          for (long j = 0; j < b; ++j)
            for (long r = 0; r < khw; ++r) {
              const long f = li::filter_index(g, k, j, r, a, b, khw, swap, last);
              // cuDNN's filter (K, C/groups, R, S): K the output channels of the cuDNN convolution, C its inputs
              // per group; a transposed convolution is the data gradient of the convolution with the two swapped.
              const long K = swap ? g * b + j : g * a + k, Cg = swap ? a : b, q = swap ? k : j;
              const long want = last ? (K * khw + r) * Cg + q : (K * Cg + q) * khw + r;  // KRSC or KCRS
              expect(f == want, "filter order", swap, last, f, want);
              if (f >= 0 && f < long(seen.size())) ++seen[size_t(f)];
            }
      for (int s : seen) expect(s == 1, "filter_index is a bijection", G, a, b, swap * 2 + last);
    }
}

// Pooling windows read through a position step: every channel of a channels-last tensor pools like its plane.
void pooling(long C, long H, long W) {
  std::vector<float> x(size_t(C * H * W));
  for (size_t i = 0; i < x.size(); ++i) x[i] = float((i * 7919) % 101) - 50.f;  // distinct enough, mixed signs
  for (long c = 0; c < C; ++c) {
    std::vector<float> plane(size_t(H * W));
    for (long p = 0; p < H * W; ++p) plane[size_t(p)] = x[size_t(li::offset(0, c, p, C, H * W, true))];
    for (long h0 = 0; h0 < H; ++h0)
      for (long w0 = 0; w0 < W; ++w0) {
        const long h1 = h0 + 2 < H ? h0 + 2 : H, w1 = w0 + 3 < W ? w0 + 3 : W;
        int64_t at_plain, at_last;
        const float m0 = si::window_max(plane.data(), W, h0, h1, w0, w1, at_plain);
        const float m1 = si::window_max(x.data() + li::offset(0, c, 0, C, H * W, true), W, h0, h1, w0, w1, at_last,
                                        li::position_step(C, true));
        expect(m0 == m1 && at_plain == at_last, "strided window_max", c, h0, w0, at_last);
        const float a0 = si::window_mean(plane.data(), W, h0, h1, w0, w1);
        const float a1 = si::window_mean(x.data() + li::offset(0, c, 0, C, H * W, true), W, h0, h1, w0, w1,
                                         li::position_step(C, true));
        expect(a0 == a1, "strided window_mean", c, h0, w0, 0);
      }
  }
}

}  // namespace

int main() {
  long cases = 0;
  for (long N : {1L, 2L, 3L})
    for (long C : {1L, 3L, 8L, 16L, 24L, 32L})
      for (long P : {1L, 5L, 12L}) activations(N, C, P), ++cases;
  for (long G : {1L, 2L, 4L})
    for (long a : {1L, 3L, 4L})
      for (long b : {1L, 2L, 5L})
        for (long khw : {1L, 4L, 9L}) filters(G, a, b, khw), ++cases;
  for (long C : {1L, 3L, 16L}) pooling(C, 5, 7), ++cases;
  if (failures) {
    std::printf("layout_index_check: %d failures\n", failures);
    return 1;
  }
  std::printf("layout_index_check: %ld geometries ok\n", cases);
  return 0;
}
