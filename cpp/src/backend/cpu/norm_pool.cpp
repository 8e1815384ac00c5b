// CPU backend, own OpenMP kernels for batch normalisation (with the ReLU fused into forward and backward) and
// for max / average pooling, on the plain nchw activations kept between layers.
//
// Why not oneDNN here: for plain nchw memory oneDNN dispatches pooling to its reference kernel (one
// std::function call per output element) and batch normalisation to a generic one, and the ReLU after a batch
// normalisation was a separate pass over memory each way. These kernels are memory-bound loops that read each
// tensor the fewest times possible.
//
// Determinism: every output element is written by exactly one thread, and per-channel sums are formed from
// per-row partial sums (a row = one sample's plane of one channel) added in a fixed order, so results are
// bit-identical whatever the thread count (no single-threaded fallback is needed in deterministic mode).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#endif

#include "backend/cpu/cpu_backend.h"
#include "backend/element_math.h"
#include "backend/sampling_index.h"

namespace opendl {
namespace {

// Partial sums are formed in float over chunks of this many elements (vectorised) and added up in double,
// which bounds the float rounding error by the chunk length rather than the row length.
constexpr int64_t kChunk = 1024;
constexpr int64_t kParallelMin = 32768;  // below this many elements a kernel runs on the calling thread

// sum(x - shift) and sum((x - shift)^2) over n elements. The shift (a value of the same channel) keeps the
// variance computed from these sums free of cancellation for data far from zero.
OPENDL_CPU_CLONES void row_moments(const float* x, int64_t n, float shift, double* s_out, double* ss_out) {
  double s = 0.0, ss = 0.0;
  for (int64_t i0 = 0; i0 < n; i0 += kChunk) {
    const int64_t e = std::min(n, i0 + kChunk);
    float fs = 0.f, fss = 0.f;
#pragma omp simd reduction(+ : fs, fss)
    for (int64_t i = i0; i < e; ++i) {
      const float d = x[i] - shift;
      fs += d;
      fss += d * d;
    }
    s += fs;
    ss += fss;
  }
  *s_out = s;
  *ss_out = ss;
}

// y = a * x + b, then max(., 0) with relu.
OPENDL_CPU_CLONES void row_affine(const float* x, float* y, int64_t n, float a, float b, bool relu) {
  if (relu) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      const float v = a * x[i] + b;
      y[i] = v > 0.f ? v : 0.f;
    }
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) y[i] = a * x[i] + b;
  }
}

// With g = dy masked by y > 0 (relu) or dy: sum(g) and sum(g * (x - mean)).
OPENDL_CPU_CLONES void row_grad_sums(const float* x, const float* dy, const float* y, int64_t n, float mean,
                                     double* sg_out, double* sgx_out) {
  double sg = 0.0, sgx = 0.0;
  for (int64_t i0 = 0; i0 < n; i0 += kChunk) {
    const int64_t e = std::min(n, i0 + kChunk);
    float fg = 0.f, fgx = 0.f;
    if (y) {
#pragma omp simd reduction(+ : fg, fgx)
      for (int64_t i = i0; i < e; ++i) {
        const float g = y[i] > 0.f ? dy[i] : 0.f;
        fg += g;
        fgx += g * (x[i] - mean);
      }
    } else {
#pragma omp simd reduction(+ : fg, fgx)
      for (int64_t i = i0; i < e; ++i) {
        fg += dy[i];
        fgx += dy[i] * (x[i] - mean);
      }
    }
    sg += fg;
    sgx += fgx;
  }
  *sg_out = sg;
  *sgx_out = sgx;
}

// dx (=|+=) a * g + b * x + c with g as above.
OPENDL_CPU_CLONES void row_grad_apply(const float* x, const float* dy, const float* y, float* dx, int64_t n, float a,
                                      float b, float c, bool accumulate) {
  if (y) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      const float g = y[i] > 0.f ? dy[i] : 0.f;
      const float v = a * g + b * x[i] + c;
      dx[i] = accumulate ? dx[i] + v : v;
    }
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      const float v = a * dy[i] + b * x[i] + c;
      dx[i] = accumulate ? dx[i] + v : v;
    }
  }
}

using si::window;

