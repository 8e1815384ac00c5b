// CPU backend, OpenMP kernels: memory, activations, softmax, strided copies (concat), elementwise ops,
// zoom (bilinear / nearest neighbour), dropout and depth max. Each kernel parallelises over independent
// outputs so results do not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "backend/cpu/cpu_backend.h"
#include "backend/element_math.h"
#include "backend/sampling_index.h"
#include "opendl/error.h"

namespace opendl {

Backend& cpu_backend() {
  static CpuBackend be;
  return be;
}

void* host_alloc(size_t bytes) {
  constexpr size_t kHuge = size_t(2) << 20;
  const bool huge = bytes >= 2 * kHuge;
  const size_t align = huge ? kHuge : 64;
  size_t padded = (bytes + align - 1) / align * align;
  if (padded == 0) padded = 64;
  void* p = std::aligned_alloc(align, padded);
  if (!p) fail(err::kHostMem, "out of host memory allocating " + std::to_string(bytes) + " bytes");
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (huge) madvise(p, padded, MADV_HUGEPAGE);  // advice only: without transparent huge pages nothing changes
#endif
  return p;
}
void host_free(void* p) { std::free(p); }

float* CpuBackend::alloc(size_t count) {
  const size_t bytes = count * sizeof(float);
  void* p = host_alloc(bytes);
  std::memset(p, 0, std::max<size_t>(bytes, 1));
  return static_cast<float*>(p);
}
void CpuBackend::free(float* p) { host_free(p); }

// Element (n, c, p) of an (N, C, P) tensor sits at (n * C + c) * P + p plain and at ((n * C/B + c/B) * P + p) * B +
// c % B blocked.
void CpuBackend::to_plain(const float* blocked, float* plain, const Shape4& s, int64_t B) {
  const int64_t CB = s.c / B, P = s.h * s.w;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < s.n * CB; ++r) {
    const int64_t n = r / CB, cb = r % CB;
    const float* src = blocked + r * P * B;
    for (int64_t l = 0; l < B; ++l) {
      float* dst = plain + (n * s.c + cb * B + l) * P;
      for (int64_t p = 0; p < P; ++p) dst[p] = src[p * B + l];
    }
  }
}

void CpuBackend::from_plain(const float* plain, float* blocked, const Shape4& s, int64_t B) {
  const int64_t CB = s.c / B, P = s.h * s.w;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < s.n * CB; ++r) {
    const int64_t n = r / CB, cb = r % CB;
    float* dst = blocked + r * P * B;
    for (int64_t l = 0; l < B; ++l) {
      const float* src = plain + (n * s.c + cb * B + l) * P;
      for (int64_t p = 0; p < P; ++p) dst[p * B + l] = src[p];
    }
  }
}

void CpuBackend::fill(float* p, size_t n, float v) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; ++i) p[i] = v;
}
void CpuBackend::copy(float* dst, const float* src, size_t n) {
  if (dst != src) std::memcpy(dst, src, n * sizeof(float));
}

namespace {
// Elementwise kernels run in chunks of this many elements, one chunk per task.
constexpr size_t kActChunk = 16384;

OPENDL_CPU_CLONES void act_forward_range(Act a, const float* x, float* y, size_t n) {
  switch (a) {
    case Act::kNone:
      if (x != y) std::memcpy(y, x, n * sizeof(float));
      break;
    case Act::kRelu:
#pragma omp simd
      for (size_t i = 0; i < n; ++i) y[i] = x[i] > 0.f ? x[i] : 0.f;
      break;
    case Act::kSigmoid:
      for (size_t i = 0; i < n; ++i) y[i] = 1.f / (1.f + std::exp(-x[i]));
      break;
    case Act::kTanh:
      for (size_t i = 0; i < n; ++i) y[i] = std::tanh(x[i]);
      break;
  }
}

OPENDL_CPU_CLONES void act_backward_range(Act a, const float* y, const float* dy, float* dx, size_t n,
                                          bool accumulate) {
  switch (a) {
    case Act::kRelu:
      if (accumulate) {
#pragma omp simd
        for (size_t i = 0; i < n; ++i) dx[i] += y[i] > 0.f ? dy[i] : 0.f;
      } else {
#pragma omp simd
        for (size_t i = 0; i < n; ++i) dx[i] = y[i] > 0.f ? dy[i] : 0.f;
      }
      break;
    case Act::kSigmoid:
#pragma omp simd
      for (size_t i = 0; i < n; ++i) {
        const float g = dy[i] * y[i] * (1.f - y[i]);
        dx[i] = accumulate ? dx[i] + g : g;
      }
      break;
    case Act::kTanh:
#pragma omp simd
      for (size_t i = 0; i < n; ++i) {
        const float g = dy[i] * (1.f - y[i] * y[i]);
        dx[i] = accumulate ? dx[i] + g : g;
      }
      break;
    default:
      if (accumulate) {
#pragma omp simd
        for (size_t i = 0; i < n; ++i) dx[i] += dy[i];
      } else if (dx != dy) {
        std::memcpy(dx, dy, n * sizeof(float));
      }
  }
}
}  // namespace

