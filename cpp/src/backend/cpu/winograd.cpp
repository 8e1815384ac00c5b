// Winograd F(4x4, 3x3) convolution (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR
// 2016). A 3x3 stride-1 convolution computes each 4x4 output tile from a 6x6 input tile with 36 products per
// channel pair instead of 144:
//   Y = A^T [ (G g G^T) (.) (B^T d B) ] A      (g: 3x3 kernel, d: 6x6 input tile, (.) elementwise),
// summed over input channels. Per call: the input transform writes V[36][T][IC] (T tiles over the batch), 36
// matrix products M[xi] = V[xi] U[xi] (oneDNN sgemm) with the transformed weights U[36][IC][OC] (kept per
// weights version for inference calls, made per call in training), and the output transform adds the bias and
// runs the epilogue (activation, residual sum, ReLU) while writing y. Activations are read and written in the
// network's layouts with 8 consecutive channels per position (nChw8c / nChw16c / nhwc), 8 lanes at a time.
// Training also computes the data gradient this way: it is the 3x3 stride-1 convolution of dy with the kernels
// rotated by 180 degrees and the channels swapped. The weight gradient stays on oneDNN's direct kernel.
// The transforms raise float32 rounding: 3e-6..1.5e-5 of the output's scale per layer of 64-256 input channels
// against 3e-7..2e-6 for oneDNN's direct kernels (test_inference_optimization.py, test_winograd_training.py;
// the points 0, +-1, +-2 keep the transform entries small), far below the noise of stochastic gradients.
// OPENDL_WINOGRAD=0 turns it off.
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <oneapi/dnnl/dnnl.h>

#include "backend/cpu/cpu_backend.h"
#include "opendl/error.h"