// Max pooling of one plane; idx (may be null) receives the flat input index of each maximum (first one on
// ties), -1 for a window holding no input pixel (its output is 0).
void max_plane(const PoolKey& k, const float* x, float* y, int32_t* idx) {
  for (int64_t oh = 0; oh < k.oh; ++oh) {
    int64_t h0, h1;
    window(oh, k.sh, k.pt, k.kh, k.ih, h0, h1);
    for (int64_t ow = 0; ow < k.ow; ++ow) {
      int64_t w0, w1;
      window(ow, k.sw, k.pl, k.kw, k.iw, w0, w1);
      int64_t at;
      y[oh * k.ow + ow] = si::window_max(x, k.iw, h0, h1, w0, w1, at);
      if (idx) idx[oh * k.ow + ow] = int32_t(at);
    }
  }
}

// 2x2 windows with stride 2 and no padding (the common case), same result as max_plane: one output row from
// input rows r0, r1 (r0 starts at flat input index base). The argmax keeps the first maximum on ties
// (comparisons are strict, so a NaN in a later position never wins, as in max_plane).
void max_row_2x2_scalar(const float* r0, const float* r1, float* y, int32_t* idx, int64_t o0, int64_t ow,
                        int32_t base, int32_t iw) {
  for (int64_t o = o0; o < ow; ++o) {
    float m = r0[2 * o];
    int32_t off = 0;
    const float b = r0[2 * o + 1], c = r1[2 * o], d = r1[2 * o + 1];
    if (b > m) m = b, off = 1;
    if (c > m) m = c, off = iw;
    if (d > m) m = d, off = iw + 1;
    y[o] = m;
    if (idx) idx[o] = base + 2 * int32_t(o) + off;
  }
}

#if defined(__GNUC__) && defined(__x86_64__)
// AVX2: eight outputs at a time; the even / odd input columns are split with one lane permutation per vector.
__attribute__((target("avx2"))) void max_row_2x2_avx2(const float* r0, const float* r1, float* y, int32_t* idx,
                                                      int64_t ow, int32_t base, int32_t iw) {
  const __m256i split = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
  const __m256i step = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
  const __m256 one = _mm256_castsi256_ps(_mm256_set1_epi32(1)), down = _mm256_castsi256_ps(_mm256_set1_epi32(iw)),
               diag = _mm256_castsi256_ps(_mm256_set1_epi32(iw + 1));
  int64_t o = 0;
  for (; o + 8 <= ow; o += 8) {
    const __m256 a0 = _mm256_permutevar8x32_ps(_mm256_loadu_ps(r0 + 2 * o), split);
    const __m256 a1 = _mm256_permutevar8x32_ps(_mm256_loadu_ps(r0 + 2 * o + 8), split);
    const __m256 b0 = _mm256_permutevar8x32_ps(_mm256_loadu_ps(r1 + 2 * o), split);
    const __m256 b1 = _mm256_permutevar8x32_ps(_mm256_loadu_ps(r1 + 2 * o + 8), split);
    const __m256 tl = _mm256_permute2f128_ps(a0, a1, 0x20), tr = _mm256_permute2f128_ps(a0, a1, 0x31);
    const __m256 bl = _mm256_permute2f128_ps(b0, b1, 0x20), br = _mm256_permute2f128_ps(b0, b1, 0x31);
    __m256 m = tl, off = _mm256_setzero_ps();
    __m256 gt = _mm256_cmp_ps(tr, m, _CMP_GT_OQ);
    m = _mm256_blendv_ps(m, tr, gt);
    off = _mm256_blendv_ps(off, one, gt);
    gt = _mm256_cmp_ps(bl, m, _CMP_GT_OQ);
    m = _mm256_blendv_ps(m, bl, gt);
    off = _mm256_blendv_ps(off, down, gt);
    gt = _mm256_cmp_ps(br, m, _CMP_GT_OQ);
    m = _mm256_blendv_ps(m, br, gt);
    off = _mm256_blendv_ps(off, diag, gt);
    _mm256_storeu_ps(y + o, m);
    if (idx) {
      const __m256i at = _mm256_add_epi32(_mm256_add_epi32(_mm256_set1_epi32(base + 2 * int32_t(o)), step),
                                          _mm256_castps_si256(off));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(idx + o), at);
    }
  }
  max_row_2x2_scalar(r0, r1, y, idx, o, ow, base, iw);
}
const bool kHaveAvx2 = __builtin_cpu_supports("avx2");
#endif

void max_row_2x2(const float* r0, const float* r1, float* y, int32_t* idx, int64_t ow, int32_t base, int32_t iw) {
#if defined(__GNUC__) && defined(__x86_64__)
  if (kHaveAvx2) return max_row_2x2_avx2(r0, r1, y, idx, ow, base, iw);
#endif
  max_row_2x2_scalar(r0, r1, y, idx, 0, ow, base, iw);
}

