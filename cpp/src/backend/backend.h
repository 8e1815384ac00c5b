// Backend: the internal interface between layers and devices. It is the only place that knows both the
// CPU (oneDNN + OpenMP, backend/cpu) and the GPU (libopendl_cuda) exist. Layers describe an operation with a
// small POD key struct (which also keys the primitive cache) and pass raw device pointers. Activations are
// (N, C, H, W) row-major ("plain"), or channel-blocked where the network plans it (see activation_block): block
// B > 0 stores element (n, c, h, w) at (((n * C/B + c/B) * H + h) * W + w) * B + c % B, C a multiple of B:
// oneDNN's nChw8c / nChw16c for B = 8 / 16, channels-last nhwc for B = C. Key fields named *b / block give the
// block (lanes per position) of an operand, 0: plain. Every
// *_backward_* entry overwrites its output gradient unless `accumulate` is set, in which case it adds to it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "core/shape.h"

namespace opendl {

enum class Act : int64_t { kNone = 0, kRelu, kSigmoid, kTanh };

// Pointwise functions of the activation layer (HALCON's activation types); a and b are the type's parameters.
enum class Pointwise : int64_t {
  kAbs, kAcos, kAsin, kAtan, kCeil, kCelu, kClip, kCos, kCosh, kElu, kErf, kExp, kFloor, kGelu, kGeluTanh,
  kHardSigmoid, kHardSwish, kLog, kMish, kNeg, kReciprocal, kRelu, kRound, kSelu, kSigmoid, kSign, kSin, kSinh,
  kSoftplus, kSoftsign, kSqrt, kSwish, kTan, kTanh
};
struct PointwiseOp {
  Pointwise op = Pointwise::kRelu;
  float a = 0.f, b = 0.f, c = 0.f;  // relu: a = slope below 0, b = upper bound; clip: [a, b]; elu/celu: a = alpha ...
};

// All key structs hold int64_t fields only, so that they hash and compare as raw bytes.
struct ConvKey {
  int64_t n, ic, ih, iw, oc, oh, ow, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, groups, bias, transposed;
  int64_t xb = 0, yb = 0;  // blocks of x / dx and y / dy
  // Forward-only use by an inference plan (1: no backward primitives; convolution only), and what is done
  // after the activation (inference only): 0 nothing, 1 add what y already holds (a residual connection),
  // 2 add it, then a ReLU.
  int64_t inference = 0, sum = 0;
};
struct PoolKey {
  int64_t n, c, ih, iw, oh, ow, kh, kw, sh, sw, pt, pb, pl, pr, max;
  int64_t block = 0;  // of x and y alike
};
struct BnKey {
  int64_t n, c, h, w;
  int64_t block = 0;
};
struct DenseKey {
  int64_t n, ic, oc, bias;
};
struct ZoomKey {
  int64_t n, c, ih, iw, oh, ow, bilinear, align_corners;
};

// Weights prepared by a backend for repeated inference calls, owned by the caller (the network's inference
// plan): the caller sets `version` to that of the weights it passes and changes it whenever they change; the
// backend remakes `data` when it was made from another version.
struct PreparedWeights {
  enum Kind : int { kNone = 0, kReordered, kWinograd };  // what `data` holds (set by the backend)
  uint64_t version = 0;
  uint64_t made_from = 0;
  int kind = kNone;
  std::shared_ptr<void> data;
};

// The normaliser of a loss: the sum of the n values at `src` (device memory; at least 1) when src is set, else
// `fallback`. Evaluated where the data lives, so that no value goes through the host.
struct LossNorm {
  const float* src = nullptr;
  size_t n = 0;
  double fallback = 1.0;
};

// Where a loss writes its value (device memory; either may be null): as a float (the loss layer's output), and
// in double precision to *sum, overwriting it or, with `accumulate`, adding to it (a training step's sum over
// its micro-batches).
struct LossOut {
  float* value = nullptr;
  double* sum = nullptr;
  bool accumulate = false;
  bool wanted() const { return value || sum; }
};

// Detection boxes (the box_assignment and box_targets layers, layers/box_layers.cpp; the per-box steps are
// backend/box_math.h). P = 4 box parameters for rectangle1, 5 for rectangle2.
// box_gather: one level's boxes (anchors (box_n, A * P, H, W), or the records (box_n, M, P + 2) of a box_proposals
// layer) into the gathered array (box_n, t, P + 1) at box offset `off`: per box its parameters, then 1 (used) or
// 0 (an unused proposal record).
struct BoxGatherArgs {
  int64_t box_n = 1, t = 0, off = 0;
  bool proposals = false;
  int64_t a = 0, hw = 1, p = 4;  // boxes per position (anchors) or records (proposals); positions; P
};
// box_assign: per image the ground-truth record of each gathered box (boxes: box_n images, 1 = the same boxes for
// all), and the encoded record of the foreground boxes. Ground truth (n, g, P + 1): box parameters and class.
// Output (n, t * (1 + d)): t record indices (-1 background, -2 ignored or unused), then t * d encodings.
struct BoxAssignArgs {
  int64_t n = 0, t = 0, box_n = 1, g = 0, d = 4, k = 0;  // k: classes
  bool rect2 = false, ignore_direction = false, low_quality = true;
  double fg = 0.5, bg = 0.4;
  const float* no_orientation = nullptr;  // rectangle2: per class 1 where it is compared unoriented, or null
};
// box_targets: one output of the box_targets layer from an assignment (n, t * (1 + d)) and the ground truth
// (n, g, gw): per-level outputs (n, a * per, H, W) of the level whose boxes start at `off`, or the foreground
// count per image (n).
enum class BoxTargetKind : int { kClsTarget, kClsWeight, kBoxTarget, kBoxWeight, kNumFg };
struct BoxTargetArgs {
  BoxTargetKind kind = BoxTargetKind::kClsTarget;
  int64_t n = 0, t = 0, d = 4, g = 0, gw = 5;
  int64_t off = 0, a = 0, hw = 1, per = 1;
  int64_t numel() const { return kind == BoxTargetKind::kNumFg ? n : n * a * per * hw; }
};

// Box proposals (the box_proposals layer, layers/box_layers.cpp; the per-candidate steps are backend/box_math.h).
// Candidate records: kProposalExtra + P doubles per slot, `slots` per image: the box, then the raw class score,
// the class, the confidence (sigmoid of the raw score, or the raw score) and 1 (used) or 0 (empty slot).
constexpr int64_t kProposalExtra = 4;
// box_select, one level: for image n, the class scores (n, a * k, h, w) that reach raw_min at a used gathered box
// (BoxGatherArgs; boxes of level `box_off` in (box_n, box_t, P + 1)), by descending score, ties by the lower
// index e = (position * a + box) * k + class; the first `sel` decoded (deltas (n, a * d, h, w), or the boxes as
// they are when deltas is null) into slots [off, off + sel) of the image. rectangle1 boxes are clipped to the
// image; a box of no area after that, or a rectangle2 box with no area or a non-finite parameter, leaves its
// slot empty. Classes flagged in no_orientation (per class, may be null) get the enclosing axis-aligned box.
struct ProposalSelectArgs {
  int64_t n = 0, a = 0, k = 0, hw = 1, d = 0, p = 4;
  int64_t sel = 0, slots = 0, off = 0;
  int64_t box_n = 1, box_t = 0, box_off = 0;
  double raw_min = 0, img_h = 0, img_w = 0;
  bool rect2 = false, ignore_direction = false, sigmoid = true;
  const float* no_orientation = nullptr;
};
// box_nms: per image the used candidate slots in the order (raw score descending, slot ascending); a candidate
// is dropped when a kept higher one of its class overlaps it by IoU > max_overlap (greedy NMS per class), then
// when a higher candidate that survived both steps overlaps it by IoU > max_overlap_ca (class-agnostic greedy
// NMS; off at 1). The first `mnr` survivors are written to y (n, mnr, P + 2): box, class, confidence; records
// left over have class -1 and zeros.
struct ProposalNmsArgs {
  int64_t n = 0, slots = 0, p = 4, mnr = 0;
  double max_overlap = 0.5, max_overlap_ca = 1.0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  // Blocked activation layouts of this backend's convolutions: the fixed channel block of its direct kernels
  // (8 or 16; 0: none), and channels-last (block = C): 0 not offered, 1 offered (fast for dense convolutions,
  // slower than the blocked kernels for grouped / depthwise ones), 2 requested for every network.
  virtual int64_t activation_block() const = 0;
  virtual int channels_last() const = 0;
  // Copies an activation of shape s between plain and blocked (block > 0) layouts.
  virtual void to_plain(const float* blocked, float* plain, const Shape4& s, int64_t block) = 0;
  virtual void from_plain(const float* plain, float* blocked, const Shape4& s, int64_t block) = 0;

