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

// Writes a loss value as LossOut says.
void put_loss(const LossOut& out, double v) {
  if (out.value) *out.value = float(v);
  if (out.sum) *out.sum = out.accumulate ? *out.sum + v : v;
}

// The normaliser (LossNorm): the sum of the normalisation input (at least 1) or the fallback.
double norm_of(const LossNorm& norm) {
  if (!norm.src) return norm.fallback;
  return em::loss_norm_from_sum(det_sum(int64_t(norm.n), [&](int64_t i) { return double(norm.src[i]); }));
}
}  // namespace

void CpuBackend::cross_entropy(int64_t n, int64_t c, int64_t s, const float* p, const float* target,
                               const float* weights, int64_t weights_s, float* dp, float scale, bool accumulate,
                               const LossOut& out) {
  // L = -(1/(n*s)) * sum_i w_i * log p_{i, t_i}; probabilities are clamped at 1e-30 (log(1e-30) ~ -69) so a
  // confidently wrong prediction yields a large, finite loss and gradient.
  const double inv = 1.0 / double(n * s);
  const float tiny = em::kCeTiny;
  if (out.wanted())
    put_loss(out, det_sum(n * s, [&](int64_t i) {
                    int64_t b = i / s, j = i % s;
                    int64_t t = int64_t(target[i]);
                    double w = weights ? weights[b * weights_s + (weights_s == 1 ? 0 : j)] : 1.0;
                    float pt = std::max(p[b * c * s + t * s + j], tiny);
                    return -w * std::log(double(pt));
                  }) * inv);
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
}

namespace {
// An elementwise loss: the weighted sum of term.value(i) over n elements divided by the normaliser to `out`,
// and scale * term.grad(i) / normaliser into dx.
template <class Term>
void elementwise_loss(size_t n, const Term& term, const LossNorm& norm, float* dx, float scale, bool accumulate,
                      const LossOut& out) {
  if (!out.wanted() && !dx) return;
  const double inv = 1.0 / norm_of(norm);
  if (out.wanted()) put_loss(out, det_sum(int64_t(n), [&](int64_t i) { return term.value(size_t(i)); }) * inv);
  if (dx) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; ++i) put(dx, i, float(scale * term.grad(i) * inv), accumulate);
  }
}
}  // namespace

void CpuBackend::huber(size_t n, float beta, const float* x, const float* t, const float* w, const LossNorm& norm,
                       float* dx, float scale, bool accumulate, const LossOut& out) {
  elementwise_loss(n, em::HuberTerm{beta, x, t, w}, norm, dx, scale, accumulate, out);
}

void CpuBackend::focal_binary(int64_t n, int64_t c, int64_t s, float gamma, const float* alpha, const float* x,
                              const float* t, bool t_ids, const float* w, int64_t w_c, const LossNorm& norm,
                              float* dx, float scale, bool accumulate, const LossOut& out) {
  elementwise_loss(size_t(n * c * s), em::FocalTerm{c, s, w_c, gamma, alpha, x, t, t_ids, w}, norm, dx, scale,
                   accumulate, out);
}

void CpuBackend::distance(size_t n, bool l1, const float* x, const float* t, const float* w, const LossNorm& norm,
                          float* dx, float scale, bool accumulate, const LossOut& out) {
  elementwise_loss(n, em::DistanceTerm{l1, x, t, w}, norm, dx, scale, accumulate, out);
}

void CpuBackend::sum_squares_masked(size_t n, const float* x, const float* mask, double* out) {
  *out = det_sum(int64_t(n), [&](int64_t i) { return mask[i] != 0.f ? double(x[i]) * x[i] : 0.0; });
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