void max_plane_2x2(const PoolKey& k, const float* x, float* y, int32_t* idx) {
  for (int64_t oh = 0; oh < k.oh; ++oh) {
    const float* r0 = x + 2 * oh * k.iw;
    max_row_2x2(r0, r0 + k.iw, y + oh * k.ow, idx ? idx + oh * k.ow : nullptr, k.ow, int32_t(2 * oh * k.iw),
                int32_t(k.iw));
  }
}

// Average over the input pixels inside each window (padding excluded from the count); 0 for an empty window.
void avg_plane(const PoolKey& k, const float* x, float* y) {
  for (int64_t oh = 0; oh < k.oh; ++oh) {
    int64_t h0, h1;
    window(oh, k.sh, k.pt, k.kh, k.ih, h0, h1);
    for (int64_t ow = 0; ow < k.ow; ++ow) {
      int64_t w0, w1;
      window(ow, k.sw, k.pl, k.kw, k.iw, w0, w1);
      y[oh * k.ow + ow] = si::window_mean(x, k.iw, h0, h1, w0, w1);
    }
  }
}

void avg_plane_backward(const PoolKey& k, const float* dy, float* dx) {
  for (int64_t oh = 0; oh < k.oh; ++oh) {
    int64_t h0, h1;
    window(oh, k.sh, k.pt, k.kh, k.ih, h0, h1);
    for (int64_t ow = 0; ow < k.ow; ++ow) {
      int64_t w0, w1;
      window(ow, k.sw, k.pl, k.kw, k.iw, w0, w1);
      const int64_t cnt = (h1 - h0) * (w1 - w0);
      if (cnt <= 0) continue;
      const float g = dy[oh * k.ow + ow] / float(cnt);
      for (int64_t h = h0; h < h1; ++h)
        for (int64_t w = w0; w < w1; ++w) dx[h * k.iw + w] += g;
    }
  }
}

// --- blocked layouts: a row is one (sample, channel block) of HW positions x L lanes (channels); channels-last
// (nhwc) is the case of one block holding all C channels. Position p's lanes start at x[p * L]; the lane loop is
// innermost so it vectorises. Each kernel is one template for both kinds of rows: LT = 8 or 16, a fixed block
// whose lane count is known at compile time (accumulators on the stack), and LT = 0, channels-last rows of any
// width L (accumulators in per-thread arrays, see lane_buffers).
#define OPENDL_INLINE inline __attribute__((always_inline))

// Per-lane scratch: float, double and int32 arrays of the row's width.
struct LaneBuffers {
  float* f1;
  float* f2;
  double* d1;
  double* d2;
  int32_t* i1;
};
LaneBuffers lane_buffers(int64_t L) {
  thread_local std::vector<float> f1, f2;
  thread_local std::vector<double> d1, d2;
  thread_local std::vector<int32_t> i1;
  f1.resize(size_t(L));
  f2.resize(size_t(L));
  d1.resize(size_t(L));
  d2.resize(size_t(L));
  i1.resize(size_t(L));
  return {f1.data(), f2.data(), d1.data(), d2.data(), i1.data()};
}

// Per-lane sum(x - shift) and sum((x - shift)^2), as row_moments.
template <int LT>
OPENDL_INLINE void lanes_moments(int64_t Lrt, const float* x, int64_t hw, const float* shift, double* s, double* ss,
                                 LaneBuffers b) {
  const int64_t L = LT ? LT : Lrt;
  for (int64_t l = 0; l < L; ++l) b.d1[l] = b.d2[l] = 0.0;
  const int64_t step = std::max<int64_t>(kChunk / L, 1);
  for (int64_t p0 = 0; p0 < hw; p0 += step) {
    const int64_t e = std::min(hw, p0 + step);
    for (int64_t l = 0; l < L; ++l) b.f1[l] = b.f2[l] = 0.f;
    for (int64_t p = p0; p < e; ++p) {
      const float* v = x + p * L;
#pragma omp simd
      for (int64_t l = 0; l < L; ++l) {
        const float d = v[l] - shift[l];
        b.f1[l] += d;
        b.f2[l] += d * d;
      }
    }
    for (int64_t l = 0; l < L; ++l) {
      b.d1[l] += b.f1[l];
      b.d2[l] += b.f2[l];
    }
  }
  for (int64_t l = 0; l < L; ++l) {
    s[l] = b.d1[l];
    ss[l] = b.d2[l];
  }
}

