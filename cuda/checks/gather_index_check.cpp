// Check of the gather form of the GPU's pooling and zoom backward passes (backend/sampling_index.h): for every
// input index of many geometries, the outputs the gather visits (si::covering, si::readers) and the weights it
// takes (si::tap_weight) must be exactly those with which the CPU's scatter form (si::window, si::taps,
// si::nearest_src) adds into that index. Plain C++, no GPU needed; run by tools/ci_cuda_check.sh:
//   g++ -std=c++17 -O1 -Icpp/src cuda/checks/gather_index_check.cpp -o /tmp/gather_check && /tmp/gather_check
#include <cstdio>
#include <vector>

#include "backend/sampling_index.h"

using namespace opendl;

namespace {

int failures = 0;

void expect(bool ok, const char* what, long a, long b, long c, long d, long e) {
  if (ok) return;
  if (++failures <= 20) std::printf("FAIL %s (%ld %ld %ld %ld %ld)\n", what, a, b, c, d, e);
}

// Pooling along one axis: input i must be covered by exactly the outputs whose clipped window holds it.
void pooling(long in, long k, long s, long pad, long pad_end) {
  const long out = (in + pad + pad_end - k) / s + 1;
  if (out < 1) return;
  for (long i = 0; i < in; ++i) {
    int64_t lo, hi;
    si::covering(i, s, pad, k, out, lo, hi);
    for (long o = 0; o < out; ++o) {
      int64_t w0, w1;
      si::window(o, s, pad, k, in, w0, w1);
      const bool scatter = w0 <= i && i < w1;
      const bool gather = lo <= o && o <= hi;
      expect(scatter == gather, "pooling covering", in, k, s, pad, o * 1000 + i);
    }
  }
}

// Zoom along one axis: the gather's weight of (o, i) equals the scatter's, and outputs outside [lo, hi) add 0.
void zoom(long in, long out, bool bilinear, bool align) {
  std::vector<float> w(size_t(in * out), 0.f);  // scatter weights
  for (long o = 0; o < out; ++o) {
    if (!bilinear) {
      w[size_t(o * in + si::nearest_src(o, in, out, align))] += 1.f;
      continue;
    }
    int64_t i0, i1;
    float l;
    si::taps(o, in, out, align, i0, i1, l);
    w[size_t(o * in + i0)] += 1.f - l;
    w[size_t(o * in + i1)] += l;
  }
  for (long i = 0; i < in; ++i) {
    int64_t lo, hi;
    si::readers(i, in, out, bilinear, align, lo, hi);
    for (long o = 0; o < out; ++o) {
      const float g = (lo <= o && o < hi) ? si::tap_weight(o, i, in, out, bilinear, align) : 0.f;
      const float d = g - w[size_t(o * in + i)];
      expect(d < 1e-6f && d > -1e-6f, "zoom weight", in, out, bilinear, align, o * 1000 + i);
    }
  }
}

}  // namespace

int main() {
  long cases = 0;
  for (long in = 1; in <= 23; ++in)
    for (long k = 1; k <= 5; ++k)
      for (long s = 1; s <= 3; ++s)
        for (long pad = 0; pad < k; ++pad)
          for (long pad_end = 0; pad_end < k + s; ++pad_end, ++cases) pooling(in, k, s, pad, pad_end);
  for (long in = 1; in <= 40; ++in)
    for (long out = 1; out <= 40; ++out)
      for (int mode = 0; mode < 4; ++mode, ++cases) zoom(in, out, mode & 1, mode & 2);
  // Large factors both ways.
  for (long in : {1L, 3L, 7L, 512L})
    for (long out : {1L, 2L, 5L, 333L, 1024L})
      for (int mode = 0; mode < 4; ++mode, ++cases) zoom(in, out, mode & 1, mode & 2);
  std::printf("gather_index_check: %ld geometries, %d failure(s)\n", cases, failures);
  return failures ? 1 : 0;
}