namespace opendl {
namespace {

constexpr int kA = 6;  // input tile (alpha = m + r - 1)
constexpr int kM = 4;  // output tile
constexpr int kL = 8;  // channel lanes per vector

typedef float V8 __attribute__((vector_size(32)));

#define WINO_INLINE inline __attribute__((always_inline))

WINO_INLINE V8 load8(const float* p) {
  V8 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
WINO_INLINE void store8(float* p, V8 v) { std::memcpy(p, &v, sizeof(v)); }

// Offset of (n, c, h, w) in a layout with `b` consecutive channels per position (b = C: channels-last).
struct Layout {
  int64_t c, h, w, b;
  WINO_INLINE int64_t off(int64_t n, int64_t ch, int64_t y, int64_t x) const {
    return ((n * (c / b) + ch / b) * h + y) * w * b + x * b + ch % b;
  }
};

struct Geometry {
  int64_t n, ic, oc, ih, iw, oh, ow, pt, pl, th, tw, tiles;
  Layout xl, yl;
  int64_t base = 0, count = 0;  // the tiles of the current chunk (V and M hold these only)
};

// B^T applied to 6 values (rows of the input transform).
WINO_INLINE void bt6(const V8* d, int s, V8* r, int rs) {
  const V8 d0 = d[0], d1 = d[s], d2 = d[2 * s], d3 = d[3 * s], d4 = d[4 * s], d5 = d[5 * s];
  r[0] = 4.f * d0 - 5.f * d2 + d4;
  r[rs] = -4.f * d1 - 4.f * d2 + d3 + d4;
  r[2 * rs] = 4.f * d1 - 4.f * d2 - d3 + d4;
  r[3 * rs] = -2.f * d1 - d2 + 2.f * d3 + d4;
  r[4 * rs] = 2.f * d1 - d2 - 2.f * d3 + d4;
  r[5 * rs] = 4.f * d1 - 5.f * d3 + d5;
}

// A^T applied to 6 values.
WINO_INLINE void at6(const V8* m, int s, V8* o, int os) {
  const V8 m0 = m[0], m1 = m[s], m2 = m[2 * s], m3 = m[3 * s], m4 = m[4 * s], m5 = m[5 * s];
  const V8 a = m1 + m2, b = m1 - m2, c = m3 + m4, d = m3 - m4;
  o[0] = m0 + a + c;
  o[os] = b + 2.f * d;
  o[2 * os] = a + 4.f * c;
  o[3 * os] = b + 8.f * d + m5;
}

// Input transform of the tiles [t0, t1), channel groups [g0, g1) of each: V[xi][t][c].
OPENDL_CPU_CLONES void input_tiles(const Geometry& g, const float* x, float* v, int64_t t0, int64_t t1, int64_t g0,
                                   int64_t g1) {
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t n = t / (g.th * g.tw), r = t % (g.th * g.tw);
    const int64_t y0 = (r / g.tw) * kM - g.pt, x0 = (r % g.tw) * kM - g.pl;
    for (int64_t cg = g0; cg < g1; ++cg) {
      const int64_t c0 = cg * kL;
      V8 d[kA * kA], u[kA * kA];
      for (int i = 0; i < kA; ++i)
        for (int j = 0; j < kA; ++j) {
          const int64_t yy = y0 + i, xx = x0 + j;
          d[i * kA + j] = (yy >= 0 && yy < g.ih && xx >= 0 && xx < g.iw) ? load8(x + g.xl.off(n, c0, yy, xx))
                                                                        : V8{0, 0, 0, 0, 0, 0, 0, 0};
        }
      for (int j = 0; j < kA; ++j) bt6(d + j, kA, u + j, kA);          // columns: B^T d
      for (int i = 0; i < kA; ++i) bt6(u + i * kA, 1, d + i * kA, 1);  // rows: (B^T d) B
      for (int xi = 0; xi < kA * kA; ++xi) store8(v + (xi * g.count + t - g.base) * g.ic + c0, d[xi]);
    }
  }
}

struct Epilogue {
  const float* bias;
  bool relu, sum, relu_after;
};

// Output transform of the tiles [t0, t1), output channel groups [g0, g1) of each, with bias and epilogue,
// into y.
OPENDL_CPU_CLONES void output_tiles(const Geometry& g, const float* m, float* y, const Epilogue& e, int64_t t0,
                                    int64_t t1, int64_t g0, int64_t g1) {
  const V8 zero = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t n = t / (g.th * g.tw), r = t % (g.th * g.tw);
    const int64_t y0 = (r / g.tw) * kM, x0 = (r % g.tw) * kM;
    for (int64_t og = g0; og < g1; ++og) {
      const int64_t o0 = og * kL;
      const V8 bias = e.bias ? load8(e.bias + o0) : zero;
      V8 a[kA * kA], b[kM * kA], o[kM * kM];
      for (int xi = 0; xi < kA * kA; ++xi) a[xi] = load8(m + (xi * g.count + t - g.base) * g.oc + o0);
      for (int j = 0; j < kA; ++j) at6(a + j, kA, b + j, kA);          // A^T M: 4 x 6
      for (int i = 0; i < kM; ++i) at6(b + i * kA, 1, o + i * kM, 1);  // (A^T M) A: 4 x 4
      for (int i = 0; i < kM && y0 + i < g.oh; ++i)
        for (int j = 0; j < kM && x0 + j < g.ow; ++j) {
          V8 val = o[i * kM + j] + bias;
          if (e.relu) val = val > zero ? val : zero;
          float* p = y + g.yl.off(n, o0, y0 + i, x0 + j);
          if (e.sum) val += load8(p);
          if (e.relu_after) val = val > zero ? val : zero;
          store8(p, val);
        }
    }
  }
}

// The transformed weights U[xi][ic][oc] = (G g G^T)[xi] of w (oc, ic, 3, 3), kept for inference calls.
struct WinogradWeights {
  const float* from = nullptr;
  int64_t ic = 0, oc = 0;
  HostFloats u;
};

// The transformed kernels of input channel i and output channels [o0, o0 + on) (on <= kOB), 8 output channels
// per vector: t[xi][q] = (G g G^T)[xi] of the kernel of output channel o0 + q. In float: its rounding (~1e-7 of
// the weights' scale) is far below that of the input and output transforms. `flipped`: the transform of the
// data gradient's convolution instead, whose kernel for output channel q and input channel i is w[i][q] rotated
// by 180 degrees (w then holds (ic, oc, 3, 3) in this function's ic / oc).
constexpr int64_t kOB = 64;
OPENDL_CPU_CLONES void transform_kernels(const float* w, int64_t ic, int64_t oc, bool flipped, int64_t i, int64_t o0,
                                         int64_t on, float (*t)[kOB]) {
  for (int64_t q0 = 0; q0 < on; q0 += kL) {
    V8 k[9];
    for (int l = 0; l < kL; ++l) {
      const int64_t q = o0 + q0 + l;
      for (int j = 0; j < 9; ++j)
        k[j][l] = q0 + l >= on ? 0.f : flipped ? w[(i * oc + q) * 9 + 8 - j] : w[(q * ic + i) * 9 + j];
    }
    // G g: rows of G are (1/4, 0, 0), (-1/6, -1/6, -1/6), (-1/6, 1/6, -1/6), (1/24, 1/12, 1/6),
    // (1/24, -1/12, 1/6), (0, 0, 1).
    V8 gk[kA][3];
    for (int c = 0; c < 3; ++c) {
      const V8 a = k[c], b = k[3 + c], d = k[6 + c];
      gk[0][c] = a * (1.f / 4);
      gk[1][c] = (a + b + d) * (-1.f / 6);
      gk[2][c] = (a - b + d) * (-1.f / 6);
      gk[3][c] = a * (1.f / 24) + b * (1.f / 12) + d * (1.f / 6);
      gk[4][c] = a * (1.f / 24) - b * (1.f / 12) + d * (1.f / 6);
      gk[5][c] = d;
    }
    for (int r = 0; r < kA; ++r) {  // (G g) G^T: the same combinations along the other axis
      const V8 a = gk[r][0], b = gk[r][1], d = gk[r][2];
      store8(t[r * kA + 0] + q0, a * (1.f / 4));
      store8(t[r * kA + 1] + q0, (a + b + d) * (-1.f / 6));
      store8(t[r * kA + 2] + q0, (a - b + d) * (-1.f / 6));
      store8(t[r * kA + 3] + q0, a * (1.f / 24) + b * (1.f / 12) + d * (1.f / 6));
      store8(t[r * kA + 4] + q0, a * (1.f / 24) - b * (1.f / 12) + d * (1.f / 6));
      store8(t[r * kA + 5] + q0, d);
    }
  }
}

// U[xi][ic][oc] of w (oc, ic, 3, 3), or of the data gradient's convolution (`flipped`). Tasks of one input
// channel and up to kOB output channels: their 36 values per pair are gathered in a local block and written as
// 36 runs of contiguous floats (U is oc-fastest; one write per pair and plane straight into U strides by
// ic * oc floats and misses the cache on every write: that cost ResNet-18 about 130 ms more on the first
// inference call after each weight change).
void transform_weights(const float* w, int64_t ic, int64_t oc, bool flipped, float* u) {
  const int64_t blocks = (oc + kOB - 1) / kOB;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t i = 0; i < ic; ++i)
    for (int64_t ob = 0; ob < blocks; ++ob) {
      alignas(32) float t[kA * kA][kOB];
      const int64_t o0 = ob * kOB, on = std::min(kOB, oc - o0);
      transform_kernels(w, ic, oc, flipped, i, o0, on, t);
      for (int ab = 0; ab < kA * kA; ++ab) std::copy(t[ab], t[ab] + on, u + (ab * ic + i) * oc + o0);
    }
}

