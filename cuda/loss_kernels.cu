// Reductions, losses and solver updates of the plugin (kernels.h). Loss terms and solver steps come from
// backend/element_math.h, shared with the CPU backend; sums are deterministic (fixed chunks, fixed tree order)
// and accumulate in double, like the CPU backend's. Results stay on the device (no host synchronisation).
#include <algorithm>

#include "backend/element_math.h"
#include "kernels.h"
#include "launch.cuh"

namespace opendl::cuda {
namespace {

__device__ inline void put(float* d, size_t i, float g, bool accumulate) { d[i] = accumulate ? d[i] + g : g; }

// Sums term.value(i) over [0, n): block b sums chunk b into parts[1 + b] (each thread a strided share, then a tree
// over the block's threads), final_sum_kernel adds the chunk sums into parts[0].
template <class Term>
__global__ void partial_sum_kernel(size_t n, Term term, double* parts) {
  __shared__ double sh[kThreads];
  const size_t begin = size_t(blockIdx.x) * kReduceChunk;
  const size_t end = begin + kReduceChunk < n ? begin + kReduceChunk : n;
  double s = 0;
  for (size_t i = begin + threadIdx.x; i < end; i += blockDim.x) s += term.value(i);
  sh[threadIdx.x] = s;
  __syncthreads();
  for (unsigned w = blockDim.x / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) sh[threadIdx.x] += sh[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) parts[1 + blockIdx.x] = sh[0];
}

__global__ void final_sum_kernel(size_t nparts, double* parts) {
  __shared__ double sh[kThreads];
  double s = 0;
  for (size_t i = threadIdx.x; i < nparts; i += blockDim.x) s += parts[1 + i];
  sh[threadIdx.x] = s;
  __syncthreads();
  for (unsigned w = blockDim.x / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) sh[threadIdx.x] += sh[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) parts[0] = sh[0];
}

size_t chunks_of(size_t n) { return std::max<size_t>(1, (n + kReduceChunk - 1) / kReduceChunk); }

template <class Term>
cudaError_t reduce(cudaStream_t stream, size_t n, const Term& term, double* scratch) {
  const size_t chunks = chunks_of(n);
  partial_sum_kernel<<<unsigned(chunks), kThreads, 0, stream>>>(n, term, scratch);
  final_sum_kernel<<<1, kThreads, 0, stream>>>(chunks, scratch);
  return cudaGetLastError();
}

// --- cross-entropy ----------------------------------------------------------------------------------------------

struct CeTerm {
  int64_t c, s, weights_s;
  const float *p, *target, *weights;
  __device__ double weight(int64_t b, int64_t j) const {
    return weights ? double(weights[b * weights_s + (weights_s == 1 ? 0 : j)]) : 1.0;
  }
  __device__ double value(size_t i) const {
    const int64_t b = int64_t(i) / s, j = int64_t(i) % s, t = int64_t(target[i]);
    const float pt = fmaxf(p[b * c * s + t * s + j], em::kCeTiny);
    return -weight(b, j) * log(double(pt));
  }
};

__global__ void ce_grad_kernel(CeTerm term, size_t positions, float* dp, float scale, bool accumulate) {
  const double inv = 1.0 / double(positions);
  OPENDL_GRID_LOOP(i, positions) {
    const int64_t c = term.c, s = term.s;
    const int64_t b = int64_t(i) / s, j = int64_t(i) % s, t = int64_t(term.target[i]);
    const double w = term.weight(b, j);
    for (int64_t k = 0; k < c; ++k) {
      const size_t idx = size_t(b * c * s + k * s + j);
      put(dp, idx, k == t ? float(-scale * w * inv / fmaxf(term.p[idx], em::kCeTiny)) : 0.f, accumulate);
    }
  }
}

// --- elementwise losses: a term (element_math.h) gives element i's weighted loss (value) and gradient (grad) ---

// dx[i] (+)= scale * term.grad(i) / norm[0].
template <class Term>
__global__ void loss_grad_kernel(Term term, size_t n, const double* norm, float* dx, float scale, bool accumulate) {
  const double inv = 1.0 / norm[0];
  OPENDL_GRID_LOOP(i, n) put(dx, i, float(scale * term.grad(i) * inv), accumulate);
}

// norm[0] = the normaliser: max(sum, 1) of a normalisation input's values (sum set), else the fallback.
__global__ void set_norm_kernel(const double* sum, double fallback, double* norm) {
  norm[0] = sum ? em::loss_norm_from_sum(sum[0]) : fallback;
}

// The loss value sum[0] / norm[0] to `out` (LossOut: a float, and a double written or added to).
__global__ void finish_loss_kernel(const double* sum, const double* norm, LossOut out) {
  const double v = sum[0] / norm[0];
  if (out.value) out.value[0] = float(v);
  if (out.sum) out.sum[0] = out.accumulate ? out.sum[0] + v : v;
}

__global__ void copy_double_kernel(const double* src, double* dst) { dst[0] = src[0]; }

struct ValueTerm {
  const float* x;
  __device__ double value(size_t i) const { return double(x[i]); }
};

// scratch layout of the loss launchers: [0] the normaliser, [1...] the reduction (its sum at [1]).
cudaError_t set_norm(cudaStream_t stream, const NormSpec& norm, double* scratch) {
  if (norm.src) {
    cudaError_t e = reduce(stream, norm.n, ValueTerm{norm.src}, scratch + 1);
    if (e != cudaSuccess) return e;
  }
  set_norm_kernel<<<1, 1, 0, stream>>>(norm.src ? scratch + 1 : nullptr, norm.fallback, scratch);
  return cudaGetLastError();
}

// The loss value sum / normaliser to `out` (when wanted), the gradient into dx (when set).
template <class Term>
cudaError_t loss(cudaStream_t stream, size_t n, const Term& term, const NormSpec& norm, float* dx, float scale,
                 bool accumulate, const LossOut& out, double* scratch) {
  if (!out.wanted() && (!dx || n == 0)) return cudaSuccess;
  cudaError_t e = set_norm(stream, norm, scratch);
  if (e != cudaSuccess) return e;
  if (out.wanted()) {
    e = reduce(stream, n, term, scratch + 1);
    if (e != cudaSuccess) return e;
    finish_loss_kernel<<<1, 1, 0, stream>>>(scratch + 1, scratch, out);
    e = cudaGetLastError();
    if (e != cudaSuccess) return e;
  }
  if (!dx || n == 0) return cudaSuccess;
  loss_grad_kernel<<<grid_for(n), kThreads, 0, stream>>>(term, n, scratch, dx, scale, accumulate);
  return cudaGetLastError();
}

// --- reductions over arenas -----------------------------------------------------------------------------------

struct SumSquaresTerm {
  const float *x, *mask;
  __device__ double value(size_t i) const { return mask[i] != 0.f ? double(x[i]) * x[i] : 0.0; }
};

struct NonFiniteTerm {
  const float* x;
  __device__ double value(size_t i) const { return isfinite(x[i]) ? 0.0 : 1.0; }
};

// --- solvers --------------------------------------------------------------------------------------------------

__global__ void sgd_kernel(size_t n, float lr, float momentum, float weight_prior, const float* lr_mult,
                           const float* decay_mask, float* w, const float* g, float* v) {
  OPENDL_GRID_LOOP(i, n) em::sgd_step(lr, momentum, weight_prior, lr_mult[i], decay_mask[i], w[i], g[i], v[i]);
}

__global__ void adam_kernel(size_t n, float lr, float b1, float b2, float c1, float c2, float eps, float bias1,
                            float bias2, float weight_prior, const float* lr_mult, const float* decay_mask, float* w,
                            const float* g, float* m, float* v) {
  OPENDL_GRID_LOOP(i, n)
  em::adam_step(lr, b1, b2, c1, c2, eps, bias1, bias2, weight_prior, lr_mult[i], decay_mask[i], w[i], g[i], m[i],
                v[i]);
}

}  // namespace

size_t loss_scratch_doubles(size_t n, size_t norm_n) { return 2 + chunks_of(std::max(n, norm_n)); }

cudaError_t launch_cross_entropy(cudaStream_t stream, int64_t n, int64_t c, int64_t s, const float* p,
                                 const float* target, const float* weights, int64_t weights_s, float* dp,
                                 float scale, bool accumulate, const LossOut& out, double* scratch) {
  const CeTerm term{c, s, weights_s, p, target, weights};
  const size_t positions = size_t(n * s);
  if (positions == 0) return cudaSuccess;
  if (out.wanted()) {
    cudaError_t e = reduce(stream, positions, term, scratch + 1);
    if (e != cudaSuccess) return e;
    set_norm_kernel<<<1, 1, 0, stream>>>(nullptr, double(positions), scratch);
    finish_loss_kernel<<<1, 1, 0, stream>>>(scratch + 1, scratch, out);
    e = cudaGetLastError();
    if (e != cudaSuccess) return e;
  }
  if (!dp) return cudaSuccess;
  ce_grad_kernel<<<grid_for(positions), kThreads, 0, stream>>>(term, positions, dp, scale, accumulate);
  return cudaGetLastError();
}

cudaError_t launch_huber(cudaStream_t stream, size_t n, float beta, const float* x, const float* t, const float* w,
                         const NormSpec& norm, float* dx, float scale, bool accumulate, const LossOut& out,
                         double* scratch) {
  return loss(stream, n, em::HuberTerm{beta, x, t, w}, norm, dx, scale, accumulate, out, scratch);
}

cudaError_t launch_focal_binary(cudaStream_t stream, int64_t n, int64_t c, int64_t s, float gamma,
                                const float* alpha, const float* x, const float* t, bool t_ids, const float* w,
                                int64_t w_c, const NormSpec& norm, float* dx, float scale, bool accumulate,
                                const LossOut& out, double* scratch) {
  return loss(stream, size_t(n * c * s), em::FocalTerm{c, s, w_c, gamma, alpha, x, t, t_ids, w}, norm, dx, scale,
              accumulate, out, scratch);
}

cudaError_t launch_distance(cudaStream_t stream, size_t n, bool l1, const float* x, const float* t, const float* w,
                            const NormSpec& norm, float* dx, float scale, bool accumulate, const LossOut& out,
                            double* scratch) {
  return loss(stream, n, em::DistanceTerm{l1, x, t, w}, norm, dx, scale, accumulate, out, scratch);
}

cudaError_t launch_sum_squares_masked(cudaStream_t stream, size_t n, const float* x, const float* mask, double* out,
                                      double* scratch) {
  cudaError_t e = reduce(stream, n, SumSquaresTerm{x, mask}, scratch + 1);
  if (e != cudaSuccess) return e;
  copy_double_kernel<<<1, 1, 0, stream>>>(scratch + 1, out);
  return cudaGetLastError();
}

cudaError_t launch_count_nonfinite(cudaStream_t stream, size_t n, const float* x, double* out, double* scratch) {
  cudaError_t e = reduce(stream, n, NonFiniteTerm{x}, scratch + 1);
  if (e != cudaSuccess) return e;
  copy_double_kernel<<<1, 1, 0, stream>>>(scratch + 1, out);
  return cudaGetLastError();
}

cudaError_t launch_sgd_update(cudaStream_t stream, size_t n, float lr, float momentum, float weight_prior,
                              const float* lr_mult, const float* decay_mask, float* w, const float* g, float* v) {
  if (n == 0) return cudaSuccess;
  sgd_kernel<<<grid_for(n), kThreads, 0, stream>>>(n, lr, momentum, weight_prior, lr_mult, decay_mask, w, g, v);
  return cudaGetLastError();
}

cudaError_t launch_adam_update(cudaStream_t stream, size_t n, float lr, double beta1, double beta2, float eps,
                               float bias1, float bias2, float weight_prior, const float* lr_mult,
                               const float* decay_mask, float* w, const float* g, float* m, float* v) {
  if (n == 0) return cudaSuccess;
  // 1 - beta in double, as the CPU backend (see em::adam_step)
  adam_kernel<<<grid_for(n), kThreads, 0, stream>>>(n, lr, float(beta1), float(beta2), float(1.0 - beta1),
                                                    float(1.0 - beta2), eps, bias1, bias2, weight_prior, lr_mult,
                                                    decay_mask, w, g, m, v);
  return cudaGetLastError();
}

}  // namespace opendl::cuda