template <int LT>
OPENDL_INLINE void lanes_affine(int64_t Lrt, const float* x, float* y, int64_t hw, const float* a, const float* b,
                                bool relu) {
  const int64_t L = LT ? LT : Lrt;
  for (int64_t p = 0; p < hw * L; p += L) {
    if (relu) {
#pragma omp simd
      for (int64_t l = 0; l < L; ++l) {
        const float v = a[l] * x[p + l] + b[l];
        y[p + l] = v > 0.f ? v : 0.f;
      }
    } else {
#pragma omp simd
      for (int64_t l = 0; l < L; ++l) y[p + l] = a[l] * x[p + l] + b[l];
    }
  }
}

// Per-lane sum(g) and sum(g * (x - mean)), g = dy masked by y > 0 when y is given, as row_grad_sums.
template <int LT>
OPENDL_INLINE void lanes_grad_sums(int64_t Lrt, const float* x, const float* dy, const float* y, int64_t hw,
                                   const float* mean, double* sg, double* sgx, LaneBuffers b) {
  const int64_t L = LT ? LT : Lrt;
  for (int64_t l = 0; l < L; ++l) b.d1[l] = b.d2[l] = 0.0;
  const int64_t step = std::max<int64_t>(kChunk / L, 1);
  for (int64_t p0 = 0; p0 < hw; p0 += step) {
    const int64_t e = std::min(hw, p0 + step);
    for (int64_t l = 0; l < L; ++l) b.f1[l] = b.f2[l] = 0.f;
    for (int64_t p = p0 * L; p < e * L; p += L) {
      if (y) {
#pragma omp simd
        for (int64_t l = 0; l < L; ++l) {
          const float g = y[p + l] > 0.f ? dy[p + l] : 0.f;
          b.f1[l] += g;
          b.f2[l] += g * (x[p + l] - mean[l]);
        }
      } else {
#pragma omp simd
        for (int64_t l = 0; l < L; ++l) {
          b.f1[l] += dy[p + l];
          b.f2[l] += dy[p + l] * (x[p + l] - mean[l]);
        }
      }
    }
    for (int64_t l = 0; l < L; ++l) {
      b.d1[l] += b.f1[l];
      b.d2[l] += b.f2[l];
    }
  }
  for (int64_t l = 0; l < L; ++l) {
    sg[l] = b.d1[l];
    sgx[l] = b.d2[l];
  }
}

// dx (=|+=) a * g + b * x + c per lane, g as above.
template <int LT>
OPENDL_INLINE void lanes_grad_apply(int64_t Lrt, const float* x, const float* dy, const float* y, float* dx,
                                    int64_t hw, const float* a, const float* b, const float* c, bool accumulate) {
  const int64_t L = LT ? LT : Lrt;
  for (int64_t p = 0; p < hw * L; p += L) {
    if (y) {
#pragma omp simd
      for (int64_t l = 0; l < L; ++l) {
        const float v = a[l] * (y[p + l] > 0.f ? dy[p + l] : 0.f) + b[l] * x[p + l] + c[l];
        dx[p + l] = accumulate ? dx[p + l] + v : v;
      }
    } else {
#pragma omp simd
      for (int64_t l = 0; l < L; ++l) {
        const float v = a[l] * dy[p + l] + b[l] * x[p + l] + c[l];
        dx[p + l] = accumulate ? dx[p + l] + v : v;
      }
    }
  }
}