// Transformed weights of a training call, made per call (the weights change with every step) into one block
// that grows to the largest layer's 36 ic oc floats and is kept for the next calls (38 MiB at 512 channels).
float* call_weights(size_t n) {
  thread_local HostFloats block;
  if (block.size() < n) block.resize(n);
  return block.data();
}

float* scratch(int slot, size_t n) {
  thread_local std::vector<float> bufs[2];
  if (bufs[slot].size() < n) bufs[slot].resize(n);
  return bufs[slot].data();
}

}  // namespace

// Narrower layers stay direct: their matrix products (inner dimension ic) run far below the FMA peak and the
// transforms dominate. Measured (optimized copies with different thresholds interleaved in one process, 21-41
// calls each): the compact model at batch 16 is 4 % slower with Winograd from 32 channels on (its 32-channel
// 112x112 layer), the 5-conv CNN at batch 32 4 % slower from 16 channels on and 16 % slower from 128 on.
constexpr int64_t kMinChannels = 64;
// Nor do calls with few output tiles: the transformed weights (4x the 3x3 weights) are read once per call
// whatever the number of tiles, so with few tiles the products are bound by that memory traffic, not by the
// multiplications saved. Measured on ResNet-18 / ResNet-50 inference, models with and without the threshold
// interleaved in one process (60 calls each): at batch 1 (the 7x7 layers: 4 tiles) 24.4 against 27.0 ms and
// 68.6 against 72.1 ms with those layers direct; at batch 2 (8 tiles) Winograd was level (41.7 against 42.9 ms).
constexpr int64_t kMinTiles = 8;