  // Memory.
  virtual float* alloc(size_t count) = 0;
  virtual void free(float* p) = 0;
  virtual void fill(float* p, size_t n, float v) = 0;
  virtual void copy(float* dst, const float* src, size_t n) = 0;
  virtual void upload(float* dst, const float* host, size_t n) = 0;
  virtual void download(float* host, const float* src, size_t n) = 0;

  // Convolution and transposed convolution (weights (oc, ic/groups, kh, kw) for both, see convolution.cpp).
  // `prepared` (optional) keeps the weights in the form the backend's kernel reads them (e.g. reordered into
  // a blocked layout), made once and reused while the caller's version of the weights stays the same.
  virtual void conv_forward(const ConvKey& k, Act act, const float* x, const float* w, const float* b, float* y,
                            PreparedWeights* prepared = nullptr) = 0;
  // Both gradients from one output gradient: weights (and bias, db may be null without one), then data
  // (dx null: not needed).
  virtual void conv_backward(const ConvKey& k, const float* x, const float* dy, const float* w, float* dx,
                             float* dw, float* db, bool accumulate_dx, bool accumulate_dw) = 0;
  // Pooling; `ws` holds the workspace of max pooling (pool_workspace_floats floats).
  virtual size_t pool_workspace_floats(const PoolKey& k) = 0;
  virtual void pool_forward(const PoolKey& k, const float* x, float* y, float* ws, bool training) = 0;
  virtual void pool_backward(const PoolKey& k, const float* dy, const float* ws, float* dx, bool accumulate) = 0;
  // Batch normalisation with scale/shift; mean/var are the batch statistics (written in training; var biased)
  // or the running ones (read). act kNone or kRelu: the ReLU is fused into forward, and backward masks dy by
  // the fused output y > 0 (y is not read without it).
  virtual void bn_forward(const BnKey& k, float eps, bool training, Act act, const float* x, const float* scale,
                          const float* shift, float* mean, float* var, float* y) = 0;
  virtual void bn_backward(const BnKey& k, float eps, Act act, const float* x, const float* y, const float* dy,
                           const float* scale, const float* mean, const float* var, float* dx, float* dscale,
                           float* dshift, bool accumulate_dx, bool accumulate_dw) = 0;
  // The running statistics after a training step, where they live (no host round trip): with k = *count,
  // m = momentum, or k / (k + 1) for momentum < 0 ('auto'), each of the c channels gets
  // mean = m mean + (1 - m) batch_mean and var = m var + (1 - m) unbias batch_var (em::bn_running); then
  // *count += 1.
  virtual void bn_update_running(size_t c, double momentum, double unbias, const float* batch_mean,
                                 const float* batch_var, float* mean, float* var, float* count) = 0;
  // Dense (inner product) over the flattened (C, H, W) input; weights (oc, ic).
  virtual void dense_forward(const DenseKey& k, const float* x, const float* w, const float* b, float* y) = 0;
  virtual void dense_backward_data(const DenseKey& k, const float* dy, const float* w, float* dx, bool accumulate) = 0;
  virtual void dense_backward_weights(const DenseKey& k, const float* x, const float* dy, float* dw, float* db,
                                      bool accumulate) = 0;
  // Activations; backward uses the forward output (valid for relu, sigmoid, tanh).
  virtual void act_forward(Act a, size_t n, const float* x, float* y) = 0;
  virtual void act_backward(Act a, size_t n, const float* y, const float* dy, float* dx, bool accumulate) = 0;
  // Any pointwise function; backward needs the input x and the output y.
  virtual void pointwise_forward(const PointwiseOp& p, size_t n, const float* x, float* y) = 0;
  virtual void pointwise_backward(const PointwiseOp& p, size_t n, const float* x, const float* y, const float* dy,
                                  float* dx, bool accumulate) = 0;
  // Softmax over C for each of outer*inner positions of an (outer, C, inner) array.
  virtual void softmax_forward(int64_t outer, int64_t c, int64_t inner, const float* x, float* y) = 0;
  virtual void softmax_backward(int64_t outer, int64_t c, int64_t inner, const float* y, const float* dy, float* dx,
                                bool accumulate) = 0;