// Any window (lanes_max_plane's general case); the argmax is tracked only when IDX (training). With a fixed
// block the running maxima and their indices are GCC vector values held in registers: written as per-lane
// arrays, GCC if-converts the updates into masked stores to the stack (25 against 4 ms for ResNet's 3x3 / 2
// pooling at batch 16).
template <int LT>
struct LaneVec;
template <>
struct LaneVec<8> {
  typedef float F __attribute__((vector_size(32)));
  typedef int32_t I __attribute__((vector_size(32)));
};
template <>
struct LaneVec<16> {
  typedef float F __attribute__((vector_size(64)));
  typedef int32_t I __attribute__((vector_size(64)));
};
template <int LT, bool IDX>
OPENDL_INLINE void lanes_max_windows(const PoolKey& k, int64_t Lrt, const float* x, float* y, int32_t* idx,
                                     float* best, int32_t* at) {
  const int64_t L = LT ? LT : Lrt;
  for (int64_t oh = 0; oh < k.oh; ++oh) {
    int64_t h0, h1;
    window(oh, k.sh, k.pt, k.kh, k.ih, h0, h1);
    for (int64_t ow = 0; ow < k.ow; ++ow) {
      int64_t w0, w1;
      window(ow, k.sw, k.pl, k.kw, k.iw, w0, w1);
      float* yo = y + (oh * k.ow + ow) * L;
      int32_t* io = IDX ? idx + (oh * k.ow + ow) * L : nullptr;
      if (h0 >= h1 || w0 >= w1) {
        for (int64_t l = 0; l < L; ++l) {
          yo[l] = 0.f;
          if (IDX) io[l] = -1;
        }
        continue;
      }
      const int32_t first = int32_t((h0 * k.iw + w0) * L);
      if constexpr (LT > 0) {
        using VF = typename LaneVec<LT>::F;
        using VI = typename LaneVec<LT>::I;
        VI lane;
        for (int l = 0; l < LT; ++l) lane[l] = l;
        VF m;
        std::memcpy(&m, x + first, sizeof m);
        VI a = first + lane;
        for (int64_t h = h0; h < h1; ++h)
          for (int64_t w = w0; w < w1; ++w) {
            const int32_t base = int32_t((h * k.iw + w) * L);
            VF v;
            std::memcpy(&v, x + base, sizeof v);
            const VI gt = v > m;
            m = gt ? v : m;
            if (IDX) a = gt ? base + lane : a;
          }
        std::memcpy(yo, &m, sizeof m);
        if (IDX) std::memcpy(io, &a, sizeof a);
      } else {
#pragma omp simd
        for (int64_t l = 0; l < L; ++l) {
          best[l] = x[first + l];
          if (IDX) at[l] = first + int32_t(l);
        }
        for (int64_t h = h0; h < h1; ++h)
          for (int64_t w = w0; w < w1; ++w) {
            const int32_t base = int32_t((h * k.iw + w) * L);
#pragma omp simd
            for (int64_t l = 0; l < L; ++l) {
              const float v = x[base + l];
              const bool gt = v > best[l];
              best[l] = gt ? v : best[l];
              if (IDX) at[l] = gt ? base + int32_t(l) : at[l];
            }
          }
        for (int64_t l = 0; l < L; ++l) yo[l] = best[l];
        if (IDX)
          for (int64_t l = 0; l < L; ++l) io[l] = at[l];
      }
    }
  }
}

// Max pooling of one plane, same semantics as max_plane per channel (the first maximum wins ties); idx holds
// plane-relative flat indices. best / at: per-lane scratch of the row's width.
template <int LT>
OPENDL_INLINE void lanes_max_plane(const PoolKey& k, int64_t Lrt, const float* x, float* y, int32_t* idx, float* best,
                                   int32_t* at) {
  const int64_t L = LT ? LT : Lrt;
  if (k.kh == 2 && k.kw == 2 && k.sh == 2 && k.sw == 2 && k.pt == 0 && k.pl == 0 && 2 * k.oh <= k.ih &&
      2 * k.ow <= k.iw) {  // the common 2x2 / 2 case: four vector loads per output position
    for (int64_t oh = 0; oh < k.oh; ++oh)
      for (int64_t ow = 0; ow < k.ow; ++ow) {
        const int32_t q[4] = {int32_t((2 * oh * k.iw + 2 * ow) * L), int32_t((2 * oh * k.iw + 2 * ow + 1) * L),
                              int32_t(((2 * oh + 1) * k.iw + 2 * ow) * L),
                              int32_t(((2 * oh + 1) * k.iw + 2 * ow + 1) * L)};
        float* yo = y + (oh * k.ow + ow) * L;
        int32_t* io = idx ? idx + (oh * k.ow + ow) * L : nullptr;
#pragma omp simd
        for (int64_t l = 0; l < L; ++l) {
          float m = x[q[0] + l];
          int32_t a = q[0] + int32_t(l);
          for (int j = 1; j < 4; ++j) {
            const float v = x[q[j] + l];
            a = v > m ? q[j] + int32_t(l) : a;
            m = v > m ? v : m;
          }
          yo[l] = m;
          if (io) io[l] = a;
        }
      }
    return;
  }
  if (idx) lanes_max_windows<LT, true>(k, L, x, y, idx, best, at);
  else lanes_max_windows<LT, false>(k, L, x, y, nullptr, best, at);
}