namespace {
bool winograd_enabled() {
  static const bool enabled = [] {
    const char* e = std::getenv("OPENDL_WINOGRAD");
    return !(e && std::string(e) == "0");
  }();
  return enabled;
}

// Whether a 3x3 stride-1 convolution from ic to oc channels with output oh x ow goes through Winograd.
bool shape_applies(const ConvKey& k, int64_t ic, int64_t oc, int64_t oh, int64_t ow, int64_t xb, int64_t yb) {
  auto lanes_ok = [](int64_t block, int64_t c) { return block > 0 && block % kL == 0 && c % kL == 0; };
  return winograd_enabled() && !k.transposed && k.groups == 1 && k.kh == 3 && k.kw == 3 && k.sh == 1 &&
         k.sw == 1 && k.dh == 1 && k.dw == 1 && lanes_ok(xb, ic) && lanes_ok(yb, oc) && ic >= kMinChannels &&
         oc >= kMinChannels && k.n * ((oh + kM - 1) / kM) * ((ow + kM - 1) / kM) >= kMinTiles;
}

Geometry geometry(int64_t n, int64_t ic, int64_t ih, int64_t iw, int64_t oc, int64_t oh, int64_t ow, int64_t pt,
                  int64_t pl, int64_t xb, int64_t yb) {
  const int64_t th = (oh + kM - 1) / kM, tw = (ow + kM - 1) / kM;
  return Geometry{n, ic, oc, ih, iw, oh, ow, pt, pl, th, tw, n * th * tw, Layout{ic, ih, iw, xb},
                  Layout{oc, oh, ow, yb}};
}

// The tiles of g: input transform, the 36 products with the transformed weights u, output transform into y.
void run(Geometry g, const Epilogue& e, const float* x, const float* u, float* y) {
  // Tiles in chunks, each transformed, multiplied and transformed back before the next, so that its V and M
  // stay in cache. The transformed weights are read once per chunk: chunks of 8 ic oc / (ic + oc) tiles keep
  // that to 1/8 of the chunk's V and M traffic (64 channels: 256 tiles; 512 channels: 2048, in practice one
  // chunk). Measured on ResNet-18 (batch 16): 64-channel layers 16-18 ms against 19-23 ms with one chunk of
  // up to 16 MiB; 1/2 and 1/4 instead of 1/8 were slower. V and M together stay under kCap floats (64 MiB;
  // the per-thread buffers keep that size after the call).
  constexpr int64_t kChunk = 16, kCap = int64_t(1) << 24;  // kChunk: tiles per transform task
  const int64_t cap = std::max<int64_t>(kChunk, kCap / (kA * kA * (g.ic + g.oc)) / kChunk * kChunk);
  const int64_t step = std::min(cap, (8 * g.ic * g.oc / (g.ic + g.oc) + kChunk - 1) / kChunk * kChunk);
  float* v = scratch(0, size_t(kA * kA * std::min(step, g.tiles) * g.ic));
  float* m = scratch(1, size_t(kA * kA * std::min(step, g.tiles) * g.oc));
  const int64_t icg = g.ic / kL, ocg = g.oc / kL;
  for (int64_t base = 0; base < g.tiles; base += step) {
    g.base = base;
    g.count = std::min(step, g.tiles - base);
    // Tasks of up to kChunk tiles, all channel groups of a tile together (each plane of V and M then gets whole
    // rows of ic / oc floats per tile: 3.5-5 % faster on ResNet-18 than a task per tile range and group), and
    // at least 4 tasks per thread where the chunk has the tiles for it.
    const int64_t per_task = std::clamp<int64_t>(g.count / (4 * omp_get_max_threads()), 1, kChunk);
    const int64_t tasks = (g.count + per_task - 1) / per_task;
#pragma omp parallel for schedule(static)
    for (int64_t ch = 0; ch < tasks; ++ch)
      input_tiles(g, x, v, base + ch * per_task, base + std::min(g.count, (ch + 1) * per_task), 0, icg);
    // The 36 products M[xi] = V[xi] U[xi], one single-threaded oneDNN sgemm per thread at a time (oneDNN runs
    // a gemm called inside a parallel region sequentially). Measured against one batched oneDNN matmul (its
    // gemm threaded within each product): 124 against 85 GFLOP/s for 256 x 256 x 256, 83 against 51 for
    // 64 x 512 x 512, 174 against 130 for 256 x 64 x 64 (2 threads, oneDNN 3.2 alone).
    bool ok = true;
#pragma omp parallel for schedule(dynamic, 1) reduction(&& : ok)
    for (int xi = 0; xi < kA * kA; ++xi)
      ok = dnnl_sgemm('N', 'N', g.count, g.oc, g.ic, 1.f, v + xi * g.count * g.ic, g.ic, u + xi * g.ic * g.oc,
                      g.oc, 0.f, m + xi * g.count * g.oc, g.oc) == dnnl_success && ok;
    if (!ok) fail(err::kInternal, "oneDNN sgemm failed in the Winograd convolution");
#pragma omp parallel for schedule(static)
    for (int64_t ch = 0; ch < tasks; ++ch)
      output_tiles(g, m, y, e, base + ch * per_task, base + std::min(g.count, (ch + 1) * per_task), 0, ocg);
  }
}
}  // namespace