  // Generic kernels.
  // dst[r*dst_ld + dst_off + j] (+)= alpha * src[r*src_ld + src_off + j] for r < rows, j < cols.
  virtual void copy2d(float* dst, int64_t dst_ld, int64_t dst_off, const float* src, int64_t src_ld,
                      int64_t src_off, int64_t rows, int64_t cols, float alpha, bool accumulate) = 0;
  virtual void axpy(size_t n, float alpha, const float* x, float* y) = 0;  // y += alpha*x
  virtual void mul(size_t n, const float* a, const float* b, float* y) = 0;  // y = a*b
  virtual void mul_acc(size_t n, const float* a, const float* b, float* y, bool accumulate) = 0;  // y (+)= a*b
  // Elementwise maximum/minimum of two arrays and its backward (gradient to the winner; ties to the first).
  virtual void minmax_forward(size_t n, bool is_max, const float* a, const float* b, float* y) = 0;
  virtual void minmax_backward(size_t n, bool is_max, bool first, const float* a, const float* b, const float* dy,
                               float* dx, bool accumulate) = 0;
  virtual void zoom_forward(const ZoomKey& k, const float* x, float* y) = 0;
  virtual void zoom_backward(const ZoomKey& k, const float* dy, float* dx, bool accumulate) = 0;
  // Dropout with an inverted scale over x of shape s in channel block `block`; mask holds 0 or 1/(1-p)
  // (em::dropout_factor of each element's plain index, so the masks do not depend on the layout). The training
  // step's seed is read from device memory (*step_seed), so that a recorded step draws new masks when replayed.
  virtual void dropout_forward(const Shape4& s, int64_t block, float p, const uint64_t* step_seed, uint64_t salt,
                               const float* x, float* mask, float* y) = 0;
  // depth max: per (n, h, w) the max over C and its index.
  virtual void depth_max_forward(int64_t n, int64_t c, int64_t hw, const float* x, float* argmax, float* value) = 0;
  virtual void depth_max_backward(int64_t n, int64_t c, int64_t hw, const float* argmax, const float* dvalue,
                                  float* dx, bool accumulate) = 0;

