// Layer kernels of the plugin besides cuDNN and cuBLAS (kernels.h): batch normalisation, pooling, zoom, dropout,
// depth max, layout copies, the deconvolution weight transpose and the convolution epilogues (bias, activation,
// bias gradient). Activations are plain (N, C, H, W) or, where the launcher takes `last`, channels-last
// (N, H, W, C) (backend.h: block B = C). Semantics follow the CPU backend (backend/cpu/norm_pool.cpp, kernels.cpp)
// element for element.
//
// Determinism: no atomics. Per-channel sums are split into a fixed number of chunks per channel (independent of
// the device), each summed by one block in a fixed tree order, and the chunk sums added in order; backward passes
// of pooling and zoom gather (each input element adds the outputs that read it, in increasing output order)
// instead of scattering.
#include <algorithm>
#include <cmath>

#include "backend/element_math.h"
#include "backend/layout_index.h"
#include "backend/sampling_index.h"
#include "kernels.h"
#include "launch.cuh"

namespace opendl::cuda {
namespace {

__device__ inline void put(float* d, size_t i, float g, bool accumulate) { d[i] = accumulate ? d[i] + g : g; }

using li::channel_of;

// --- per-channel sums ----------------------------------------------------------------------------------------
// A channel's M = N * HW elements split into a fixed number of chunks (the last ones may be empty), each summed in
// a fixed tree order, two sums per element, into parts[(c * chunks + p) * 2 + {0, 1}] for chunk p of channel c.
// Plain: kChannelChunks chunks, block (c, p) sums chunk p of channel c, its threads along the contiguous plane.
// Channels-last: kLastChunks chunks; a block holds kLastTile channels (its x threads, adjacent in memory) and sums
// chunk p of each, its y threads taking every kLastRows-th position of the chunk.
constexpr int kChannelChunks = 16;
constexpr int kLastChunks = 64, kLastTile = 32, kLastRows = kThreads / kLastTile;
inline int channel_chunks(bool last) { return last ? kLastChunks : kChannelChunks; }

template <class Term>
__global__ void channel_partial_kernel(int64_t n, int64_t c, int64_t hw, Term term, double* parts) {
  __shared__ double s0[kThreads], s1[kThreads];
  const int64_t ch = blockIdx.x, p = blockIdx.y, m = n * hw;
  const int64_t per = (m + kChannelChunks - 1) / kChannelChunks;
  const int64_t begin = p * per, end = begin + per < m ? begin + per : m;
  double a = 0, b = 0;
  for (int64_t j = begin + threadIdx.x; j < end; j += blockDim.x) {
    const int64_t i = ((j / hw) * c + ch) * hw + j % hw;  // element (sample j / hw, channel ch, position j % hw)
    term(ch, i, a, b);
  }
  s0[threadIdx.x] = a;
  s1[threadIdx.x] = b;
  __syncthreads();
  for (unsigned w = blockDim.x / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) {
      s0[threadIdx.x] += s0[threadIdx.x + w];
      s1[threadIdx.x] += s1[threadIdx.x + w];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    parts[(ch * kChannelChunks + p) * 2] = s0[0];
    parts[(ch * kChannelChunks + p) * 2 + 1] = s1[0];
  }
}

template <class Term>
__global__ void channel_partial_last_kernel(int64_t m, int64_t c, Term term, double* parts) {
  __shared__ double s0[kLastRows][kLastTile], s1[kLastRows][kLastTile];
  const int64_t ch = int64_t(blockIdx.x) * kLastTile + threadIdx.x, p = blockIdx.y;
  const int64_t per = (m + kLastChunks - 1) / kLastChunks;
  const int64_t begin = p * per, end = begin + per < m ? begin + per : m;
  double a = 0, b = 0;
  if (ch < c)
    for (int64_t j = begin + threadIdx.y; j < end; j += kLastRows) term(ch, j * c + ch, a, b);
  s0[threadIdx.y][threadIdx.x] = a;
  s1[threadIdx.y][threadIdx.x] = b;
  __syncthreads();
  for (unsigned w = kLastRows / 2; w > 0; w >>= 1) {
    if (threadIdx.y < w) {
      s0[threadIdx.y][threadIdx.x] += s0[threadIdx.y + w][threadIdx.x];
      s1[threadIdx.y][threadIdx.x] += s1[threadIdx.y + w][threadIdx.x];
    }
    __syncthreads();
  }
  if (threadIdx.y == 0 && ch < c) {
    parts[(ch * kLastChunks + p) * 2] = s0[0][threadIdx.x];
    parts[(ch * kLastChunks + p) * 2 + 1] = s1[0][threadIdx.x];
  }
}

__device__ inline void channel_total(const double* parts, int64_t ch, int chunks, double& a, double& b) {
  a = 0;
  b = 0;
  for (int p = 0; p < chunks; ++p) {
    a += parts[(ch * chunks + p) * 2];
    b += parts[(ch * chunks + p) * 2 + 1];
  }
}

template <class Term>
cudaError_t channel_sums(cudaStream_t stream, int64_t n, int64_t c, int64_t hw, bool last, const Term& term,
                         double* parts) {
  if (last)
    channel_partial_last_kernel<<<dim3(unsigned((c + kLastTile - 1) / kLastTile), kLastChunks),
                                  dim3(kLastTile, kLastRows), 0, stream>>>(n * hw, c, term, parts);
  else
    channel_partial_kernel<<<dim3(unsigned(c), kChannelChunks), kThreads, 0, stream>>>(n, c, hw, term, parts);
  return cudaGetLastError();
}

// --- batch normalisation -------------------------------------------------------------------------------------
// Moments about a shift (sample 0's first value of the channel, at x[ch * cs]: cs = HW plain, 1 channels-last), as
// the CPU backend, so that the variance has no cancellation for data far from zero.
struct MomentTerm {
  int64_t cs;
  const float* x;
  __device__ void operator()(int64_t ch, int64_t i, double& a, double& b) const {
    const double d = double(x[i]) - double(x[ch * cs]);
    a += d;
    b += d * d;
  }
};

// Batch statistics (training) and the affine map y = a x + b per channel.
__global__ void bn_stats_kernel(int64_t c, int64_t m, int chunks, bool training, float eps, const float* x,
                                int64_t cs, const float* scale, const float* shift, const double* parts, float* mean,
                                float* var, float* ab) {
  OPENDL_GRID_LOOP(ch, size_t(c)) {
    if (training) {
      double s, ss;
      channel_total(parts, int64_t(ch), chunks, s, ss);
      const double mm = s / double(m);
      mean[ch] = float(double(x[ch * cs]) + mm);
      var[ch] = float(em::dmax(ss / double(m) - mm * mm, 0.0));
    }
    const double inv = 1.0 / sqrt(double(var[ch]) + double(eps));
    ab[ch] = float(double(scale[ch]) * inv);
    ab[c + ch] = float(double(shift[ch]) - double(mean[ch]) * double(scale[ch]) * inv);
  }
}

__global__ void bn_apply_kernel(size_t total, int64_t c, int64_t hw, bool last, bool relu, const float* x,
                                const float* ab, float* y) {
  OPENDL_GRID_LOOP(i, total) {
    const int64_t ch = channel_of(int64_t(i), c, hw, last);
    float v = fmaf(ab[ch], x[i], ab[c + ch]);
    y[i] = relu ? fmaxf(v, 0.f) : v;
  }
}

// sum(g), sum(g (x - mean)) with g = dy masked by y > 0 under a fused ReLU.
struct GradTerm {
  const float *x, *dy, *y, *mean;
  __device__ void operator()(int64_t ch, int64_t i, double& a, double& b) const {
    const float g = (y && !(y[i] > 0.f)) ? 0.f : dy[i];
    a += double(g);
    b += double(g) * (double(x[i]) - double(mean[ch]));
  }
};

__global__ void bn_grad_coeffs_kernel(int64_t c, int64_t m, int chunks, float eps, const double* parts,
                                      const float* scale, const float* mean, const float* var, float* dscale,
                                      float* dshift, bool accumulate_dw, float* abc) {
  OPENDL_GRID_LOOP(ch, size_t(c)) {
    double g, gx;
    channel_total(parts, int64_t(ch), chunks, g, gx);
    const double inv = 1.0 / sqrt(double(var[ch]) + double(eps));
    if (dshift) dshift[ch] = float(accumulate_dw ? double(dshift[ch]) + g : g);
    if (dscale) dscale[ch] = float(accumulate_dw ? double(dscale[ch]) + gx * inv : gx * inv);
    const double a = double(scale[ch]) * inv;
    const double bb = -double(scale[ch]) * inv * inv * inv * (gx / double(m));
    abc[ch] = float(a);
    abc[c + ch] = float(bb);
    abc[2 * c + ch] = float(-a * (g / double(m)) - bb * double(mean[ch]));
  }
}

__global__ void bn_grad_apply_kernel(size_t total, int64_t c, int64_t hw, bool last, const float* x, const float* dy,
                                     const float* y, const float* abc, float* dx, bool accumulate) {
  OPENDL_GRID_LOOP(i, total) {
    const int64_t ch = channel_of(int64_t(i), c, hw, last);
    const float g = (y && !(y[i] > 0.f)) ? 0.f : dy[i];
    put(dx, i, abc[ch] * g + abc[c + ch] * x[i] + abc[2 * c + ch], accumulate);
  }
}

// --- pooling -------------------------------------------------------------------------------------------------
// Plain or channels-last (k.block != 0) alike: element (n, c, p) of a plane of P positions lies at
// li::offset(n, c, 0, ...) + p * li::position_step(...). Outputs (and max pooling's idx) are in y's layout order.
__global__ void pool_forward_kernel(PoolKey k, const float* x, float* y, int32_t* idx) {
  const size_t total = size_t(k.n * k.c * k.oh * k.ow);
  const bool last = k.block != 0;
  const int64_t step = li::position_step(k.c, last);
  OPENDL_GRID_LOOP(o, total) {
    int64_t n, c, q;
    li::coords(int64_t(o), k.c, k.oh * k.ow, last, n, c, q);
    const int64_t ow = q % k.ow, oh = q / k.ow;
    const float* xp = x + li::offset(n, c, 0, k.c, k.ih * k.iw, last);
    int64_t h0, h1, w0, w1;
    si::window(oh, k.sh, k.pt, k.kh, k.ih, h0, h1);
    si::window(ow, k.sw, k.pl, k.kw, k.iw, w0, w1);
    if (k.max) {
      int64_t at;
      y[o] = si::window_max(xp, k.iw, h0, h1, w0, w1, at, step);
      if (idx) idx[o] = int32_t(at);
    } else {
      y[o] = si::window_mean(xp, k.iw, h0, h1, w0, w1, step);
    }
  }
}

// Each input element adds the gradients of the outputs that took it (max) or averaged it, in increasing output
// order as the CPU backend's scatter does.
__global__ void pool_backward_kernel(PoolKey k, const float* dy, const int32_t* idx, float* dx, bool accumulate) {
  const size_t total = size_t(k.n * k.c * k.ih * k.iw);
  const bool last = k.block != 0;
  const int64_t step = li::position_step(k.c, last);
  OPENDL_GRID_LOOP(i, total) {
    int64_t n, c, flat;
    li::coords(int64_t(i), k.c, k.ih * k.iw, last, n, c, flat);
    const int64_t w = flat % k.iw, h = flat / k.iw;
    int64_t oh0, oh1, ow0, ow1;
    si::covering(h, k.sh, k.pt, k.kh, k.oh, oh0, oh1);
    si::covering(w, k.sw, k.pl, k.kw, k.ow, ow0, ow1);
    float acc = accumulate ? dx[i] : 0.f;
    const int64_t base = li::offset(n, c, 0, k.c, k.oh * k.ow, last);
    const float* dyp = dy + base;
    const int32_t* ip = idx ? idx + base : nullptr;
    for (int64_t oh = oh0; oh <= oh1; ++oh)
      for (int64_t ow = ow0; ow <= ow1; ++ow) {
        const int64_t o = (oh * k.ow + ow) * step;
        if (k.max) {
          if (ip[o] == flat) acc += dyp[o];
        } else {
          int64_t h0, h1, w0, w1;
          si::window(oh, k.sh, k.pt, k.kh, k.ih, h0, h1);
          si::window(ow, k.sw, k.pl, k.kw, k.iw, w0, w1);
          acc += dyp[o] / float((h1 - h0) * (w1 - w0));
        }
      }
    dx[i] = acc;
  }
}

// --- zoom ----------------------------------------------------------------------------------------------------
__global__ void zoom_forward_kernel(ZoomKey k, const float* x, float* y) {
  const size_t total = size_t(k.n * k.c * k.oh * k.ow);
  OPENDL_GRID_LOOP(o, total) {
    const int64_t ox = int64_t(o) % k.ow, oy = int64_t(o) / k.ow % k.oh, plane = int64_t(o) / (k.ow * k.oh);
    const float* xp = x + plane * k.ih * k.iw;
    y[o] = si::zoom_value(xp, k.ih, k.iw, k.oh, k.ow, k.bilinear, k.align_corners, oy, ox);
  }
}

// Gather: input (iy, ix) adds w_y(oy) w_x(ox) dy(oy, ox) over the outputs whose taps include it. Along an axis those
// are the outputs whose first tap is iy - 1 or iy (bilinear) or iy (nearest), a contiguous range since the first
// tap grows with the output index.
__global__ void zoom_backward_kernel(ZoomKey k, const float* dy, float* dx, bool accumulate) {
  const size_t total = size_t(k.n * k.c * k.ih * k.iw);
  OPENDL_GRID_LOOP(i, total) {
    const int64_t ix = int64_t(i) % k.iw, iy = int64_t(i) / k.iw % k.ih, plane = int64_t(i) / (k.iw * k.ih);
    int64_t oy0, oy1, ox0, ox1;
    si::readers(iy, k.ih, k.oh, k.bilinear, k.align_corners, oy0, oy1);
    si::readers(ix, k.iw, k.ow, k.bilinear, k.align_corners, ox0, ox1);
    const float* dyp = dy + plane * k.oh * k.ow;
    float acc = 0.f;
    for (int64_t oy = oy0; oy < oy1; ++oy) {
      const float wy = si::tap_weight(oy, iy, k.ih, k.oh, k.bilinear, k.align_corners);
      if (wy == 0.f) continue;
      float row = 0.f;
      for (int64_t ox = ox0; ox < ox1; ++ox) {
        const float wx = si::tap_weight(ox, ix, k.iw, k.ow, k.bilinear, k.align_corners);
        if (wx != 0.f) row += wx * dyp[oy * k.ow + ox];
      }
      acc += wy * row;
    }
    put(dx, i, acc, accumulate);
  }
}

// --- dropout, depth max ----------------------------------------------------------------------------------------
__global__ void dropout_kernel(size_t n, int64_t c, int64_t hw, int64_t block, float p, const uint64_t* step_seed,
                               uint64_t salt, const float* x, float* mask, float* y) {
  const uint64_t seed = *step_seed;
  OPENDL_GRID_LOOP(i, n) {
    // the CPU backend's draw, at the plain index: the same mask on either device, in any layout
    mask[i] = em::dropout_factor(seed, salt, em::plain_index(i, c, hw, block), p);
    y[i] = x[i] * mask[i];
  }
}

__global__ void depth_max_forward_kernel(int64_t n, int64_t c, int64_t hw, const float* x, float* argmax,
                                         float* value) {
  OPENDL_GRID_LOOP(j, size_t(n * hw)) {
    const int64_t b = int64_t(j) / hw, i = int64_t(j) % hw;
    const float* xp = x + b * c * hw + i;
    int64_t best = 0;
    for (int64_t k = 1; k < c; ++k)
      if (xp[k * hw] > xp[best * hw]) best = k;
    if (argmax) argmax[j] = float(best);
    if (value) value[j] = xp[best * hw];
  }
}

__global__ void depth_max_backward_kernel(int64_t n, int64_t c, int64_t hw, const float* argmax, const float* dvalue,
                                          float* dx, bool accumulate) {
  OPENDL_GRID_LOOP(e, size_t(n * c * hw)) {
    const int64_t i = int64_t(e) % hw, k = int64_t(e) / hw % c, b = int64_t(e) / (hw * c);
    const int64_t j = b * hw + i;
    put(dx, e, int64_t(argmax[j]) == k ? dvalue[j] : 0.f, accumulate);
  }
}

// --- layouts, weights, convolution epilogues ------------------------------------------------------------------
// Element (n, c, p) at (n * C + c) * P + p plain and ((n * C/B + c/B) * P + p) * B + c % B blocked; one thread per
// plain index; the destination is overwritten or added to.
__global__ void relayout_kernel(Shape4 s, int64_t B, const float* src, float* dst, bool to_plain, bool accumulate) {
  const int64_t P = s.h * s.w, CB = s.c / B;
  OPENDL_GRID_LOOP(i, size_t(s.n * s.c * P)) {
    const int64_t p = int64_t(i) % P, c = int64_t(i) / P % s.c, n = int64_t(i) / (P * s.c);
    const int64_t b = ((n * CB + c / B) * P + p) * B + c % B;
    if (to_plain) put(dst, i, src[b], accumulate);
    else put(dst, size_t(b), src[i], accumulate);
  }
}

// opendl's convolution weights (groups, a, b, khw) against cuDNN's filter (li::filter_index). One thread per opendl
// index; to_cudnn writes the filter, else the weights (overwritten or added to).
__global__ void filter_permute_kernel(int64_t groups, int64_t a, int64_t b, int64_t khw, bool swap, bool last,
                                      const float* src, float* dst, bool to_cudnn, bool accumulate) {
  OPENDL_GRID_LOOP(i, size_t(groups * a * b * khw)) {
    const int64_t r = int64_t(i) % khw, j = int64_t(i) / khw % b, k = int64_t(i) / (khw * b) % a,
                  g = int64_t(i) / (khw * b * a);
    const int64_t f = li::filter_index(g, k, j, r, a, b, khw, swap, last);
    if (to_cudnn) put(dst, size_t(f), src[i], accumulate);
    else put(dst, i, src[f], accumulate);
  }
}

// Between planes of h x w and zero-padded planes of H x W holding them at row pt, column pl (either padding may
// be negative, dropping rows or columns), each pixel `inner` consecutive floats (1 plain, where the planes are the
// N * C channel planes; C channels-last, where they are the N images). to_padded: one thread per padded element,
// zeros outside; else one thread per unpadded element, which adds (or writes) its padded counterpart, zero where
// that lies outside.
__global__ void pad_rows_kernel(int64_t planes, int64_t inner, int64_t h, int64_t w, int64_t H, int64_t W, int64_t pt,
                                int64_t pl, const float* src, float* dst, bool to_padded, bool accumulate) {
  const int64_t rows = to_padded ? H : h, cols = to_padded ? W : w;
  OPENDL_GRID_LOOP(i, size_t(planes * rows * cols * inner)) {
    const int64_t e = int64_t(i) % inner, q = int64_t(i) / inner;
    const int64_t c = q % cols, r = q / cols % rows, plane = q / (cols * rows);
    if (to_padded) {
      const int64_t sr = r - pt, sc = c - pl;
      dst[i] = (sr >= 0 && sr < h && sc >= 0 && sc < w) ? src[((plane * h + sr) * w + sc) * inner + e] : 0.f;
    } else {
      const int64_t pr = r + pt, pc = c + pl;
      const float v = (pr >= 0 && pr < H && pc >= 0 && pc < W) ? src[((plane * H + pr) * W + pc) * inner + e] : 0.f;
      put(dst, i, v, accumulate);
    }
  }
}

// y = act(src + bias[c]) over (n, c, hw) (plain or channels-last); then, with sum, y = that + residual and a ReLU
// for sum == 2.
__global__ void bias_act_kernel(size_t total, int64_t c, int64_t hw, bool last, const float* bias, Act act,
                                const float* residual, int64_t sum, const float* src, float* y) {
  OPENDL_GRID_LOOP(i, total) {
    float v = src[i];
    if (bias) v += bias[channel_of(int64_t(i), c, hw, last)];
    v = em::act_value(act, v);
    if (sum) {
      v += residual[i];
      if (sum == 2) v = fmaxf(v, 0.f);
    }
    y[i] = v;
  }
}

struct SumTerm {
  const float* dy;
  __device__ void operator()(int64_t, int64_t i, double& a, double&) const { a += double(dy[i]); }
};

__global__ void bias_grad_kernel(int64_t c, int chunks, const double* parts, float* db, bool accumulate) {
  OPENDL_GRID_LOOP(ch, size_t(c)) {
    double g, unused;
    channel_total(parts, int64_t(ch), chunks, g, unused);
    db[ch] = float(accumulate ? double(db[ch]) + g : g);
  }
}

}  // namespace

size_t channel_scratch_doubles(int64_t c) { return size_t(c) * std::max(kChannelChunks, kLastChunks) * 2; }

cudaError_t launch_bn_forward(cudaStream_t stream, const BnKey& k, float eps, bool training, bool relu,
                              const float* x, const float* scale, const float* shift, float* mean, float* var,
                              float* y, double* parts, float* coeffs) {
  const int64_t hw = k.h * k.w;
  const bool last = k.block != 0;
  const int64_t cs = last ? 1 : hw;
  if (training) {
    cudaError_t e = channel_sums(stream, k.n, k.c, hw, last, MomentTerm{cs, x}, parts);
    if (e != cudaSuccess) return e;
  }
  bn_stats_kernel<<<grid_for(size_t(k.c)), kThreads, 0, stream>>>(k.c, k.n * hw, channel_chunks(last), training, eps,
                                                                   x, cs, scale, shift, parts, mean, var, coeffs);
  const size_t total = size_t(k.n * k.c * hw);
  bn_apply_kernel<<<grid_for(total), kThreads, 0, stream>>>(total, k.c, hw, last, relu, x, coeffs, y);
  return cudaGetLastError();
}

__global__ void bn_update_running_kernel(size_t c, double momentum, double unbias, const float* batch_mean,
                                         const float* batch_var, float* mean, float* var, float* count) {
  const double m = em::bn_momentum(momentum, *count);
  for (size_t i = threadIdx.x; i < c; i += blockDim.x)
    em::bn_running(m, unbias, batch_mean[i], batch_var[i], mean[i], var[i]);
  __syncthreads();  // every thread has read the count
  if (threadIdx.x == 0) *count += 1.f;
}

cudaError_t launch_bn_update_running(cudaStream_t stream, size_t c, double momentum, double unbias,
                                     const float* batch_mean, const float* batch_var, float* mean, float* var,
                                     float* count) {
  bn_update_running_kernel<<<1, 256, 0, stream>>>(c, momentum, unbias, batch_mean, batch_var, mean, var, count);
  return cudaGetLastError();
}

cudaError_t launch_bn_backward(cudaStream_t stream, const BnKey& k, float eps, bool relu, const float* x,
                               const float* y, const float* dy, const float* scale, const float* mean,
                               const float* var, float* dx, float* dscale, float* dshift, bool accumulate_dx,
                               bool accumulate_dw, double* parts, float* coeffs) {
  const int64_t hw = k.h * k.w;
  const bool last = k.block != 0;
  const float* mask = relu ? y : nullptr;
  cudaError_t e = channel_sums(stream, k.n, k.c, hw, last, GradTerm{x, dy, mask, mean}, parts);
  if (e != cudaSuccess) return e;
  bn_grad_coeffs_kernel<<<grid_for(size_t(k.c)), kThreads, 0, stream>>>(k.c, k.n * hw, channel_chunks(last), eps,
                                                                        parts, scale, mean, var, dscale, dshift,
                                                                        accumulate_dw, coeffs);
  if (dx) {
    const size_t total = size_t(k.n * k.c * hw);
    bn_grad_apply_kernel<<<grid_for(total), kThreads, 0, stream>>>(total, k.c, hw, last, x, dy, mask, coeffs, dx,
                                                                   accumulate_dx);
  }
  return cudaGetLastError();
}

cudaError_t launch_pool_forward(cudaStream_t stream, const PoolKey& k, const float* x, float* y, int32_t* idx) {
  pool_forward_kernel<<<grid_for(size_t(k.n * k.c * k.oh * k.ow)), kThreads, 0, stream>>>(k, x, y, idx);
  return cudaGetLastError();
}

cudaError_t launch_pool_backward(cudaStream_t stream, const PoolKey& k, const float* dy, const int32_t* idx,
                                 float* dx, bool accumulate) {
  pool_backward_kernel<<<grid_for(size_t(k.n * k.c * k.ih * k.iw)), kThreads, 0, stream>>>(k, dy, idx, dx,
                                                                                          accumulate);
  return cudaGetLastError();
}

cudaError_t launch_zoom_forward(cudaStream_t stream, const ZoomKey& k, const float* x, float* y) {
  zoom_forward_kernel<<<grid_for(size_t(k.n * k.c * k.oh * k.ow)), kThreads, 0, stream>>>(k, x, y);
  return cudaGetLastError();
}

cudaError_t launch_zoom_backward(cudaStream_t stream, const ZoomKey& k, const float* dy, float* dx, bool accumulate) {
  zoom_backward_kernel<<<grid_for(size_t(k.n * k.c * k.ih * k.iw)), kThreads, 0, stream>>>(k, dy, dx, accumulate);
  return cudaGetLastError();
}

cudaError_t launch_dropout(cudaStream_t stream, const Shape4& s, int64_t block, float p, const uint64_t* step_seed,
                           uint64_t salt, const float* x, float* mask, float* y) {
  const size_t n = size_t(s.numel());
  if (n == 0) return cudaSuccess;
  dropout_kernel<<<grid_for(n), kThreads, 0, stream>>>(n, s.c, s.h * s.w, block, p, step_seed, salt, x, mask, y);
  return cudaGetLastError();
}

cudaError_t launch_depth_max_forward(cudaStream_t stream, int64_t n, int64_t c, int64_t hw, const float* x,
                                     float* argmax, float* value) {
  depth_max_forward_kernel<<<grid_for(size_t(n * hw)), kThreads, 0, stream>>>(n, c, hw, x, argmax, value);
  return cudaGetLastError();
}

cudaError_t launch_depth_max_backward(cudaStream_t stream, int64_t n, int64_t c, int64_t hw, const float* argmax,
                                      const float* dvalue, float* dx, bool accumulate) {
  depth_max_backward_kernel<<<grid_for(size_t(n * c * hw)), kThreads, 0, stream>>>(n, c, hw, argmax, dvalue, dx,
                                                                                  accumulate);
  return cudaGetLastError();
}

cudaError_t launch_relayout(cudaStream_t stream, const Shape4& s, int64_t block, const float* src, float* dst,
                            bool to_plain, bool accumulate) {
  if (s.numel() == 0) return cudaSuccess;
  relayout_kernel<<<grid_for(size_t(s.numel())), kThreads, 0, stream>>>(s, block, src, dst, to_plain, accumulate);
  return cudaGetLastError();
}

cudaError_t launch_filter_permute(cudaStream_t stream, int64_t groups, int64_t a, int64_t b, int64_t khw, bool swap,
                                  bool last, const float* src, float* dst, bool to_cudnn, bool accumulate) {
  filter_permute_kernel<<<grid_for(size_t(groups * a * b * khw)), kThreads, 0, stream>>>(
      groups, a, b, khw, swap, last, src, dst, to_cudnn, accumulate);
  return cudaGetLastError();
}

cudaError_t launch_pad_rows(cudaStream_t stream, int64_t planes, int64_t inner, int64_t h, int64_t w, int64_t H,
                            int64_t W, int64_t pt, int64_t pl, const float* src, float* dst, bool to_padded,
                            bool accumulate) {
  const size_t total = size_t(planes * inner * (to_padded ? H * W : h * w));
  pad_rows_kernel<<<grid_for(total), kThreads, 0, stream>>>(planes, inner, h, w, H, W, pt, pl, src, dst, to_padded,
                                                            accumulate);
  return cudaGetLastError();
}

cudaError_t launch_bias_act(cudaStream_t stream, int64_t n, int64_t c, int64_t hw, bool last, const float* bias,
                            Act act, const float* residual, int64_t sum, const float* src, float* y) {
  const size_t total = size_t(n * c * hw);
  bias_act_kernel<<<grid_for(total), kThreads, 0, stream>>>(total, c, hw, last, bias, act, residual, sum, src, y);
  return cudaGetLastError();
}

cudaError_t launch_bias_grad(cudaStream_t stream, int64_t n, int64_t c, int64_t hw, bool last, const float* dy,
                             float* db, bool accumulate, double* parts) {
  cudaError_t e = channel_sums(stream, n, c, hw, last, SumTerm{dy}, parts);
  if (e != cudaSuccess) return e;
  bias_grad_kernel<<<grid_for(size_t(c)), kThreads, 0, stream>>>(c, channel_chunks(last), parts, db, accumulate);
  return cudaGetLastError();
}

}  // namespace opendl::cuda
