// CPU backend: loss kernels (cross-entropy, Huber, sigmoid focal, distance) and the solver updates over the
// flat parameter arena (SGD in HALCON's form, spec E.1; Adam, spec E.2). Reductions accumulate in double
// per thread-independent chunk so the loss value does not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/cpu_backend.h"

namespace opendl {
namespace {
inline void put(float* d, size_t i, float g, bool accumulate) { d[i] = accumulate ? d[i] + g : g; }
// log(1 + exp(v)) without overflow.
inline double softplus(double v) { return v > 0 ? v + std::log1p(std::exp(-v)) : std::log1p(std::exp(v)); }
// Deterministic parallel sum: fixed chunking, per-chunk partial sums added in order.
template <class F>
double det_sum(int64_t n, F&& f) {
  const int64_t chunk = 4096;
  const int64_t nchunks = (n + chunk - 1) / chunk;
  std::vector<double> part(static_cast<size_t>(std::max<int64_t>(nchunks, 1)), 0.0);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < nchunks; ++c) {
    double s = 0;
    for (int64_t i = c * chunk; i < std::min(n, (c + 1) * chunk); ++i) s += f(i);
    part[c] = s;
  }
  double s = 0;
  for (double v : part) s += v;
  return s;
}
}  // namespace

double CpuBackend::cross_entropy(int64_t n, int64_t c, int64_t s, const float* p, const float* target,
                                 const float* weights, int64_t weights_s, float* dp, float scale, bool accumulate) {
  // L = -(1/(n*s)) * sum_i w_i * log p_{i, t_i}; probabilities are clamped at 1e-30 (log(1e-30) ~ -69) so a
  // confidently wrong prediction yields a large, finite loss and gradient.
  const double inv = 1.0 / double(n * s);
  const float tiny = 1e-30f;
  double loss = det_sum(n * s, [&](int64_t i) {
    int64_t b = i / s, j = i % s;
    int64_t t = int64_t(target[i]);
    double w = weights ? weights[b * weights_s + (weights_s == 1 ? 0 : j)] : 1.0;
    float pt = std::max(p[b * c * s + t * s + j], tiny);
    return -w * std::log(double(pt));
  }) * inv;
  if (dp) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n * s; ++i) {
      int64_t b = i / s, j = i % s;
      int64_t t = int64_t(target[i]);
      double w = weights ? weights[b * weights_s + (weights_s == 1 ? 0 : j)] : 1.0;
      for (int64_t k = 0; k < c; ++k) {
        size_t idx = size_t(b * c * s + k * s + j);
        float g = 0.f;
        if (k == t) g = float(-scale * w * inv / std::max(p[idx], tiny));
        put(dp, idx, g, accumulate);
      }
    }
  }
  return loss;
}

double CpuBackend::huber(size_t n, float beta, const float* x, const float* t, const float* w, double norm, float* dx,
                         float scale, bool accumulate) {
  // Smooth L1 (Girshick, Fast R-CNN 2015): 0.5 r^2 / beta for |r| < beta, |r| - 0.5 beta otherwise.
  const double inv = 1.0 / norm;
  double loss = det_sum(int64_t(n), [&](int64_t i) {
    double r = double(x[i]) - t[i], a = std::fabs(r), wi = w ? w[i] : 1.0;
    return wi * (a < beta ? 0.5 * r * r / beta : a - 0.5 * beta);
  }) * inv;
  if (dx) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; ++i) {
      double r = double(x[i]) - t[i], wi = w ? w[i] : 1.0;
      double g = std::fabs(r) < beta ? r / beta : (r > 0 ? 1.0 : (r < 0 ? -1.0 : 0.0));
      put(dx, i, float(scale * wi * g * inv), accumulate);
    }
  }
  return loss;
}

