// Index math (and the per-window values) of pooling windows and zoom taps, shared by the CPU backend (scatter form of the backward passes) and
// the CUDA plugin (gather form: each input element collects the outputs that read it, so no atomics are needed).
// Host and device code alike. cuda/checks/gather_index_check.cpp checks the gather ranges against brute force.
#pragma once

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define OPENDL_SI_HD __host__ __device__ inline
#else
#define OPENDL_SI_HD inline
#endif

namespace opendl {
namespace si {

// --- pooling ---------------------------------------------------------------------------------------------------
// The window of output index o along one axis, clipped to the input: [lo, hi).
OPENDL_SI_HD void window(int64_t o, int64_t stride, int64_t pad, int64_t k, int64_t in, int64_t& lo, int64_t& hi) {
  const int64_t s = o * stride - pad;
  lo = s > 0 ? s : 0;
  hi = s + k < in ? s + k : in;
}
// The outputs whose windows hold input index i along one axis: [lo, hi] (empty when lo > hi).
OPENDL_SI_HD void covering(int64_t i, int64_t stride, int64_t pad, int64_t k, int64_t out, int64_t& lo, int64_t& hi) {
  // o * stride - pad <= i < o * stride - pad + k
  const int64_t a = i + pad - k + 1;  // o >= ceil(a / stride)
  lo = a <= 0 ? 0 : (a + stride - 1) / stride;
  hi = i + pad < 0 ? -1 : (i + pad) / stride;
  if (hi > out - 1) hi = out - 1;
}

// Max pooling of one window [h0, h1) x [w0, w1) of a plane iw wide whose pixel (h, w) is x[(h * iw + w) * step]
// (step 1: a plain plane; C: one channel of a channels-last image): the first maximum (strict comparisons, so a
// later NaN never wins) and its flat in-plane index h * iw + w in `at`; 0 and -1 for an empty window.
OPENDL_SI_HD float window_max(const float* x, int64_t iw, int64_t h0, int64_t h1, int64_t w0, int64_t w1,
                              int64_t& at, int64_t step = 1) {
  float best = 0.f;
  at = -1;
  for (int64_t h = h0; h < h1; ++h)
    for (int64_t w = w0; w < w1; ++w) {
      const float v = x[(h * iw + w) * step];
      if (at < 0 || v > best) {
        best = v;
        at = h * iw + w;
      }
    }
  return best;
}
// Average pooling of one window (pixels as in window_max): the mean of the input pixels inside it (summed in
// double), 0 when empty.
OPENDL_SI_HD float window_mean(const float* x, int64_t iw, int64_t h0, int64_t h1, int64_t w0, int64_t w1,
                               int64_t step = 1) {
  double s = 0.0;
  for (int64_t h = h0; h < h1; ++h)
    for (int64_t w = w0; w < w1; ++w) s += x[(h * iw + w) * step];
  const int64_t cnt = (h1 - h0) * (w1 - w0);
  return cnt > 0 ? float(s / double(cnt)) : 0.f;
}

// --- zoom (PyTorch / ONNX conventions) ---------------------------------------------------------------------------
// Source coordinate of output index o along one axis for bilinear sampling.
OPENDL_SI_HD float zoom_src(int64_t o, int64_t in, int64_t out, bool align_corners) {
  if (align_corners) return out > 1 ? float(o) * float(in - 1) / float(out - 1) : 0.f;
  const float s = (float(o) + 0.5f) * float(in) / float(out) - 0.5f;
  return s < 0.f ? 0.f : s;
}
OPENDL_SI_HD int64_t nearest_src(int64_t o, int64_t in, int64_t out, bool align_corners) {
  const int64_t s = align_corners ? (out > 1 ? int64_t(llround(double(o) * double(in - 1) / double(out - 1))) : 0)
                                  : int64_t(floor(double(o) * double(in) / double(out)));
  return s < in - 1 ? s : in - 1;
}
// Bilinear taps of output o along one axis: i0, i1 = min(i0 + 1, in - 1) and the weight l of i1.
OPENDL_SI_HD void taps(int64_t o, int64_t in, int64_t out, bool align, int64_t& i0, int64_t& i1, float& l) {
  const float s = zoom_src(o, in, out, align);
  i0 = int64_t(s) < in - 1 ? int64_t(s) : in - 1;
  i1 = i0 + 1 < in - 1 ? i0 + 1 : in - 1;
  l = s - float(i0);
}
// The bilinear sample of a plane iw wide from the taps of both axes.
OPENDL_SI_HD float bilinear(const float* x, int64_t iw, int64_t y0, int64_t y1, int64_t x0, int64_t x1, float ly,
                            float lx) {
  return (1 - ly) * ((1 - lx) * x[y0 * iw + x0] + lx * x[y0 * iw + x1]) +
         ly * ((1 - lx) * x[y1 * iw + x0] + lx * x[y1 * iw + x1]);
}
// Output (oy, ox) of zooming an ih x iw plane to oh x ow: its nearest input, or the bilinear blend of its taps.
OPENDL_SI_HD float zoom_value(const float* x, int64_t ih, int64_t iw, int64_t oh, int64_t ow, bool interpolate,
                              bool align, int64_t oy, int64_t ox) {
  if (!interpolate) return x[nearest_src(oy, ih, oh, align) * iw + nearest_src(ox, iw, ow, align)];
  int64_t y0, y1, x0, x1;
  float ly, lx;
  taps(oy, ih, oh, align, y0, y1, ly);
  taps(ox, iw, ow, align, x0, x1, lx);
  return bilinear(x, iw, y0, y1, x0, x1, ly, lx);
}
// The first tap of output o along an axis; it never decreases as o grows.
OPENDL_SI_HD int64_t first_tap(int64_t o, int64_t in, int64_t out, bool bilinear, bool align) {
  if (!bilinear) return nearest_src(o, in, out, align);
  int64_t i0, i1;
  float l;
  taps(o, in, out, align, i0, i1, l);
  return i0;
}
// The smallest output index whose first tap is >= v (out when none).
OPENDL_SI_HD int64_t lower_bound_tap(int64_t v, int64_t in, int64_t out, bool bilinear, bool align) {
  int64_t lo = 0, hi = out;
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (first_tap(mid, in, out, bilinear, align) < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
// The outputs that read input index i along an axis: [lo, hi). Their first tap is i (nearest) or i - 1 or i
// (bilinear, whose second tap is the first plus one, or the first at the border).
OPENDL_SI_HD void readers(int64_t i, int64_t in, int64_t out, bool bilinear, bool align, int64_t& lo, int64_t& hi) {
  lo = lower_bound_tap(bilinear ? i - 1 : i, in, out, bilinear, align);
  hi = lower_bound_tap(i + 1, in, out, bilinear, align);
}
// Weight of input index i in output o along one axis (0 when o does not read i).
OPENDL_SI_HD float tap_weight(int64_t o, int64_t i, int64_t in, int64_t out, bool bilinear, bool align) {
  if (!bilinear) return nearest_src(o, in, out, align) == i ? 1.f : 0.f;
  int64_t i0, i1;
  float l;
  taps(o, in, out, align, i0, i1, l);
  return (i0 == i ? 1.f - l : 0.f) + (i1 == i ? l : 0.f);
}

}  // namespace si
}  // namespace opendl