void CpuBackend::act_forward(Act a, size_t n, const float* x, float* y) {
  const int64_t chunks = int64_t((n + kActChunk - 1) / kActChunk);
#pragma omp parallel for schedule(static) if (chunks > 4)
  for (int64_t c = 0; c < chunks; ++c) {
    const size_t b = size_t(c) * kActChunk;
    act_forward_range(a, x + b, y + b, std::min(kActChunk, n - b));
  }
}

void CpuBackend::act_backward(Act a, size_t n, const float* y, const float* dy, float* dx, bool accumulate) {
  const int64_t chunks = int64_t((n + kActChunk - 1) / kActChunk);
#pragma omp parallel for schedule(static) if (chunks > 4)
  for (int64_t c = 0; c < chunks; ++c) {
    const size_t b = size_t(c) * kActChunk;
    act_backward_range(a, y + b, dy + b, dx + b, std::min(kActChunk, n - b), accumulate);
  }
}

void CpuBackend::softmax_forward(int64_t outer, int64_t c, int64_t inner, const float* x, float* y) {
#pragma omp parallel for schedule(static)
  for (int64_t o = 0; o < outer; ++o) {
    const float* xo = x + o * c * inner;
    float* yo = y + o * c * inner;
    for (int64_t i = 0; i < inner; ++i) {
      float m = -INFINITY;
      for (int64_t k = 0; k < c; ++k) m = std::max(m, xo[k * inner + i]);
      double s = 0;
      for (int64_t k = 0; k < c; ++k) {
        float e = std::exp(xo[k * inner + i] - m);
        yo[k * inner + i] = e;
        s += e;
      }
      float inv = static_cast<float>(1.0 / s);
      for (int64_t k = 0; k < c; ++k) yo[k * inner + i] *= inv;
    }
  }
}

void CpuBackend::softmax_backward(int64_t outer, int64_t c, int64_t inner, const float* y, const float* dy, float* dx,
                                  bool accumulate) {
#pragma omp parallel for schedule(static)
  for (int64_t o = 0; o < outer; ++o) {
    const int64_t base = o * c * inner;
    for (int64_t i = 0; i < inner; ++i) {
      double dot = 0;
      for (int64_t k = 0; k < c; ++k) dot += double(y[base + k * inner + i]) * dy[base + k * inner + i];
      for (int64_t k = 0; k < c; ++k) {
        int64_t j = base + k * inner + i;
        float g = y[j] * static_cast<float>(dy[j] - dot);
        dx[j] = accumulate ? dx[j] + g : g;
      }
    }
  }
}

void CpuBackend::copy2d(float* dst, int64_t dst_ld, int64_t dst_off, const float* src, int64_t src_ld,
                        int64_t src_off, int64_t rows, int64_t cols, float alpha, bool accumulate) {
#pragma omp parallel for schedule(static) if (rows * cols > 65536)
  for (int64_t r = 0; r < rows; ++r) {
    float* d = dst + r * dst_ld + dst_off;
    const float* s = src + r * src_ld + src_off;
    if (accumulate)
      for (int64_t j = 0; j < cols; ++j) d[j] += alpha * s[j];
    else
      for (int64_t j = 0; j < cols; ++j) d[j] = alpha * s[j];
  }
}