// Average pooling of one plane (padding excluded from the count); backward: x is the output gradient and y the
// input gradient, added to. acc: per-lane scratch.
template <int LT>
OPENDL_INLINE void lanes_avg_plane(const PoolKey& k, int64_t Lrt, const float* x, float* y, bool backward,
                                   double* acc) {
  const int64_t L = LT ? LT : Lrt;
  for (int64_t oh = 0; oh < k.oh; ++oh) {
    int64_t h0, h1;
    window(oh, k.sh, k.pt, k.kh, k.ih, h0, h1);
    for (int64_t ow = 0; ow < k.ow; ++ow) {
      int64_t w0, w1;
      window(ow, k.sw, k.pl, k.kw, k.iw, w0, w1);
      const int64_t o = (oh * k.ow + ow) * L, cnt = (h1 - h0) * (w1 - w0);
      if (backward) {
        if (cnt <= 0) continue;
        for (int64_t h = h0; h < h1; ++h)
          for (int64_t w = w0; w < w1; ++w) {
            float* d = y + (h * k.iw + w) * L;
#pragma omp simd
            for (int64_t l = 0; l < L; ++l) d[l] += x[o + l] / float(cnt);
          }
        continue;
      }
      for (int64_t l = 0; l < L; ++l) acc[l] = 0.0;
      for (int64_t h = h0; h < h1; ++h)
        for (int64_t w = w0; w < w1; ++w) {
          const float* v = x + (h * k.iw + w) * L;
#pragma omp simd
          for (int64_t l = 0; l < L; ++l) acc[l] += v[l];
        }
#pragma omp simd
      for (int64_t l = 0; l < L; ++l) y[o + l] = cnt > 0 ? float(acc[l] / double(cnt)) : 0.f;
    }
  }
}

// Dispatch on the row width: the fixed blocks with stack scratch, any other width with per-thread scratch.
#define OPENDL_BY_WIDTH(CALL)                                                    \
  if (L == 16) {                                                                \
    float f1[16], f2[16];                                                       \
    double d1[16], d2[16];                                                      \
    int32_t i1[16];                                                             \
    const LaneBuffers buf{f1, f2, d1, d2, i1};                                  \
    CALL(16);                                                                   \
  } else if (L == 8) {                                                          \
    float f1[8], f2[8];                                                         \
    double d1[8], d2[8];                                                        \
    int32_t i1[8];                                                              \
    const LaneBuffers buf{f1, f2, d1, d2, i1};                                  \
    CALL(8);                                                                    \
  } else {                                                                      \
    const LaneBuffers buf = lane_buffers(L);                                    \
    CALL(0);                                                                    \
  }

OPENDL_CPU_CLONES void blk_moments(int64_t L, const float* x, int64_t hw, const float* shift, double* s, double* ss) {
#define CALL(T) lanes_moments<T>(L, x, hw, shift, s, ss, buf)
  OPENDL_BY_WIDTH(CALL)
#undef CALL
}
OPENDL_CPU_CLONES void blk_affine(int64_t L, const float* x, float* y, int64_t hw, const float* a, const float* b,
                                  bool relu) {
  if (L == 16) lanes_affine<16>(L, x, y, hw, a, b, relu);
  else if (L == 8) lanes_affine<8>(L, x, y, hw, a, b, relu);
  else lanes_affine<0>(L, x, y, hw, a, b, relu);
}
OPENDL_CPU_CLONES void blk_grad_sums(int64_t L, const float* x, const float* dy, const float* y, int64_t hw,
                                     const float* mean, double* sg, double* sgx) {
#define CALL(T) lanes_grad_sums<T>(L, x, dy, y, hw, mean, sg, sgx, buf)
  OPENDL_BY_WIDTH(CALL)
#undef CALL
}
OPENDL_CPU_CLONES void blk_grad_apply(int64_t L, const float* x, const float* dy, const float* y, float* dx,
                                      int64_t hw, const float* a, const float* b, const float* c, bool accumulate) {
  if (L == 16) lanes_grad_apply<16>(L, x, dy, y, dx, hw, a, b, c, accumulate);
  else if (L == 8) lanes_grad_apply<8>(L, x, dy, y, dx, hw, a, b, c, accumulate);
  else lanes_grad_apply<0>(L, x, dy, y, dx, hw, a, b, c, accumulate);
}
OPENDL_CPU_CLONES void blk_max_plane(const PoolKey& k, int64_t L, const float* x, float* y, int32_t* idx) {
#define CALL(T) lanes_max_plane<T>(k, L, x, y, idx, buf.f1, buf.i1)
  OPENDL_BY_WIDTH(CALL)
#undef CALL
}
OPENDL_CPU_CLONES void blk_avg_plane(const PoolKey& k, int64_t L, const float* x, float* y, bool backward) {
#define CALL(T) lanes_avg_plane<T>(k, L, x, y, backward, buf.d1)
  OPENDL_BY_WIDTH(CALL)
#undef CALL
}
#undef OPENDL_BY_WIDTH
#undef OPENDL_INLINE

}  // namespace

// --- batch normalisation -------------------------------------------------------------------------------------