  // Detection boxes (see BoxGatherArgs). box_assign's scratch holds n * g doubles, then n * (g + 1) int32.
  // Outputs are written whole.
  virtual void box_gather(const BoxGatherArgs& a, const float* src, float* dst) = 0;
  virtual void box_assign(const BoxAssignArgs& a, const float* boxes, const float* gt, double* scratch,
                          float* out) = 0;
  virtual void box_targets(const BoxTargetArgs& a, const float* assign, const float* gt, float* y) = 0;
  // Box proposals (see ProposalSelectArgs): candidates of one level into `cand`, then NMS into the records y.
  virtual void box_select(const ProposalSelectArgs& a, const float* scores, const float* deltas, const float* boxes,
                          double* cand) = 0;
  virtual void box_nms(const ProposalNmsArgs& a, const double* cand, float* y) = 0;

  // Losses write the normalised loss value to `out` (device memory; nothing there: the reduction is skipped) and
  // d(loss)/d(input) scaled by `scale` to the gradient (null: not wanted). Nothing is read back to the host, so
  // a training step has no synchronisation point inside it.
  // Cross-entropy on probabilities p (N, C, S): target ids (N, 1, S), weights (N, 1, S) or (N, 1, 1) broadcast;
  // normalised by N * S.
  virtual void cross_entropy(int64_t n, int64_t c, int64_t s, const float* p, const float* target,
                             const float* weights, int64_t weights_s, float* dp, float scale, bool accumulate,
                             const LossOut& out) = 0;
  // Huber (smooth L1) on x - t with per-element weights; normalised by `norm`.
  virtual void huber(size_t n, float beta, const float* x, const float* t, const float* w, const LossNorm& norm,
                     float* dx, float scale, bool accumulate, const LossOut& out) = 0;
  // Sigmoid focal loss on logits x (N, C, S) with weights w; targets t binary (N, C, S), or class ids (N, 1, S)
  // when t_ids (element (b, k, j) is positive where floor(t[b, j]) == k; other ids are background). Normalised
  // by `norm`.
  virtual void focal_binary(int64_t n, int64_t c, int64_t s, float gamma, const float* alpha, const float* x,
                            const float* t, bool t_ids, const float* w, int64_t w_c, const LossNorm& norm, float* dx,
                            float scale, bool accumulate, const LossOut& out) = 0;
  // Distance loss per sample row (N, D): l2 (squared) or l1 with per-element weights.
  virtual void distance(size_t n, bool l1, const float* x, const float* t, const float* w, const LossNorm& norm,
                        float* dx, float scale, bool accumulate, const LossOut& out) = 0;

