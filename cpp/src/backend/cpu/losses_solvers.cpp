// CPU backend: loss kernels (cross-entropy, Huber, sigmoid focal, distance) and the solver updates over the
// flat parameter arena (SGD in HALCON's form, spec E.1; Adam, spec E.2); the per-element math is
// backend/element_math.h, shared with the CUDA plugin. Reductions accumulate in double per thread-independent
// chunk so the loss value does not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/element_math.h"

namespace opendl {
namespace {
inline void put(float* d, size_t i, float g, bool accumulate) { d[i] = accumulate ? d[i] + g : g; }
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
  const float tiny = em::kCeTiny;
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
  const double inv = 1.0 / norm;
  double loss = det_sum(int64_t(n), [&](int64_t i) {
    double r = double(x[i]) - t[i], wi = w ? w[i] : 1.0;
    return wi * em::huber_value(r, beta);
  }) * inv;
  if (dx) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; ++i) {
      double r = double(x[i]) - t[i], wi = w ? w[i] : 1.0;
      put(dx, i, float(scale * wi * em::huber_grad(r, beta) * inv), accumulate);
    }
  }
  return loss;
}

double CpuBackend::focal_binary(int64_t n, int64_t c, int64_t s, float gamma, const float* alpha, const float* x,
                                const float* t, const float* w, int64_t w_c, double norm, float* dx, float scale,
                                bool accumulate) {
  // Sigmoid focal loss on logits x with binary targets t (N, C, S), see em::focal_term.
  const double inv = 1.0 / norm;
  auto term = [&](int64_t i, double* grad) {
    int64_t b = i / (c * s), k = (i / s) % c, j = i % s;
    bool pos = t[i] > 0.5f;
    double a = alpha ? (pos ? alpha[k] : 1.0 - alpha[k]) : 1.0;
    double wi = w ? w[b * w_c * s + (w_c == 1 ? 0 : k * s) + j] : 1.0;
    double v = em::focal_term(x[i], pos, a, gamma, grad);
    if (grad) *grad *= wi;
    return wi * v;
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
    return wi * em::distance_value(r, l1);
  }) * inv;
  if (dx) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; ++i) {
      double r = double(x[i]) - t[i], wi = w ? w[i] : 1.0;
      put(dx, i, float(scale * wi * em::distance_grad(r, l1) * inv), accumulate);
    }
  }
  return loss;
}

double CpuBackend::sum_squares_masked(size_t n, const float* x, const float* mask) {
  return det_sum(int64_t(n), [&](int64_t i) { return mask[i] != 0.f ? double(x[i]) * x[i] : 0.0; });
}

void CpuBackend::sgd_update(size_t n, float lr, float momentum, float weight_prior, const float* lr_mult,
                            const float* decay_mask, float* w, const float* g, float* v) {
#pragma omp parallel for schedule(static) if (n > 16384)
  for (size_t i = 0; i < n; ++i) em::sgd_step(lr, momentum, weight_prior, lr_mult[i], decay_mask[i], w[i], g[i], v[i]);
}

void CpuBackend::adam_update(size_t n, float lr, double beta1, double beta2, float eps, float bias1, float bias2,
                             float weight_prior, const float* lr_mult, const float* decay_mask, float* w,
                             const float* g, float* m, float* v) {
  const float b1 = float(beta1), b2 = float(beta2), c1 = float(1.0 - beta1), c2 = float(1.0 - beta2);
#pragma omp parallel for schedule(static) if (n > 16384)
  for (size_t i = 0; i < n; ++i)
    em::adam_step(lr, b1, b2, c1, c2, eps, bias1, bias2, weight_prior, lr_mult[i], decay_mask[i], w[i], g[i], m[i],
                  v[i]);
}

}  // namespace opendl