// Plain layout: rows are (sample, channel) planes, one lane. Blocked: rows are (sample, channel block) planes of L
// lanes; channel c = (row % CB) * L + lane. Per-row partial sums go to part[row * L + lane].
void CpuBackend::bn_forward(const BnKey& k, float eps, bool training, Act act, const float* x, const float* scale,
                            const float* shift, float* mean, float* var, float* y) {
  const int64_t L = k.block > 0 ? k.block : 1, N = k.n, C = k.c, CB = C / L, HW = k.h * k.w, rows = N * CB,
                len = HW * L;
  const bool relu = act == Act::kRelu;
  const bool par = rows * len > kParallelMin;
  if (training) {
    std::vector<double> s(static_cast<size_t>(rows * L)), ss(static_cast<size_t>(rows * L));
#pragma omp parallel for schedule(static) if (par)
    for (int64_t r = 0; r < rows; ++r) {
      const float* shift0 = x + (r % CB) * len;  // sample 0's first position of the same channels
      if (L == 1) row_moments(x + r * len, HW, shift0[0], &s[size_t(r)], &ss[size_t(r)]);
      else blk_moments(L, x + r * len, HW, shift0, &s[size_t(r * L)], &ss[size_t(r * L)]);
    }
    const double M = double(N * HW);
    for (int64_t c = 0; c < C; ++c) {
      const int64_t cb = c / L, l = c % L;
      double sc = 0.0, ssc = 0.0;
      for (int64_t b = 0; b < N; ++b) {
        sc += s[size_t((b * CB + cb) * L + l)];
        ssc += ss[size_t((b * CB + cb) * L + l)];
      }
      const double m = sc / M;
      mean[c] = float(double(x[cb * len + l]) + m);
      var[c] = float(std::max(ssc / M - m * m, 0.0));  // biased batch variance
    }
  }
  std::vector<float> a(static_cast<size_t>(C)), b(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    const double inv = 1.0 / std::sqrt(double(var[c]) + double(eps));
    a[size_t(c)] = float(double(scale[c]) * inv);
    b[size_t(c)] = float(double(shift[c]) - double(mean[c]) * double(scale[c]) * inv);
  }
#pragma omp parallel for schedule(static) if (par)
  for (int64_t r = 0; r < rows; ++r) {
    const size_t c0 = size_t((r % CB) * L);
    if (L == 1) row_affine(x + r * len, y + r * len, HW, a[c0], b[c0], relu);
    else blk_affine(L, x + r * len, y + r * len, HW, &a[c0], &b[c0], relu);
  }
}

// With g = dy (masked by y > 0 when the ReLU is fused), xhat = (x - mean) * inv, inv = 1 / sqrt(var + eps):
// dshift = sum g, dscale = sum g * xhat, dx = scale * inv * (g - mean(g) - xhat * mean(g * xhat)), sums over
// (N, H, W) of a channel.
void CpuBackend::bn_update_running(size_t c, double momentum, double unbias, const float* batch_mean,
                                   const float* batch_var, float* mean, float* var, float* count) {
  const double m = em::bn_momentum(momentum, *count);
  for (size_t i = 0; i < c; ++i) em::bn_running(m, unbias, batch_mean[i], batch_var[i], mean[i], var[i]);
  *count += 1.f;
}

