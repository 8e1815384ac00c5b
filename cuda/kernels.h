// Plain CUDA kernels of the plugin, callable from host C++ without CUDA language extensions. Each launcher
// enqueues on the given stream and returns the launch error (execution errors surface at the next sync). They
// mirror the CPU backend's entries of the same names (cpp/src/backend/backend.h): same arguments (device
// pointers), same meaning, the per-element math shared through backend/element_math.h. `accumulate` adds to
// the output instead of overwriting it. Activations are plain (N, C, H, W); batch normalisation, pooling, the
// layout copies and the convolution helpers also take channels-last (N, H, W, C) ones (a key's block = C, or `last`).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "backend/backend.h"

namespace opendl::cuda {

// --- elementwise (kernels.cu) -----------------------------------------------------------------------------------
cudaError_t launch_fill(cudaStream_t stream, float* p, size_t n, float v);
// y = alpha * x + y over n floats.
cudaError_t launch_axpy(cudaStream_t stream, size_t n, float alpha, const float* x, float* y);
cudaError_t launch_mul(cudaStream_t stream, size_t n, const float* a, const float* b, float* y);
cudaError_t launch_mul_acc(cudaStream_t stream, size_t n, const float* a, const float* b, float* y, bool accumulate);
// dst[r*dst_ld + dst_off + j] (+)= alpha * src[r*src_ld + src_off + j] for r < rows, j < cols.
cudaError_t launch_copy2d(cudaStream_t stream, float* dst, int64_t dst_ld, int64_t dst_off, const float* src,
                          int64_t src_ld, int64_t src_off, int64_t rows, int64_t cols, float alpha, bool accumulate);
cudaError_t launch_minmax_forward(cudaStream_t stream, size_t n, bool is_max, const float* a, const float* b,
                                  float* y);
// Gradient to the winner (ties to the first operand): `first` selects which operand's gradient dx is.
cudaError_t launch_minmax_backward(cudaStream_t stream, size_t n, bool is_max, bool first, const float* a,
                                   const float* b, const float* dy, float* dx, bool accumulate);
cudaError_t launch_act_forward(cudaStream_t stream, Act a, size_t n, const float* x, float* y);
// Backward from the forward output y.
cudaError_t launch_act_backward(cudaStream_t stream, Act a, size_t n, const float* y, const float* dy, float* dx,
                                bool accumulate);
cudaError_t launch_pointwise_forward(cudaStream_t stream, const PointwiseOp& p, size_t n, const float* x, float* y);
cudaError_t launch_pointwise_backward(cudaStream_t stream, const PointwiseOp& p, size_t n, const float* x,
                                      const float* y, const float* dy, float* dx, bool accumulate);
// Softmax over C for each of outer*inner positions of an (outer, C, inner) array.
cudaError_t launch_softmax_forward(cudaStream_t stream, int64_t outer, int64_t c, int64_t inner, const float* x,
                                   float* y);
cudaError_t launch_softmax_backward(cudaStream_t stream, int64_t outer, int64_t c, int64_t inner, const float* y,
                                    const float* dy, float* dx, bool accumulate);

// --- reductions, losses, solvers (loss_kernels.cu) --------------------------------------------------------------
// Sums are deterministic: the terms are added per chunk of kReduceChunk consecutive terms in a fixed tree order,
// then the chunk sums in a fixed order, so a value never depends on scheduling. Nothing is read back to the host:
// results go to device memory, so a training step can be recorded as a CUDA graph.
constexpr size_t kReduceChunk = 4096;
// Doubles of the `scratch` a loss launcher needs for n terms and a normaliser of norm_n values.
size_t loss_scratch_doubles(size_t n, size_t norm_n);

// A loss's normaliser (LossNorm in backend.h) for the loss launchers: the sum of the n values at `src` (at least
// 1) when src is set, else `fallback`. Every loss launcher writes the normalised loss value to `out` (device
// memory) as LossOut (backend.h) says, and d(loss)/d(input) times `scale` to the gradient when that is set.
struct NormSpec {
  const float* src;
  size_t n;
  double fallback;
};

// Cross-entropy on probabilities p (N, C, S) with target ids (N, 1, S) and weights (N, 1, S) or (N, 1, 1)
// (weights_s 1), or none: the sum of -w log max(p_t, 1e-30) over the N*S positions, divided by N*S.
cudaError_t launch_cross_entropy(cudaStream_t stream, int64_t n, int64_t c, int64_t s, const float* p,
                                 const float* target, const float* weights, int64_t weights_s, float* dp,
                                 float scale, bool accumulate, const LossOut& out, double* scratch);
cudaError_t launch_huber(cudaStream_t stream, size_t n, float beta, const float* x, const float* t, const float* w,
                         const NormSpec& norm, float* dx, float scale, bool accumulate, const LossOut& out,
                         double* scratch);
// Sigmoid focal loss on logits (N, C, S): targets t binary (N, C, S), or class ids (N, 1, S) when t_ids (see
// em::focal_positive); per-class alpha (device, C values, or null); weights w (N, w_c, S) with w_c 1 or C, or null.
cudaError_t launch_focal_binary(cudaStream_t stream, int64_t n, int64_t c, int64_t s, float gamma,
                                const float* alpha, const float* x, const float* t, bool t_ids, const float* w,
                                int64_t w_c, const NormSpec& norm, float* dx, float scale, bool accumulate,
                                const LossOut& out, double* scratch);
cudaError_t launch_distance(cudaStream_t stream, size_t n, bool l1, const float* x, const float* t, const float* w,
                            const NormSpec& norm, float* dx, float scale, bool accumulate, const LossOut& out,
                            double* scratch);
// *out = the sum of x^2 where mask != 0; the number of non-finite values. `scratch`: loss_scratch_doubles(n, 0).
cudaError_t launch_sum_squares_masked(cudaStream_t stream, size_t n, const float* x, const float* mask, double* out,
                                      double* scratch);
cudaError_t launch_count_nonfinite(cudaStream_t stream, size_t n, const float* x, double* out, double* scratch);
// One fused update over the flat parameter arena (spec E.1 / E.2, see element_math.h).
cudaError_t launch_sgd_update(cudaStream_t stream, size_t n, float lr, float momentum, float weight_prior,
                              const float* lr_mult, const float* decay_mask, float* w, const float* g, float* v);
cudaError_t launch_adam_update(cudaStream_t stream, size_t n, float lr, double beta1, double beta2, float eps,
                               float bias1, float bias2, float weight_prior, const float* lr_mult,
                               const float* decay_mask, float* w, const float* g, float* m, float* v);

// --- detection boxes (box_kernels.cu; Backend::box_gather / box_assign / box_targets / box_select / box_nms) -----
cudaError_t launch_box_gather(cudaStream_t stream, const BoxGatherArgs& a, const float* src, float* dst);
// `best`: a.n * a.g doubles of scratch, then a.n * (a.g + 1) int32.
cudaError_t launch_box_assign(cudaStream_t stream, const BoxAssignArgs& a, const float* boxes, const float* gt,
                              double* best, float* out);
cudaError_t launch_box_targets(cudaStream_t stream, const BoxTargetArgs& a, const float* assign, const float* gt,
                               float* y);
// Box proposals (Backend::box_select / box_nms) with a device workspace of the bytes the *_workspace functions
// give (cudaErrorInvalidValue: more than INT_MAX keys for one sort).
cudaError_t box_select_workspace(const ProposalSelectArgs& a, size_t* bytes);
cudaError_t launch_box_select(cudaStream_t stream, const ProposalSelectArgs& a, const float* scores,
                              const float* deltas, const float* boxes, double* cand, void* work);
cudaError_t box_nms_workspace(const ProposalNmsArgs& a, size_t* bytes);
cudaError_t launch_box_nms(cudaStream_t stream, const ProposalNmsArgs& a, const double* cand, float* y, void* work);

// --- layers (nn_kernels.cu) -------------------------------------------------------------------------------------
// Per-channel sums (batch normalisation, bias gradients) use a scratch of channel_scratch_doubles(C) doubles;
// `coeffs` is a device scratch of 3 * C floats.
size_t channel_scratch_doubles(int64_t c);
cudaError_t launch_bn_forward(cudaStream_t stream, const BnKey& k, float eps, bool training, bool relu,
                              const float* x, const float* scale, const float* shift, float* mean, float* var,
                              float* y, double* parts, float* coeffs);
cudaError_t launch_bn_backward(cudaStream_t stream, const BnKey& k, float eps, bool relu, const float* x,
                               const float* y, const float* dy, const float* scale, const float* mean,
                               const float* var, float* dx, float* dscale, float* dshift, bool accumulate_dx,
                               bool accumulate_dw, double* parts, float* coeffs);
// Batch normalisation's running statistics (Backend::bn_update_running), one block: every channel reads the
// count before one thread increments it.
cudaError_t launch_bn_update_running(cudaStream_t stream, size_t c, double momentum, double unbias,
                                     const float* batch_mean, const float* batch_var, float* mean, float* var,
                                     float* count);
// Max pooling writes the flat in-plane input index of each maximum to idx (when not null), -1 for an empty window.
cudaError_t launch_pool_forward(cudaStream_t stream, const PoolKey& k, const float* x, float* y, int32_t* idx);
cudaError_t launch_pool_backward(cudaStream_t stream, const PoolKey& k, const float* dy, const int32_t* idx,
                                 float* dx, bool accumulate);
cudaError_t launch_zoom_forward(cudaStream_t stream, const ZoomKey& k, const float* x, float* y);
cudaError_t launch_zoom_backward(cudaStream_t stream, const ZoomKey& k, const float* dy, float* dx, bool accumulate);
// Over x of shape s in channel block `block`, each element's draw taken at its plain index (Backend::dropout_forward).
cudaError_t launch_dropout(cudaStream_t stream, const Shape4& s, int64_t block, float p, const uint64_t* step_seed,
                           uint64_t salt, const float* x, float* mask, float* y);
cudaError_t launch_depth_max_forward(cudaStream_t stream, int64_t n, int64_t c, int64_t hw, const float* x,
                                     float* argmax, float* value);
cudaError_t launch_depth_max_backward(cudaStream_t stream, int64_t n, int64_t c, int64_t hw, const float* argmax,
                                      const float* dvalue, float* dx, bool accumulate);
// Between plain (N, C, H, W) and the channel-blocked layout of backend.h (block B; B = C: channels-last); the
// destination is overwritten or added to.
cudaError_t launch_relayout(cudaStream_t stream, const Shape4& s, int64_t block, const float* src, float* dst,
                            bool to_plain, bool accumulate = false);
// Convolution weights (groups, a, b, khw) (opendl's order: a output, b input channels per group) to cuDNN's filter
// (to_cudnn) or back (overwritten or added to): `swap` exchanges a and b (a transposed convolution's filter), `last`
// puts the kernel position before the inner channel axis (the filter of channels-last convolutions).
cudaError_t launch_filter_permute(cudaStream_t stream, int64_t groups, int64_t a, int64_t b, int64_t khw, bool swap,
                                  bool last, const float* src, float* dst, bool to_cudnn, bool accumulate);
// Planes of h x w <-> zero-padded planes of H x W that hold them at row pt, column pl, each pixel `inner` floats:
// plain tensors have n * c planes and inner 1, channels-last ones n planes and inner c. to_padded: dst is the padded
// tensor (written whole, zeros around); else dst is the unpadded one (overwritten or added to).
cudaError_t launch_pad_rows(cudaStream_t stream, int64_t planes, int64_t inner, int64_t h, int64_t w, int64_t H,
                            int64_t W, int64_t pt, int64_t pl, const float* src, float* dst, bool to_padded,
                            bool accumulate);
// y = act(src + bias[c]) over (n, c, hw), plain or channels-last (`last`) (bias may be null); with sum 1 or 2 then
// y += residual, and a ReLU for 2. src and residual may be y (each element is read before it is written).
cudaError_t launch_bias_act(cudaStream_t stream, int64_t n, int64_t c, int64_t hw, bool last, const float* bias,
                            Act act, const float* residual, int64_t sum, const float* src, float* y);
// db (+)= the sums of dy over (n, hw) per channel (dy plain or channels-last).
cudaError_t launch_bias_grad(cudaStream_t stream, int64_t n, int64_t c, int64_t hw, bool last, const float* dy,
                             float* db, bool accumulate, double* parts);

}  // namespace opendl::cuda