double CpuBackend::focal_binary(int64_t n, int64_t c, int64_t s, float gamma, const float* alpha, const float* x,
                                const float* t, const float* w, int64_t w_c, double norm, float* dx, float scale,
                                bool accumulate) {
  // Sigmoid focal loss (Lin et al., RetinaNet 2017) on logits x with binary targets t (N, C, S):
  //   FL = -a_t (1 - p_t)^g log p_t,  p_t = sigmoid(z), z = x if t = 1 else -x,  a_t = a_c or 1 - a_c.
  //   dFL/dx = sign * a_t (1 - p_t)^g (g p_t log p_t - (1 - p_t)),  sign = +1 if t = 1 else -1.
  const double inv = 1.0 / norm;
  auto term = [&](int64_t i, double* grad) {
    int64_t b = i / (c * s), k = (i / s) % c, j = i % s;
    bool pos = t[i] > 0.5f;
    double z = pos ? x[i] : -double(x[i]);
    double log_pt = -softplus(-z), pt = std::exp(log_pt);
    double a = alpha ? (pos ? alpha[k] : 1.0 - alpha[k]) : 1.0;
    double wi = w ? w[b * w_c * s + (w_c == 1 ? 0 : k * s) + j] : 1.0;
    double mod = std::pow(1.0 - pt, double(gamma));
    if (grad) {
      double sign = pos ? 1.0 : -1.0;
      *grad = wi * sign * a * mod * (gamma * pt * log_pt - (1.0 - pt));
    }
    return -wi * a * mod * log_pt;
  };
  const int64_t total = n * c * s;
  double loss = det_sum(total, [&](int64_t i) { return term(i, nullptr); }) * inv;
  if (dx) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < total; ++i) {
      double g;
      term(i, &g);
      put(dx, size_t(i), float(scale * g * inv), accumulate);
    }
  }
  return loss;
}

double CpuBackend::distance(size_t n, bool l1, const float* x, const float* t, const float* w, double norm, float* dx,
                            float scale, bool accumulate) {
  const double inv = 1.0 / norm;
  double loss = det_sum(int64_t(n), [&](int64_t i) {
    double r = double(x[i]) - t[i], wi = w ? w[i] : 1.0;
    return wi * (l1 ? std::fabs(r) : r * r);
  }) * inv;
  if (dx) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; ++i) {
      double r = double(x[i]) - t[i], wi = w ? w[i] : 1.0;
      double g = l1 ? (r > 0 ? 1.0 : (r < 0 ? -1.0 : 0.0)) : 2.0 * r;
      put(dx, i, float(scale * wi * g * inv), accumulate);
    }
  }
  return loss;
}

double CpuBackend::sum_squares_masked(size_t n, const float* x, const float* mask) {
  return det_sum(int64_t(n), [&](int64_t i) { return mask[i] != 0.f ? double(x[i]) * x[i] : 0.0; });
}

void CpuBackend::sgd_update(size_t n, float lr, float momentum, float weight_prior, const float* lr_mult,
                            const float* decay_mask, float* w, const float* g, float* v) {
  // HALCON / Caffe form: v <- mu v - lr (g + alpha w), w <- w + v (the learning rate lives in v).
#pragma omp parallel for schedule(static) if (n > 16384)
  for (size_t i = 0; i < n; ++i) {
    float grad = g[i] + weight_prior * decay_mask[i] * w[i];
    v[i] = momentum * v[i] - lr * lr_mult[i] * grad;
    w[i] += v[i];
  }
}

void CpuBackend::adam_update(size_t n, float lr, double beta1, double beta2, float eps, float bias1, float bias2,
                             float weight_prior, const float* lr_mult, const float* decay_mask, float* w,
                             const float* g, float* m, float* v) {
  // Kingma & Ba (2015), Algorithm 1, with the L2 term coupled into the gradient (spec E.2). 1 - beta is
  // formed in double: in float32, 1 - 0.999f is off by 1.3e-5 relative, which the (double) bias correction
  // would not cancel, lengthening every step by ~7e-6.
  const float b1 = float(beta1), b2 = float(beta2), c1 = float(1.0 - beta1), c2 = float(1.0 - beta2);
#pragma omp parallel for schedule(static) if (n > 16384)
  for (size_t i = 0; i < n; ++i) {
    float grad = g[i] + weight_prior * decay_mask[i] * w[i];
    m[i] = b1 * m[i] + c1 * grad;
    v[i] = b2 * v[i] + c2 * grad * grad;
    float mhat = m[i] / bias1, vhat = v[i] / bias2;
    w[i] -= lr * lr_mult[i] * mhat / (std::sqrt(vhat) + eps);
  }
}

}  // namespace opendl