void CpuBackend::bn_backward(const BnKey& k, float eps, Act act, const float* x, const float* y, const float* dy,
                             const float* scale, const float* mean, const float* var, float* dx, float* dscale,
                             float* dshift, bool accumulate_dx, bool accumulate_dw) {
  const int64_t L = k.block > 0 ? k.block : 1, N = k.n, C = k.c, CB = C / L, HW = k.h * k.w, rows = N * CB,
                len = HW * L;
  const float* mask = act == Act::kRelu ? y : nullptr;
  const bool par = rows * len > kParallelMin;
  std::vector<double> sg(static_cast<size_t>(rows * L)), sgx(static_cast<size_t>(rows * L));
#pragma omp parallel for schedule(static) if (par)
  for (int64_t r = 0; r < rows; ++r) {
    const float* m = mask ? mask + r * len : nullptr;
    const int64_t c0 = (r % CB) * L;
    if (L == 1) row_grad_sums(x + r * len, dy + r * len, m, HW, mean[c0], &sg[size_t(r)], &sgx[size_t(r)]);
    else blk_grad_sums(L, x + r * len, dy + r * len, m, HW, mean + c0, &sg[size_t(r * L)], &sgx[size_t(r * L)]);
  }
  const double M = double(N * HW);
  std::vector<float> A(static_cast<size_t>(C)), B(static_cast<size_t>(C)), Cc(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    const int64_t cb = c / L, l = c % L;
    double g = 0.0, gx = 0.0;
    for (int64_t b = 0; b < N; ++b) {
      g += sg[size_t((b * CB + cb) * L + l)];
      gx += sgx[size_t((b * CB + cb) * L + l)];
    }
    const double inv = 1.0 / std::sqrt(double(var[c]) + double(eps));
    if (dshift) dshift[c] = float(accumulate_dw ? double(dshift[c]) + g : g);
    if (dscale) dscale[c] = float(accumulate_dw ? double(dscale[c]) + gx * inv : gx * inv);
    // dx = a g + b x + c with a = scale inv, b = -scale inv^3 mean(g (x - mean)), c = -a mean(g) - b mean
    const double a = double(scale[c]) * inv;
    const double bb = -double(scale[c]) * inv * inv * inv * (gx / M);
    A[size_t(c)] = float(a);
    B[size_t(c)] = float(bb);
    Cc[size_t(c)] = float(-a * (g / M) - bb * double(mean[c]));
  }
  if (!dx) return;
#pragma omp parallel for schedule(static) if (par)
  for (int64_t r = 0; r < rows; ++r) {
    const size_t c0 = size_t((r % CB) * L);
    const float* m = mask ? mask + r * len : nullptr;
    if (L == 1)
      row_grad_apply(x + r * len, dy + r * len, m, dx + r * len, HW, A[c0], B[c0], Cc[c0], accumulate_dx);
    else
      blk_grad_apply(L, x + r * len, dy + r * len, m, dx + r * len, HW, &A[c0], &B[c0], &Cc[c0], accumulate_dx);
  }
}

// --- pooling -------------------------------------------------------------------------------------------------

size_t CpuBackend::pool_workspace_floats(const PoolKey& k) {
  static_assert(sizeof(int32_t) == sizeof(float), "the argmax workspace stores one int32 per float slot");
  return k.max ? size_t(k.n * k.c * k.oh * k.ow) : 0;
}

// Plain: one plane per (sample, channel). Blocked: one plane per (sample, channel block) holding L lanes.
void CpuBackend::pool_forward(const PoolKey& k, const float* x, float* y, float* ws, bool training) {
  const int64_t L = k.block > 0 ? k.block : 1;
  const int64_t planes = k.n * k.c / L, in = k.ih * k.iw * L, out = k.oh * k.ow * L;
  int32_t* idx = training && k.max ? reinterpret_cast<int32_t*>(ws) : nullptr;
  const bool two = k.kh == 2 && k.kw == 2 && k.sh == 2 && k.sw == 2 && k.pt == 0 && k.pl == 0 &&
                   2 * k.oh <= k.ih && 2 * k.ow <= k.iw;
#pragma omp parallel for schedule(static) if (planes * in > kParallelMin)
  for (int64_t p = 0; p < planes; ++p) {
    const float* xp = x + p * in;
    float* yp = y + p * out;
    int32_t* ip = idx ? idx + p * out : nullptr;
    if (L > 1) {
      if (k.max) blk_max_plane(k, L, xp, yp, ip);
      else blk_avg_plane(k, L, xp, yp, false);
    } else if (!k.max) {
      avg_plane(k, xp, yp);
    } else if (two) {
      max_plane_2x2(k, xp, yp, ip);
    } else {
      max_plane(k, xp, yp, ip);
    }
  }
}

void CpuBackend::pool_backward(const PoolKey& k, const float* dy, const float* ws, float* dx, bool accumulate) {
  const int64_t L = k.block > 0 ? k.block : 1;
  const int64_t planes = k.n * k.c / L, in = k.ih * k.iw * L, out = k.oh * k.ow * L;
  const int32_t* idx = reinterpret_cast<const int32_t*>(ws);
#pragma omp parallel for schedule(static) if (planes * in > kParallelMin)
  for (int64_t p = 0; p < planes; ++p) {
    float* dxp = dx + p * in;
    const float* dyp = dy + p * out;
    if (!accumulate) std::fill(dxp, dxp + in, 0.f);
    if (k.max) {
      const int32_t* ip = idx + p * out;
      for (int64_t o = 0; o < out; ++o)
        if (ip[o] >= 0) dxp[ip[o]] += dyp[o];
    } else if (L > 1) {
      blk_avg_plane(k, L, dyp, dxp, true);
    } else {
      avg_plane_backward(k, dyp, dxp);
    }
  }
}

}  // namespace opendl
