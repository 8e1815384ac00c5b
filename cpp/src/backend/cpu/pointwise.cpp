// Pointwise functions of the activation layer on the CPU: value and derivative of each HALCON activation
// type (backend/element_math.h, shared with the CUDA plugin), evaluated in double and stored as float. One
// OpenMP loop per call.
#include <algorithm>
#include <cmath>

#include "backend/cpu/cpu_backend.h"
#include "backend/element_math.h"

namespace opendl {
namespace {

// Fast float paths for the piecewise-linear types (relu with leaky slope a and upper bound b, e.g. ReLU6, and
// clip to [a, b]). They give the same floats as the double evaluation above: the product of two floats is exact
// in double, so rounding it to float equals the float product.
constexpr size_t kChunk = 16384;

bool piecewise_linear(const PointwiseOp& p) { return p.op == Pointwise::kRelu || p.op == Pointwise::kClip; }

// Written as selects without nested branches so that they vectorise. relu: y = min(max(x, 0), b) + a * n
// with n = x for x <= 0 (and NaN), else 0, which is the definition above (one of the two terms is 0).
OPENDL_CPU_CLONES void linear_forward(const PointwiseOp& p, size_t n, const float* x, float* y) {
  const float a = p.a, b = p.b;
  if (p.op == Pointwise::kRelu) {
#pragma omp simd
    for (size_t i = 0; i < n; ++i) {
      const float v = x[i];
      const float pos0 = v > 0.f ? v : 0.f;
      const float pos = pos0 < b ? pos0 : b;
      const float neg = v > 0.f ? 0.f : v;
      y[i] = pos + a * neg;
    }
  } else {
#pragma omp simd
    for (size_t i = 0; i < n; ++i) {
      const float m = x[i] < a ? a : x[i];
      y[i] = b < m ? b : m;
    }
  }
}

OPENDL_CPU_CLONES void linear_backward(const PointwiseOp& p, size_t n, const float* x, const float* dy, float* dx,
                                       bool accumulate) {
  const float a = p.a, b = p.b;
  if (p.op == Pointwise::kRelu) {
#pragma omp simd
    for (size_t i = 0; i < n; ++i) {
      const float v = x[i];
      const float pos = (v > 0.f) & (v < b) ? dy[i] : 0.f;
      const float neg = v > 0.f ? 0.f : dy[i];
      const float g = pos + a * neg;
      dx[i] = accumulate ? dx[i] + g : g;
    }
  } else {
#pragma omp simd
    for (size_t i = 0; i < n; ++i) {
      const float g = (x[i] > a) & (x[i] < b) ? dy[i] : 0.f;
      dx[i] = accumulate ? dx[i] + g : g;
    }
  }
}

}  // namespace

void CpuBackend::pointwise_forward(const PointwiseOp& p, size_t n, const float* x, float* y) {
  if (piecewise_linear(p)) {
    const int64_t chunks = int64_t((n + kChunk - 1) / kChunk);
#pragma omp parallel for schedule(static) if (chunks > 4)
    for (int64_t c = 0; c < chunks; ++c) {
      const size_t b = size_t(c) * kChunk;
      linear_forward(p, std::min(kChunk, n - b), x + b, y + b);
    }
    return;
  }
#pragma omp parallel for schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; ++i) y[i] = float(em::pointwise_value(p, double(x[i])));
}

void CpuBackend::pointwise_backward(const PointwiseOp& p, size_t n, const float* x, const float* y, const float* dy,
                                    float* dx, bool accumulate) {
  if (piecewise_linear(p)) {
    const int64_t chunks = int64_t((n + kChunk - 1) / kChunk);
#pragma omp parallel for schedule(static) if (chunks > 4)
    for (int64_t c = 0; c < chunks; ++c) {
      const size_t b = size_t(c) * kChunk;
      linear_backward(p, std::min(kChunk, n - b), x + b, dy + b, dx + b, accumulate);
    }
    return;
  }
#pragma omp parallel for schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; ++i) {
    float g = float(double(dy[i]) * em::pointwise_derivative(p, double(x[i]), double(y[i])));
    dx[i] = accumulate ? dx[i] + g : g;
  }
}

}  // namespace opendl