bool winograd_applies(const ConvKey& k, Act act) {
  return (act == Act::kNone || act == Act::kRelu) && shape_applies(k, k.ic, k.oc, k.oh, k.ow, k.xb, k.yb);
}

// The data gradient of a 3x3 stride-1 convolution is a 3x3 stride-1 convolution of dy with the kernels rotated by
// 180 degrees, input and output channels swapped, and the padding 2 - pad: dx[i] = sum_r dy[i + pt - r] w[r].
bool winograd_applies_backward_data(const ConvKey& k) {
  return k.pt <= 2 && k.pl <= 2 && shape_applies(k, k.oc, k.ic, k.ih, k.iw, k.yb, k.xb);
}

void winograd_forward(const ConvKey& k, Act act, const float* x, const float* w, const float* b, float* y,
                      PreparedWeights* pw) {
  const Geometry g = geometry(k.n, k.ic, k.ih, k.iw, k.oc, k.oh, k.ow, k.pt, k.pl, k.xb, k.yb);
  const Epilogue e{b, act == Act::kRelu, k.sum != 0, k.sum == 2};
  if (!pw) {  // a training call: the weights are new
    float* u = call_weights(size_t(kA * kA * k.ic * k.oc));
    transform_weights(w, k.ic, k.oc, false, u);
    run(g, e, x, u, y);
    return;
  }
  auto* ww = pw->kind == PreparedWeights::kWinograd ? static_cast<WinogradWeights*>(pw->data.get()) : nullptr;
  if (!ww || pw->made_from != pw->version || ww->from != w || ww->ic != k.ic || ww->oc != k.oc) {
    auto fresh = std::make_shared<WinogradWeights>();
    fresh->from = w;
    fresh->ic = k.ic;
    fresh->oc = k.oc;
    fresh->u.resize(size_t(kA * kA * k.ic * k.oc));  // every entry is written (not zeroed)
    transform_weights(w, k.ic, k.oc, false, fresh->u.data());
    pw->data = fresh;
    pw->kind = PreparedWeights::kWinograd;
    pw->made_from = pw->version;
    ww = fresh.get();
  }
  run(g, e, x, ww->u.data(), y);
}

void winograd_backward_data(const ConvKey& k, const float* dy, const float* w, float* dx, bool accumulate) {
  const Geometry g = geometry(k.n, k.oc, k.oh, k.ow, k.ic, k.ih, k.iw, 2 - k.pt, 2 - k.pl, k.yb, k.xb);
  float* u = call_weights(size_t(kA * kA * k.ic * k.oc));
  transform_weights(w, k.oc, k.ic, true, u);
  run(g, Epilogue{nullptr, false, accumulate, false}, dy, u, dx);
}

}  // namespace opendl
