// Pointwise functions of the activation layer on the CPU: value and derivative of each HALCON activation
// type, evaluated in double and stored as float. One OpenMP loop per call.
#include <algorithm>
#include <cmath>

#include "backend/cpu/cpu_backend.h"

namespace opendl {
namespace {

constexpr double kSqrt2OverPi = 0.7978845608028654, kInvSqrt2 = 0.7071067811865476, kInvSqrt2Pi = 0.3989422804014327;

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
double softplus(double x) { return std::max(x, 0.0) + std::log1p(std::exp(-std::abs(x))); }

double value(const PointwiseOp& p, double x) {
  const double a = p.a, b = p.b, c = p.c;
  switch (p.op) {
    case Pointwise::kAbs: return std::abs(x);
    case Pointwise::kAcos: return std::acos(x);
    case Pointwise::kAsin: return std::asin(x);
    case Pointwise::kAtan: return std::atan(x);
    case Pointwise::kCeil: return std::ceil(x);
    case Pointwise::kCelu: return std::max(0.0, x) + std::min(0.0, a * (std::exp(x / a) - 1.0));
    case Pointwise::kClip: return std::min(std::max(x, a), b);
    case Pointwise::kCos: return std::cos(x);
    case Pointwise::kCosh: return std::cosh(x);
    case Pointwise::kElu: return x > 0 ? x : a * (std::exp(x) - 1.0);
    case Pointwise::kErf: return std::erf(x);
    case Pointwise::kExp: return std::exp(x);
    case Pointwise::kFloor: return std::floor(x);
    case Pointwise::kGelu: return 0.5 * x * (1.0 + std::erf(x * kInvSqrt2));
    case Pointwise::kGeluTanh: return 0.5 * x * (1.0 + std::tanh(kSqrt2OverPi * (x + 0.044715 * x * x * x)));
    case Pointwise::kHardSigmoid: return std::min(1.0, std::max(0.0, a * x + b));
    case Pointwise::kHardSwish: return x * std::min(1.0, std::max(0.0, x / 6.0 + 0.5));
    case Pointwise::kLog: return std::log(x);
    case Pointwise::kMish: return x * std::tanh(softplus(x));
    case Pointwise::kNeg: return -x;
    case Pointwise::kReciprocal: return 1.0 / x;
    case Pointwise::kRelu: return x > 0 ? std::min(x, b) : a * x;
    case Pointwise::kRound: return std::nearbyint(x);  // halves to even, as ONNX Round
    case Pointwise::kSelu: return c * (x > 0 ? x : a * (std::exp(x) - 1.0));
    case Pointwise::kSigmoid: return sigmoid(x);
    case Pointwise::kSign: return x > 0 ? 1.0 : x < 0 ? -1.0 : 0.0;
    case Pointwise::kSin: return std::sin(x);
    case Pointwise::kSinh: return std::sinh(x);
    case Pointwise::kSoftplus: return softplus(x);
    case Pointwise::kSoftsign: return x / (1.0 + std::abs(x));
    case Pointwise::kSqrt: return std::sqrt(x);
    case Pointwise::kSwish: return x * sigmoid(x);
    case Pointwise::kTan: return std::tan(x);
    case Pointwise::kTanh: return std::tanh(x);
  }
  return x;
}

// d value / d x at x (y = value(x)).
double derivative(const PointwiseOp& p, double x, double y) {
  const double a = p.a, b = p.b, c = p.c;
  switch (p.op) {
    case Pointwise::kAbs: return x > 0 ? 1.0 : x < 0 ? -1.0 : 0.0;
    case Pointwise::kAcos: return -1.0 / std::sqrt(1.0 - x * x);
    case Pointwise::kAsin: return 1.0 / std::sqrt(1.0 - x * x);
    case Pointwise::kAtan: return 1.0 / (1.0 + x * x);
    case Pointwise::kCeil: case Pointwise::kFloor: case Pointwise::kRound: case Pointwise::kSign: return 0.0;
    case Pointwise::kCelu: return x > 0 ? 1.0 : std::exp(x / a);
    case Pointwise::kClip: return (x > a && x < b) ? 1.0 : 0.0;
    case Pointwise::kCos: return -std::sin(x);
    case Pointwise::kCosh: return std::sinh(x);
    case Pointwise::kElu: return x > 0 ? 1.0 : a * std::exp(x);
    case Pointwise::kErf: return 1.1283791670955126 * std::exp(-x * x);  // 2 / sqrt(pi)
    case Pointwise::kExp: return std::exp(x);
    case Pointwise::kGelu: return 0.5 * (1.0 + std::erf(x * kInvSqrt2)) + x * kInvSqrt2Pi * std::exp(-0.5 * x * x);
    case Pointwise::kGeluTanh: {
      double t = std::tanh(kSqrt2OverPi * (x + 0.044715 * x * x * x));
      return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * kSqrt2OverPi * (1.0 + 3.0 * 0.044715 * x * x);
    }
    case Pointwise::kHardSigmoid: return (a * x + b > 0.0 && a * x + b < 1.0) ? a : 0.0;
    case Pointwise::kHardSwish: return x < -3.0 ? 0.0 : x > 3.0 ? 1.0 : x / 3.0 + 0.5;
    case Pointwise::kLog: return 1.0 / x;
    case Pointwise::kMish: {
      double t = std::tanh(softplus(x));
      return t + x * (1.0 - t * t) * sigmoid(x);
    }
    case Pointwise::kNeg: return -1.0;
    case Pointwise::kReciprocal: return -1.0 / (x * x);
    case Pointwise::kRelu: return x > 0 ? (x < b ? 1.0 : 0.0) : a;
    case Pointwise::kSelu: return c * (x > 0 ? 1.0 : a * std::exp(x));
    case Pointwise::kSigmoid: return y * (1.0 - y);
    case Pointwise::kSin: return std::cos(x);
    case Pointwise::kSinh: return std::cosh(x);
    case Pointwise::kSoftplus: return sigmoid(x);
    case Pointwise::kSoftsign: return 1.0 / ((1.0 + std::abs(x)) * (1.0 + std::abs(x)));
    case Pointwise::kSqrt: return 0.5 / std::sqrt(x);
    case Pointwise::kSwish: {
      double s = sigmoid(x);
      return s + x * s * (1.0 - s);
    }
    case Pointwise::kTan: return 1.0 + std::tan(x) * std::tan(x);
    case Pointwise::kTanh: return 1.0 - y * y;
  }
  return 1.0;
}

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
  for (size_t i = 0; i < n; ++i) y[i] = float(value(p, double(x[i])));
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
    float g = float(double(dy[i]) * derivative(p, double(x[i]), double(y[i])));
    dx[i] = accumulate ? dx[i] + g : g;
  }
}

}  // namespace opendl