  // Reductions and solvers over flat arenas. The reductions write their result to *out (device memory).
  virtual void sum_squares_masked(size_t n, const float* x, const float* mask, double* out) = 0;
  virtual void sgd_update(size_t n, float lr, float momentum, float weight_prior, const float* lr_mult,
                          const float* decay_mask, float* w, const float* g, float* v) = 0;
  virtual void adam_update(size_t n, float lr, double beta1, double beta2, float eps, float bias1, float bias2,
                           float weight_prior, const float* lr_mult, const float* decay_mask, float* w, const float* g,
                           float* m, float* v) = 0;
  // The number of values of x that are not finite (NaN, +-inf).
  virtual void count_nonfinite(size_t n, const float* x, double* out) = 0;

  // Recording a sequence of calls once and replaying it (CUDA graphs; the CPU backend has none). Between
  // graph_begin and graph_end the calls are recorded, not run; graph_end returns the recording's id, or 0 when
  // recording failed (an entry that cannot be recorded, such as a transfer to or from the host), in which case
  // nothing was run and the backend is usable as before. graph_launch(id) runs the recorded calls again on the
  // same buffers, with the values those hold at launch. A recording reads and writes the memory it was made with:
  // it stays valid while the caller's buffers stay and graph_epoch() is unchanged (the epoch changes whenever
  // the backend reallocates its internal buffers or changes its algorithm settings).
  virtual bool graph_supported() const { return false; }
  virtual void graph_begin() {}
  virtual uint64_t graph_end() { return 0; }
  virtual void graph_launch(uint64_t /*id*/) {}
  virtual void graph_destroy(uint64_t /*id*/) {}
  virtual uint64_t graph_epoch() const { return 0; }

  // Introspection for tests and benchmarks: how many convolution plans (one per layer shape and settings) the
  // backend has made that run channels-last, or plain (backends without plans: 0).
  virtual int64_t conv_plans(bool /*channels_last*/) const { return 0; }
};

// The process-wide CPU backend (stateless apart from its primitive cache, which is thread-safe).
Backend& cpu_backend();

}  // namespace opendl
