// Element-wise math shared by the CPU backend and the CUDA plugin: the value and derivative of each pointwise
// function of the activation layer, the per-element terms of the losses and the per-element solver updates.
// One definition for both devices, so that they compute the same function by construction; the CPU tests
// exercise it. Host code and device code (nvcc) alike; only the C math library's global functions, which CUDA
// also provides in device code, are used.
#pragma once

#include <math.h>

#include "backend/backend.h"

#if defined(__CUDACC__)
#define OPENDL_HD __host__ __device__ inline
#else
#define OPENDL_HD inline
#endif

namespace opendl {
namespace em {

// std::max / std::min's definitions (so NaN handling matches them): the first argument unless the second is
// strictly greater / smaller.
OPENDL_HD double dmax(double a, double b) { return a < b ? b : a; }
OPENDL_HD double dmin(double a, double b) { return b < a ? b : a; }
OPENDL_HD double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }
// log(1 + exp(x)) without overflow.
OPENDL_HD double softplus(double x) { return dmax(x, 0.0) + log1p(exp(-fabs(x))); }

// Batch normalisation's running statistics (Backend::bn_update_running): the momentum of update number k
// (momentum < 0: 'auto', the cumulative average), then one channel's mean and (unbiased) variance, in double.
OPENDL_HD double bn_momentum(double momentum, float count) {
  return momentum < 0 ? double(count) / (double(count) + 1.0) : momentum;
}
OPENDL_HD void bn_running(double m, double unbias, float batch_mean, float batch_var, float& mean, float& var) {
  mean = float(m * mean + (1 - m) * batch_mean);
  var = float(m * var + (1 - m) * batch_var * unbias);
}

// The activations fused into convolutions (Act), in float: the value from the input, and the gradient from the
// output y and the output gradient dy.
OPENDL_HD float act_value(Act a, float v) {
  switch (a) {
    case Act::kRelu: return v > 0.f ? v : 0.f;
    case Act::kSigmoid: return 1.f / (1.f + expf(-v));
    case Act::kTanh: return tanhf(v);
    default: return v;
  }
}
OPENDL_HD float act_grad(Act a, float y, float dy) {
  switch (a) {
    case Act::kRelu: return y > 0.f ? dy : 0.f;
    case Act::kSigmoid: return dy * y * (1.f - y);
    case Act::kTanh: return dy * (1.f - y * y);
    default: return dy;
  }
}

constexpr double kSqrt2OverPi = 0.7978845608028654, kInvSqrt2 = 0.7071067811865476,
                 kInvSqrt2Pi = 0.3989422804014327, kTwoOverSqrtPi = 1.1283791670955126;

// Value of HALCON's activation type p at x, in double.
OPENDL_HD double pointwise_value(const PointwiseOp& p, double x) {
  const double a = p.a, b = p.b, c = p.c;
  switch (p.op) {
    case Pointwise::kAbs: return fabs(x);
    case Pointwise::kAcos: return acos(x);
    case Pointwise::kAsin: return asin(x);
    case Pointwise::kAtan: return atan(x);
    case Pointwise::kCeil: return ceil(x);
    case Pointwise::kCelu: return dmax(0.0, x) + dmin(0.0, a * (exp(x / a) - 1.0));
    case Pointwise::kClip: return dmin(dmax(x, a), b);
    case Pointwise::kCos: return cos(x);
    case Pointwise::kCosh: return cosh(x);
    case Pointwise::kElu: return x > 0 ? x : a * (exp(x) - 1.0);
    case Pointwise::kErf: return erf(x);
    case Pointwise::kExp: return exp(x);
    case Pointwise::kFloor: return floor(x);
    case Pointwise::kGelu: return 0.5 * x * (1.0 + erf(x * kInvSqrt2));
    case Pointwise::kGeluTanh: return 0.5 * x * (1.0 + tanh(kSqrt2OverPi * (x + 0.044715 * x * x * x)));
    case Pointwise::kHardSigmoid: return dmin(1.0, dmax(0.0, a * x + b));
    case Pointwise::kHardSwish: return x * dmin(1.0, dmax(0.0, x / 6.0 + 0.5));
    case Pointwise::kLog: return log(x);
    case Pointwise::kMish: return x * tanh(softplus(x));
    case Pointwise::kNeg: return -x;
    case Pointwise::kReciprocal: return 1.0 / x;
    case Pointwise::kRelu: return x > 0 ? dmin(x, b) : a * x;
    case Pointwise::kRound: return nearbyint(x);  // halves to even, as ONNX Round
    case Pointwise::kSelu: return c * (x > 0 ? x : a * (exp(x) - 1.0));
    case Pointwise::kSigmoid: return sigmoid(x);
    case Pointwise::kSign: return x > 0 ? 1.0 : x < 0 ? -1.0 : 0.0;
    case Pointwise::kSin: return sin(x);
    case Pointwise::kSinh: return sinh(x);
    case Pointwise::kSoftplus: return softplus(x);
    case Pointwise::kSoftsign: return x / (1.0 + fabs(x));
    case Pointwise::kSqrt: return sqrt(x);
    case Pointwise::kSwish: return x * sigmoid(x);
    case Pointwise::kTan: return tan(x);
    case Pointwise::kTanh: return tanh(x);
  }
  return x;
}

// d value / d x at x (y = value(x)).
OPENDL_HD double pointwise_derivative(const PointwiseOp& p, double x, double y) {
  const double a = p.a, b = p.b, c = p.c;
  switch (p.op) {
    case Pointwise::kAbs: return x > 0 ? 1.0 : x < 0 ? -1.0 : 0.0;
    case Pointwise::kAcos: return -1.0 / sqrt(1.0 - x * x);
    case Pointwise::kAsin: return 1.0 / sqrt(1.0 - x * x);
    case Pointwise::kAtan: return 1.0 / (1.0 + x * x);
    case Pointwise::kCeil: case Pointwise::kFloor: case Pointwise::kRound: case Pointwise::kSign: return 0.0;
    case Pointwise::kCelu: return x > 0 ? 1.0 : exp(x / a);
    case Pointwise::kClip: return (x > a && x < b) ? 1.0 : 0.0;
    case Pointwise::kCos: return -sin(x);
    case Pointwise::kCosh: return sinh(x);
    case Pointwise::kElu: return x > 0 ? 1.0 : a * exp(x);
    case Pointwise::kErf: return kTwoOverSqrtPi * exp(-x * x);
    case Pointwise::kExp: return exp(x);
    case Pointwise::kGelu: return 0.5 * (1.0 + erf(x * kInvSqrt2)) + x * kInvSqrt2Pi * exp(-0.5 * x * x);
    case Pointwise::kGeluTanh: {
      const double t = tanh(kSqrt2OverPi * (x + 0.044715 * x * x * x));
      return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * kSqrt2OverPi * (1.0 + 3.0 * 0.044715 * x * x);
    }
    case Pointwise::kHardSigmoid: return (a * x + b > 0.0 && a * x + b < 1.0) ? a : 0.0;
    case Pointwise::kHardSwish: return x < -3.0 ? 0.0 : x > 3.0 ? 1.0 : x / 3.0 + 0.5;
    case Pointwise::kLog: return 1.0 / x;
    case Pointwise::kMish: {
      const double t = tanh(softplus(x));
      return t + x * (1.0 - t * t) * sigmoid(x);
    }
    case Pointwise::kNeg: return -1.0;
    case Pointwise::kReciprocal: return -1.0 / (x * x);
    case Pointwise::kRelu: return x > 0 ? (x < b ? 1.0 : 0.0) : a;
    case Pointwise::kSelu: return c * (x > 0 ? 1.0 : a * exp(x));
    case Pointwise::kSigmoid: return y * (1.0 - y);
    case Pointwise::kSin: return cos(x);
    case Pointwise::kSinh: return cosh(x);
    case Pointwise::kSoftplus: return sigmoid(x);
    case Pointwise::kSoftsign: return 1.0 / ((1.0 + fabs(x)) * (1.0 + fabs(x)));
    case Pointwise::kSqrt: return 0.5 / sqrt(x);
    case Pointwise::kSwish: {
      const double s = sigmoid(x);
      return s + x * s * (1.0 - s);
    }
    case Pointwise::kTan: return 1.0 + tan(x) * tan(x);
    case Pointwise::kTanh: return 1.0 - y * y;
  }
  return 1.0;
}

// --- losses (per element, before the normalisation and the gradient scale) ----------------------------------

// Cross-entropy probabilities are clamped at this value (log(1e-30) ~ -69), so that a confidently wrong
// prediction gives a large, finite loss and gradient.
constexpr float kCeTiny = 1e-30f;

// Smooth L1 (Girshick, Fast R-CNN 2015) of the residual r: 0.5 r^2 / beta for |r| < beta, |r| - 0.5 beta
// otherwise, and its derivative.
OPENDL_HD double huber_value(double r, double beta) {
  const double a = fabs(r);
  return a < beta ? 0.5 * r * r / beta : a - 0.5 * beta;
}
OPENDL_HD double huber_grad(double r, double beta) {
  return fabs(r) < beta ? r / beta : (r > 0 ? 1.0 : (r < 0 ? -1.0 : 0.0));
}

// Distance loss of the residual r: |r| (l1) or r^2, and its derivative.
OPENDL_HD double distance_value(double r, bool l1) { return l1 ? fabs(r) : r * r; }
OPENDL_HD double distance_grad(double r, bool l1) { return l1 ? (r > 0 ? 1.0 : (r < 0 ? -1.0 : 0.0)) : 2.0 * r; }

// Sigmoid focal loss (Lin et al., RetinaNet 2017) of logit x with binary target `pos` and class weight a_t
// (a_c for pos, 1 - a_c else; 1 without class weights):
//   FL = -a_t (1 - p_t)^g log p_t,  p_t = sigmoid(z), z = x if pos else -x;
//   dFL/dx = sign * a_t (1 - p_t)^g (g p_t log p_t - (1 - p_t)),  sign = +1 if pos else -1.
// Returns FL; writes dFL/dx to *grad when grad is not null.
// Whether element (b, k, j) of a focal loss on (N, C, S) logits is a positive: binary targets t (N, C, S) hold
// more than 0.5 there, class-id targets (N, 1, S) hold an id whose floor is k (ids outside [0, C): background).
OPENDL_HD bool focal_positive(const float* t, bool t_ids, int64_t c, int64_t s, int64_t b, int64_t k, int64_t j) {
  if (!t_ids) return t[(b * c + k) * s + j] > 0.5f;
  const float id = floorf(t[b * s + j]);
  return id >= 0.f && id < float(c) && int64_t(id) == k;
}

// A loss normaliser from the sum of a normalisation input's values (LossNorm in backend.h): at least 1.
OPENDL_HD double loss_norm_from_sum(double sum) { return sum > 1.0 ? sum : 1.0; }

// One exp and one log1p per element: with e = exp(-|z|), log p_t = -(max(-z, 0) + log1p(e)), p_t and
// 1 - p_t = sigmoid(-z) both as quotients of e (no cancellation in 1 - p_t as p_t nears 1); the modulating
// factor by multiplication for the usual gamma 0, 1 and 2.
OPENDL_HD double focal_term(double x, bool pos, double a_t, double gamma, double* grad) {
  const double z = pos ? x : -x;
  const double e = exp(-fabs(z)), inv = 1.0 / (1.0 + e);
  const double log_pt = -(dmax(-z, 0.0) + log1p(e));
  const double pt = z >= 0 ? inv : e * inv, qt = z >= 0 ? e * inv : inv;  // p_t and 1 - p_t
  const double mod = gamma == 2.0 ? qt * qt : gamma == 1.0 ? qt : gamma == 0.0 ? 1.0 : pow(qt, gamma);
  if (grad) *grad = (pos ? 1.0 : -1.0) * a_t * mod * (gamma * pt * log_pt - qt);
  return -a_t * mod * log_pt;
}

// --- dropout -------------------------------------------------------------------------------------------------

// splitmix64's finaliser (Steele et al. 2014): a bijective 64-bit mix.
OPENDL_HD uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
// The plain (N, C, H, W) index of the element at position i of an activation with c channels, hw positions per
// plane and channel block `block` (backend.h; 0: plain, i itself).
OPENDL_HD size_t plain_index(size_t i, int64_t c, int64_t hw, int64_t block) {
  if (block == 0) return i;
  const int64_t j = int64_t(i), lane = j % block, q = j / block, pos = q % hw, r = q / hw;
  const int64_t nb = c / block, cb = r % nb, n = r / nb;
  return size_t((n * c + cb * block + lane) * hw + pos);
}
// Element i's dropout factor, counter-based (identical on every device and for any thread count): the layer's
// seed is the training step's seed mixed with the layer's salt (its slot), the draw u in [0, 1) the mix of that
// seed plus the golden-ratio increment times (i + 1); the element is kept (factor 1 / (1 - p)) when u >= p.
OPENDL_HD float dropout_factor(uint64_t step_seed, uint64_t salt, size_t i, float p) {
  const uint64_t seed = mix64(step_seed + 0x9E3779B97F4A7C15ull * (salt + 1));
  const double u = double(mix64(seed + 0x9E3779B97F4A7C15ull * (uint64_t(i) + 1)) >> 11) * 0x1.0p-53;
  return u >= p ? (p < 1.f ? 1.f / (1.f - p) : 0.f) : 0.f;
}

// --- elementwise losses: value(i) the weighted loss of element i, grad(i) its weighted derivative ---------------

struct HuberTerm {
  float beta;
  const float *x, *t, *w;  // w: per-element weights, or null
  OPENDL_HD double weight(size_t i) const { return w ? double(w[i]) : 1.0; }
  OPENDL_HD double value(size_t i) const { return weight(i) * huber_value(double(x[i]) - t[i], beta); }
  OPENDL_HD double grad(size_t i) const { return weight(i) * huber_grad(double(x[i]) - t[i], beta); }
};

struct DistanceTerm {
  bool l1;
  const float *x, *t, *w;
  OPENDL_HD double weight(size_t i) const { return w ? double(w[i]) : 1.0; }
  OPENDL_HD double value(size_t i) const { return weight(i) * distance_value(double(x[i]) - t[i], l1); }
  OPENDL_HD double grad(size_t i) const { return weight(i) * distance_grad(double(x[i]) - t[i], l1); }
};

// Sigmoid focal loss on logits x (N, C, S) (focal_term, focal_positive): alpha per class or null, weights
// (N, w_c, S) with w_c 1 or C, or null.
struct FocalTerm {
  int64_t c, s, w_c;
  float gamma;
  const float *alpha, *x, *t;
  bool t_ids;
  const float* w;
  OPENDL_HD double eval(size_t e, double* grad) const {
    const int64_t i = int64_t(e), b = i / (c * s), k = (i / s) % c, j = i % s;
    const bool pos = focal_positive(t, t_ids, c, s, b, k, j);
    const double a = alpha ? (pos ? double(alpha[k]) : 1.0 - alpha[k]) : 1.0;
    const double wi = w ? double(w[b * w_c * s + (w_c == 1 ? 0 : k * s) + j]) : 1.0;
    const double v = focal_term(x[i], pos, a, gamma, grad);
    if (grad) *grad *= wi;
    return wi * v;
  }
  OPENDL_HD double value(size_t i) const { return eval(i, nullptr); }
  OPENDL_HD double grad(size_t i) const {
    double g;
    eval(i, &g);
    return g;
  }
};

// --- solvers (one element of the flat parameter arena) ------------------------------------------------------

// SGD in HALCON / Caffe form (spec E.1): v <- mu v - lr (g + alpha w), w <- w + v (the learning rate lives in v).
OPENDL_HD void sgd_step(float lr, float momentum, float weight_prior, float lr_mult, float decay, float& w, float g,
                        float& v) {
  const float grad = g + weight_prior * decay * w;
  v = momentum * v - lr * lr_mult * grad;
  w += v;
}

// Adam (Kingma & Ba 2015, Algorithm 1) with the L2 term coupled into the gradient (spec E.2); b1, b2 the decay
// rates and c1 = 1 - beta1, c2 = 1 - beta2 formed in double by the caller (in float32, 1 - 0.999f is off by
// 1.3e-5 relative, which the bias correction would not cancel); bias1, bias2 the bias corrections.
OPENDL_HD void adam_step(float lr, float b1, float b2, float c1, float c2, float eps, float bias1, float bias2,
                         float weight_prior, float lr_mult, float decay, float& w, float g, float& m, float& v) {
  const float grad = g + weight_prior * decay * w;
  m = b1 * m + c1 * grad;
  v = b2 * v + c2 * grad * grad;
  const float mhat = m / bias1, vhat = v / bias2;
  w -= lr * lr_mult * mhat / (sqrtf(vhat) + eps);
}

}  // namespace em
}  // namespace opendl