void CpuBackend::axpy(size_t n, float alpha, const float* x, float* y) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}
void CpuBackend::mul(size_t n, const float* a, const float* b, float* y) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; ++i) y[i] = a[i] * b[i];
}
void CpuBackend::mul_acc(size_t n, const float* a, const float* b, float* y, bool accumulate) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; ++i) y[i] = accumulate ? y[i] + a[i] * b[i] : a[i] * b[i];
}
void CpuBackend::minmax_forward(size_t n, bool is_max, const float* a, const float* b, float* y) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; ++i) y[i] = is_max ? std::max(a[i], b[i]) : std::min(a[i], b[i]);
}
void CpuBackend::minmax_backward(size_t n, bool is_max, bool first, const float* a, const float* b, const float* dy,
                                 float* dx, bool accumulate) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; ++i) {
    bool a_wins = is_max ? a[i] >= b[i] : a[i] <= b[i];
    float g = (a_wins == first) ? dy[i] : 0.f;
    dx[i] = accumulate ? dx[i] + g : g;
  }
}

void CpuBackend::zoom_forward(const ZoomKey& k, const float* x, float* y) {
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < k.n * k.c; ++p) {
    const float* xp = x + p * k.ih * k.iw;
    float* yp = y + p * k.oh * k.ow;
    for (int64_t oy = 0; oy < k.oh; ++oy)
      for (int64_t ox = 0; ox < k.ow; ++ox)
        yp[oy * k.ow + ox] = si::zoom_value(xp, k.ih, k.iw, k.oh, k.ow, k.bilinear, k.align_corners, oy, ox);
  }
}

void CpuBackend::zoom_backward(const ZoomKey& k, const float* dy, float* dx, bool accumulate) {
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < k.n * k.c; ++p) {
    float* dxp = dx + p * k.ih * k.iw;
    const float* dyp = dy + p * k.oh * k.ow;
    if (!accumulate) std::memset(dxp, 0, sizeof(float) * k.ih * k.iw);
    for (int64_t oy = 0; oy < k.oh; ++oy)
      for (int64_t ox = 0; ox < k.ow; ++ox) {
        float g = dyp[oy * k.ow + ox];
        if (!k.bilinear) {
          dxp[si::nearest_src(oy, k.ih, k.oh, k.align_corners) * k.iw +
              si::nearest_src(ox, k.iw, k.ow, k.align_corners)] += g;
          continue;
        }
        int64_t y0, y1, x0, x1;
        float ly, lx;
        si::taps(oy, k.ih, k.oh, k.align_corners, y0, y1, ly);
        si::taps(ox, k.iw, k.ow, k.align_corners, x0, x1, lx);
        dxp[y0 * k.iw + x0] += (1 - ly) * (1 - lx) * g;
        dxp[y0 * k.iw + x1] += (1 - ly) * lx * g;
        dxp[y1 * k.iw + x0] += ly * (1 - lx) * g;
        dxp[y1 * k.iw + x1] += ly * lx * g;
      }
  }
}

void CpuBackend::dropout_forward(const Shape4& s, int64_t block, float p, const uint64_t* step_seed, uint64_t salt,
                                 const float* x, float* mask, float* y) {
  const uint64_t seed = *step_seed;
  const size_t n = size_t(s.numel());
  const int64_t hw = s.h * s.w;
#pragma omp parallel for schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; ++i) {
    mask[i] = em::dropout_factor(seed, salt, em::plain_index(i, s.c, hw, block), p);
    y[i] = x[i] * mask[i];
  }
}

void CpuBackend::depth_max_forward(int64_t n, int64_t c, int64_t hw, const float* x, float* argmax, float* value) {
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < n; ++b)
    for (int64_t i = 0; i < hw; ++i) {
      const float* xp = x + b * c * hw + i;
      int64_t best = 0;
      for (int64_t k = 1; k < c; ++k)
        if (xp[k * hw] > xp[best * hw]) best = k;
      if (argmax) argmax[b * hw + i] = float(best);
      if (value) value[b * hw + i] = xp[best * hw];
    }
}

void CpuBackend::depth_max_backward(int64_t n, int64_t c, int64_t hw, const float* argmax, const float* dvalue,
                                    float* dx, bool accumulate) {
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < n; ++b)
    for (int64_t i = 0; i < hw; ++i) {
      int64_t best = int64_t(argmax[b * hw + i]);
      for (int64_t k = 0; k < c; ++k) {
        float g = k == best ? dvalue[b * hw + i] : 0.f;
        float& d = dx[b * c * hw + k * hw + i];
        d = accumulate ? d + g : g;
      }
    }
}

void CpuBackend::count_nonfinite(size_t n, const float* x, double* out) {
  int64_t bad = 0;
#pragma omp parallel for schedule(static) reduction(+ : bad) if (n > 65536)
  for (size_t i = 0; i < n; ++i) bad += !std::isfinite(x[i]);
  *out = double(bad);
}

}  // namespace opendl
