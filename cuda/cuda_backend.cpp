// CudaBackend: the whole backend interface (cpp/src/backend/backend.h) on one CUDA device. Convolutions run on
// cuDNN, dense layers on cuBLAS, everything else on the plugin's kernels (kernels.h). All work is enqueued on the
// context's one stream, in call order; only results the host reads (downloads, loss values, finiteness) wait
// for it.
//
// Errors: no method throws across the dlopen boundary. The first failure is kept as the backend's pending error
// (code + message) and every later call does nothing until the caller takes it (opendl_cuda_backend_take_error);
// libopendl's wrapper (backend/gpu_backend.cpp) takes it after each call and throws opendl::Error.
//
// Recording: graph_begin / graph_end capture the stream's work as a CUDA graph that graph_launch replays
// (libopendl records one per training micro-batch, see Model::run_recorded). Recordings keep the addresses of the
// scratch buffers and cuBLAS's workspace; graph_epoch changes whenever a scratch buffer grows or the algorithm
// settings change, and libopendl records again then.
//
// Layout: channels-last (N, H, W, C) activations wherever the network can keep them (channels_last 2; the
// network plans them, graph/network.cpp), as cuDNN's tensor-core convolution kernels read them without transposes;
// plain (N, C, H, W) with OPENDL_ACTIVATION_LAYOUT=plain. Batch normalisation, pooling and the convolutions take
// either (a key's block 0 or C); the pointwise entries are layout-blind; everything else reads plain tensors, which
// the network keeps plain. There is no fixed channel block (activation_block 0); to_plain / from_plain convert any
// blocked layout a caller asks for.
//
// Convolutions: one plan per (ConvKey, TF32, deterministic): cuDNN descriptors and the algorithms chosen by
// cudnnFind* (fastest among those within the workspace bound; only deterministic ones in deterministic mode;
// only FMA kernels with TF32 off). cuDNN's legacy API pads symmetrically, so asymmetric padding runs on an
// explicitly zero-padded copy. A transposed convolution is the data gradient of the convolution from its output
// to its input, with the weights' two channel axes swapped (opendl stores (oc, ic / g, kh, kw) for both kinds).
// A convolution runs channels-last (tensors and filter, the filter a permuted copy of the weights) when either of
// its activations is channels-last, converting the other one through a scratch buffer (the network's first
// convolution reads the plain image), and plain when cuDNN has no channels-last algorithm for it.
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "backend/backend.h"
#include "backend/box_math.h"
#include "context.h"
#include "kernels.h"
#include "plugin_api.h"

namespace opendl::cuda {
namespace {

// Workspace bound of one cuDNN call (bytes); OPENDL_CUDNN_WORKSPACE_MB overrides.
size_t workspace_limit() {
  static const size_t v = [] {
    const char* e = std::getenv("OPENDL_CUDNN_WORKSPACE_MB");
    long mb = e ? std::atol(e) : 0;
    return size_t(mb > 0 ? mb : 1024) << 20;
  }();
  return v;
}

// Hands the memory cached by the device's stream-ordered pool (its release threshold is the maximum, so freed
// blocks stay reserved) back to the driver, for allocations outside the pool (cudaMalloc of the scratch buffers,
// cuDNN's and cuBLAS's own) that failed for want of memory. Waits for the device first: blocks whose
// cudaFreeAsync has not run yet cannot be released.
void release_pool_cache() {
  int device = 0;
  cudaMemPool_t pool = nullptr;
  if (cudaDeviceSynchronize() == cudaSuccess && cudaGetDevice(&device) == cudaSuccess &&
      cudaDeviceGetDefaultMemPool(&pool, device) == cudaSuccess)
    (void)cudaMemPoolTrimTo(pool, 0);
  (void)cudaGetLastError();
}

// A grow-only device buffer (contents not kept across growth). Stable addresses once warm.
struct Scratch {
  void* p = nullptr;
  size_t bytes = 0;
  ~Scratch() {
    if (p && cudaFree(p) != cudaSuccess) (void)cudaGetLastError();
  }
  Status reserve(size_t want) {
    if (want <= bytes) return {};
    if (p) {
      if (cudaFree(p) != cudaSuccess) (void)cudaGetLastError();
      p = nullptr;
      bytes = 0;
    }
    cudaError_t e = cudaMalloc(&p, want);
    if (e == cudaErrorMemoryAllocation) {  // the pool may hold enough freed memory
      (void)cudaGetLastError();
      release_pool_cache();
      e = cudaMalloc(&p, want);
    }
    OPENDL_CHECK_CUDA(e);
    bytes = want;
    return {};
  }
  float* f() const { return static_cast<float*>(p); }
  double* d() const { return static_cast<double*>(p); }
};

// kReduce: the losses' reductions; kArenaReduce: the reductions over the parameter arenas, which a training step
// runs after its recorded part (so that their size, that of the arena, never moves the losses' buffer).
// kLayoutX / kLayoutY / kLayoutGrad: a convolution's input, output (or output gradient) and input gradient converted
// to or from the layout its cuDNN call runs in.
enum Slot { kWorkspace, kPadIn, kPadGrad, kConvOut, kWeightT, kWeightGradT, kLayoutX, kLayoutY, kLayoutGrad,
            kChannelParts, kCoeffs, kReduce, kArenaReduce, kProposals, kNumSlots };

struct ConvPlan {
  cudnnTensorDescriptor_t in = nullptr, out = nullptr, bias = nullptr;  // the cuDNN convolution's input / output
  cudnnFilterDescriptor_t filt = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  bool pad_explicit = false;  // asymmetric padding: the convolution's input is a zero-padded copy
  bool last = false;          // channels-last tensors and filter, else plain
  int64_t in_c = 0, in_h = 0, in_w = 0;  // the cuDNN input (padded when pad_explicit)
  int64_t out_c = 0, out_h = 0, out_w = 0;
  cudnnConvolutionFwdAlgo_t fwd{};
  cudnnConvolutionBwdDataAlgo_t bwd_data{};
  cudnnConvolutionBwdFilterAlgo_t bwd_filter{};
  cudnnMathType_t fwd_math{}, data_math{}, filter_math{};
  size_t fwd_ws = 0, data_ws = 0, filter_ws = 0;
  ~ConvPlan() {
    if (in) cudnnDestroyTensorDescriptor(in);
    if (out) cudnnDestroyTensorDescriptor(out);
    if (bias) cudnnDestroyTensorDescriptor(bias);
    if (filt) cudnnDestroyFilterDescriptor(filt);
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
  }
};

// The plan cache's key: the convolution and the settings its algorithms were chosen under. Raw-byte hashing and
// comparison (every field is an int64_t); no allocation per lookup.
struct PlanKey {
  ConvKey k;
  int64_t tf32, deterministic;
};
static_assert(std::has_unique_object_representations_v<PlanKey>, "PlanKey must have no padding bytes");
struct PlanKeyHash {
  size_t operator()(const PlanKey& p) const {
    const auto* b = reinterpret_cast<const unsigned char*>(&p);
    uint64_t h = 1469598103934665603ull;  // FNV-1a
    for (size_t i = 0; i < sizeof p; ++i) h = (h ^ b[i]) * 1099511628211ull;
    return size_t(h);
  }
};
struct PlanKeyEq {
  bool operator()(const PlanKey& a, const PlanKey& b) const { return std::memcmp(&a, &b, sizeof a) == 0; }
};

template <class Perf>
bool usable(const Perf& p, bool tf32, bool deterministic) {
  return p.status == CUDNN_STATUS_SUCCESS && p.memory <= workspace_limit() &&
         (!deterministic || p.determinism == CUDNN_DETERMINISTIC) && (tf32 || p.mathType == CUDNN_FMA_MATH);
}

class CudaBackend final : public Backend {
 public:
  static Status create(int device, std::unique_ptr<CudaBackend>* out) {
    std::unique_ptr<CudaBackend> b(new CudaBackend);
    OPENDL_CHECK_STATUS(CudaContext::create(device, &b->ctx_));
    // cuBLAS's workspace in a buffer of ours, so that a recorded step allocates nothing (32 MiB: NVIDIA's
    // recommendation for Hopper).
    constexpr size_t kCublasWorkspace = size_t(32) << 20;
    OPENDL_CHECK_STATUS(b->cublas_workspace_.alloc(kCublasWorkspace));
    OPENDL_CHECK_CUBLAS(cublasSetWorkspace(b->ctx_->cublas(), b->cublas_workspace_.f32(), kCublasWorkspace));
    // Keep freed memory in the device's pool instead of returning it at every synchronisation: the network frees
    // and reallocates its buffers whenever the batch size changes.
    cudaMemPool_t pool = nullptr;
    OPENDL_CHECK_CUDA(cudaDeviceGetDefaultMemPool(&pool, device));
    uint64_t keep = UINT64_MAX;
    OPENDL_CHECK_CUDA(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
    *out = std::move(b);
    return {};
  }
  ~CudaBackend() override {
    if (ctx_) {  // null when create() failed early
      (void)ctx_->activate();
      (void)ctx_->synchronize();
    }
    if (capturing_) {
      cudaGraph_t g = nullptr;
      if (cudaStreamEndCapture(stream(), &g) == cudaSuccess && g) (void)cudaGraphDestroy(g);
    }
    for (auto& kv : graphs_) (void)cudaGraphExecDestroy(kv.second);
    graphs_.clear();
    plans_.clear();
    for (auto& s : scratch_) s.reset();
    (void)cudaGetLastError();
  }

  // The pending error (code 0: none), cleared by taking it.
  int take_error(char* err, size_t err_len) {
    const int code = report(error_, err, err_len);
    error_ = Status{};
    return code;
  }
  void set_options(bool tf32, bool deterministic) {
    if (tf32 != tf32_ || deterministic != deterministic_) ++epoch_;  // recordings hold the old algorithms
    tf32_ = tf32;
    deterministic_ = deterministic;
  }
  Status sync() {
    OPENDL_CHECK_STATUS(ctx_->activate());
    return ctx_->synchronize();
  }

  std::string name() const override { return "gpu"; }
  int64_t activation_block() const override { return 0; }
  int channels_last() const override {
    static const int v = [] {
      const char* e = std::getenv("OPENDL_ACTIVATION_LAYOUT");
      const std::string o = e ? e : "";
      return o == "plain" || o == "blocked" ? 0 : 2;  // no fixed-block kernels here: 'blocked' is plain
    }();
    return v;
  }
  void to_plain(const float* blocked, float* plain, const Shape4& s, int64_t block) override {
    run([&] { return kernel(launch_relayout(stream(), s, block, blocked, plain, true)); });
  }
  void from_plain(const float* plain, float* blocked, const Shape4& s, int64_t block) override {
    run([&] { return kernel(launch_relayout(stream(), s, block, plain, blocked, false)); });
  }

  // --- memory: stream-ordered allocations from the device's default pool, zero-filled like the CPU backend's.
  float* alloc(size_t count) override {
    void* p = nullptr;
    run([&]() -> Status {
      const size_t bytes = std::max<size_t>(count, 1) * sizeof(float);
      cudaError_t e = cudaMallocAsync(&p, bytes, stream());
      if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        size_t free_b = 0, total_b = 0;
        (void)cudaMemGetInfo(&free_b, &total_b);
        char buf[256];
        std::snprintf(buf, sizeof buf, "out of GPU memory allocating %zu bytes on device %d (%zu of %zu MiB free)",
                      bytes, ctx_->device(), free_b >> 20, total_b >> 20);
        p = nullptr;
        return Status{OPENDL_CUDA_ERR_OUT_OF_DEVICE_MEM, buf};
      }
      OPENDL_CHECK_CUDA(e);
      e = cudaMemsetAsync(p, 0, bytes, stream());
      if (e != cudaSuccess) {
        (void)cudaFreeAsync(p, stream());
        p = nullptr;
        OPENDL_CHECK_CUDA(e);
      }
      return {};
    });
    return static_cast<float*>(p);
  }
  void free(float* p) override {
    if (!p) return;
    // Even with an error pending: a buffer the caller drops is never used again.
    if (ctx_->activate().ok() && cudaFreeAsync(p, stream()) != cudaSuccess) (void)cudaGetLastError();
  }
  void fill(float* p, size_t n, float v) override { run([&] { return kernel(launch_fill(stream(), p, n, v)); }); }
  void copy(float* dst, const float* src, size_t n) override {
    run([&]() -> Status {
      if (dst != src && n)
        OPENDL_CHECK_CUDA(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, stream()));
      return {};
    });
  }
  // From pageable host memory the copy has read `host` when it returns (CUDA stages it), so no wait.
  void upload(float* dst, const float* host, size_t n) override {
    run([&]() -> Status {
      if (n) OPENDL_CHECK_CUDA(cudaMemcpyAsync(dst, host, n * sizeof(float), cudaMemcpyHostToDevice, stream()));
      return {};
    });
  }
  void download(float* host, const float* src, size_t n) override {
    run([&]() -> Status {
      if (n) OPENDL_CHECK_CUDA(cudaMemcpyAsync(host, src, n * sizeof(float), cudaMemcpyDeviceToHost, stream()));
      return ctx_->synchronize();
    });
  }

  // --- convolution ---------------------------------------------------------------------------------------------
  void conv_forward(const ConvKey& k, Act act, const float* x, const float* w, const float* b, float* y,
                    PreparedWeights*) override {
    run([&]() -> Status {
      OPENDL_CHECK_STATUS(conv_layouts(k));
      ConvPlan* p = nullptr;
      OPENDL_CHECK_STATUS(plan(k, &p));
      const int64_t ohw = k.oh * k.ow;
      const Shape4 xs{k.n, k.ic, k.ih, k.iw}, ys{k.n, k.oc, k.oh, k.ow};
      const float* xin = nullptr;
      OPENDL_CHECK_STATUS(in_layout(x, xs, k.xb, p->last, kLayoutX, &xin));
      // Where the convolution's raw result goes: y itself, unless an epilogue needs y's old values (sum); cuDNN
      // writes it there, or into a buffer in the plan's layout converted into it.
      float* raw = y;
      if (k.sum) {
        OPENDL_CHECK_STATUS(slot(kConvOut, size_t(ys.numel()) * sizeof(float)));
        raw = scratch_[kConvOut]->f();
      }
      float* res = raw;
      if ((k.yb != 0) != p->last) {
        OPENDL_CHECK_STATUS(slot(kLayoutY, size_t(ys.numel()) * sizeof(float)));
        res = scratch_[kLayoutY]->f();
      }
      const float* filt = nullptr;
      OPENDL_CHECK_STATUS(cudnn_filter(k, *p, w, &filt));
      if (!k.transposed) {
        const float* in = xin;
        if (p->pad_explicit) {
          OPENDL_CHECK_STATUS(pad_copy(k, *p, xin, kPadIn));
          in = scratch_[kPadIn]->f();
        }
        OPENDL_CHECK_STATUS(cudnn_forward(*p, in, filt, 0.f, res));
      } else {
        // y = the data gradient of the convolution y-space -> x-space, at x.
        float* dst = res;
        if (p->pad_explicit) {
          OPENDL_CHECK_STATUS(slot(kPadIn, size_t(k.n * p->in_c * p->in_h * p->in_w) * sizeof(float)));
          dst = scratch_[kPadIn]->f();
        }
        OPENDL_CHECK_STATUS(cudnn_backward_data(*p, filt, xin, 0.f, dst));
        if (p->pad_explicit) OPENDL_CHECK_STATUS(crop(k, *p, dst, res, false));
      }
      if (res != raw) OPENDL_CHECK_STATUS(out_layout(res, raw, ys, p->last, false));
      if (b || act != Act::kNone || k.sum)
        OPENDL_CHECK_CUDA(launch_bias_act(stream(), k.n, k.oc, ohw, k.yb != 0, k.bias ? b : nullptr, act, y, k.sum,
                                          raw, y));
      return {};
    });
  }

  void conv_backward(const ConvKey& k, const float* x, const float* dy, const float* w, float* dx, float* dw,
                     float* db, bool accumulate_dx, bool accumulate_dw) override {
    run([&]() -> Status {
      OPENDL_CHECK_STATUS(conv_layouts(k));
      ConvPlan* p = nullptr;
      OPENDL_CHECK_STATUS(plan(k, &p));
      const Shape4 xs{k.n, k.ic, k.ih, k.iw}, ys{k.n, k.oc, k.oh, k.ow};
      if (db && k.bias) {
        OPENDL_CHECK_STATUS(slot(kChannelParts, channel_scratch_doubles(k.oc) * sizeof(double)));
        OPENDL_CHECK_CUDA(launch_bias_grad(stream(), k.n, k.oc, k.oh * k.ow, k.yb != 0, dy, db, accumulate_dw,
                                           scratch_[kChannelParts]->d()));
      }
      // The operands in the plan's layout; dx goes through a buffer when its layout differs.
      const float *dyin = nullptr, *xin = x;
      OPENDL_CHECK_STATUS(in_layout(dy, ys, k.yb, p->last, kLayoutY, &dyin));
      if (dw) OPENDL_CHECK_STATUS(in_layout(x, xs, k.xb, p->last, kLayoutX, &xin));
      float* dxr = dx;
      bool acc_dx = accumulate_dx;
      if (dx && (k.xb != 0) != p->last) {
        OPENDL_CHECK_STATUS(slot(kLayoutGrad, size_t(xs.numel()) * sizeof(float)));
        dxr = scratch_[kLayoutGrad]->f();
        acc_dx = false;
      }
      const bool permuted = k.transposed || p->last;  // the filter is a permuted copy of the weights
      const size_t wn = size_t(k.oc * (k.ic / k.groups) * k.kh * k.kw);
      float* dfilt = dw;
      float beta_w = accumulate_dw ? 1.f : 0.f;
      if (dw && permuted) {
        OPENDL_CHECK_STATUS(slot(kWeightGradT, wn * sizeof(float)));
        dfilt = scratch_[kWeightGradT]->f();
        beta_w = 0.f;
      }
      if (!k.transposed) {
        const float* in = xin;
        if (p->pad_explicit && dw) {
          OPENDL_CHECK_STATUS(pad_copy(k, *p, xin, kPadIn));
          in = scratch_[kPadIn]->f();
        }
        if (dw) OPENDL_CHECK_STATUS(cudnn_backward_filter(*p, in, dyin, beta_w, dfilt));
        if (dx) {
          const float* filt = nullptr;
          OPENDL_CHECK_STATUS(cudnn_filter(k, *p, w, &filt));
          if (!p->pad_explicit) {
            OPENDL_CHECK_STATUS(cudnn_backward_data(*p, filt, dyin, acc_dx ? 1.f : 0.f, dxr));
          } else {
            OPENDL_CHECK_STATUS(slot(kPadGrad, size_t(k.n * p->in_c * p->in_h * p->in_w) * sizeof(float)));
            OPENDL_CHECK_STATUS(cudnn_backward_data(*p, filt, dyin, 0.f, scratch_[kPadGrad]->f()));
            OPENDL_CHECK_STATUS(crop(k, *p, scratch_[kPadGrad]->f(), dxr, acc_dx));
          }
        }
      } else {
        // Transposed: the cuDNN convolution maps y-space (input, maybe padded) to x-space (output).
        const float* gin = dyin;
        if (p->pad_explicit) {
          OPENDL_CHECK_STATUS(pad_copy(k, *p, dyin, kPadGrad));
          gin = scratch_[kPadGrad]->f();
        }
        if (dw) OPENDL_CHECK_STATUS(cudnn_backward_filter(*p, gin, xin, 0.f, dfilt));
        if (dx) {
          const float* filt = nullptr;
          OPENDL_CHECK_STATUS(cudnn_filter(k, *p, w, &filt));
          OPENDL_CHECK_STATUS(cudnn_forward(*p, gin, filt, acc_dx ? 1.f : 0.f, dxr));
        }
      }
      // cuDNN's filter gradient back to opendl's weight order.
      if (dw && permuted)
        OPENDL_CHECK_CUDA(launch_filter_permute(stream(), k.groups, k.oc / k.groups, k.ic / k.groups, k.kh * k.kw,
                                                k.transposed, p->last, dfilt, dw, false, accumulate_dw));
      if (dx && dxr != dx) OPENDL_CHECK_STATUS(out_layout(dxr, dx, xs, p->last, accumulate_dx));
      return {};
    });
  }

  // --- pooling, batch normalisation ----------------------------------------------------------------------------
  size_t pool_workspace_floats(const PoolKey& k) override { return k.max ? size_t(k.n * k.c * k.oh * k.ow) : 0; }
  void pool_forward(const PoolKey& k, const float* x, float* y, float* ws_, bool training) override {
    run([&]() -> Status {
      OPENDL_CHECK_STATUS(layout_ok(k.block, k.c, "pooling"));
      int32_t* idx = training && k.max ? reinterpret_cast<int32_t*>(ws_) : nullptr;
      return kernel(launch_pool_forward(stream(), k, x, y, idx));
    });
  }
  void pool_backward(const PoolKey& k, const float* dy, const float* ws_, float* dx, bool accumulate) override {
    run([&]() -> Status {
      OPENDL_CHECK_STATUS(layout_ok(k.block, k.c, "pooling"));
      return kernel(launch_pool_backward(stream(), k, dy, k.max ? reinterpret_cast<const int32_t*>(ws_) : nullptr, dx,
                                         accumulate));
    });
  }
  void bn_forward(const BnKey& k, float eps, bool training, Act act, const float* x, const float* scale,
                  const float* shift, float* mean, float* var, float* y) override {
    run([&]() -> Status {
      OPENDL_CHECK_STATUS(layout_ok(k.block, k.c, "batch normalization"));
      OPENDL_CHECK_STATUS(slot(kChannelParts, channel_scratch_doubles(k.c) * sizeof(double)));
      OPENDL_CHECK_STATUS(slot(kCoeffs, size_t(3 * k.c) * sizeof(float)));
      return kernel(launch_bn_forward(stream(), k, eps, training, act == Act::kRelu, x, scale, shift, mean, var, y,
                                      scratch_[kChannelParts]->d(), scratch_[kCoeffs]->f()));
    });
  }
  void bn_update_running(size_t c, double momentum, double unbias, const float* batch_mean, const float* batch_var,
                         float* mean, float* var, float* count) override {
    run([&] { return kernel(launch_bn_update_running(stream(), c, momentum, unbias, batch_mean, batch_var, mean, var,
                                                     count)); });
  }
  void bn_backward(const BnKey& k, float eps, Act act, const float* x, const float* y, const float* dy,
                   const float* scale, const float* mean, const float* var, float* dx, float* dscale, float* dshift,
                   bool accumulate_dx, bool accumulate_dw) override {
    run([&]() -> Status {
      OPENDL_CHECK_STATUS(layout_ok(k.block, k.c, "batch normalization"));
      OPENDL_CHECK_STATUS(slot(kChannelParts, channel_scratch_doubles(k.c) * sizeof(double)));
      OPENDL_CHECK_STATUS(slot(kCoeffs, size_t(3 * k.c) * sizeof(float)));
      return kernel(launch_bn_backward(stream(), k, eps, act == Act::kRelu, x, y, dy, scale, mean, var, dx, dscale,
                                       dshift, accumulate_dx, accumulate_dw, scratch_[kChannelParts]->d(),
                                       scratch_[kCoeffs]->f()));
    });
  }

  // --- dense: row-major y (n, oc) = x (n, ic) W^T + b is column-major y^T = W x^T -------------------------------
  void dense_forward(const DenseKey& k, const float* x, const float* w, const float* b, float* y) override {
    run([&]() -> Status {
      OPENDL_CHECK_STATUS(gemm_mode());
      const float one = 1.f, zero = 0.f;
      OPENDL_CHECK_CUBLAS(cublasSgemm(ctx_->cublas(), CUBLAS_OP_T, CUBLAS_OP_N, int(k.oc), int(k.n), int(k.ic), &one,
                                      w, int(k.ic), x, int(k.ic), &zero, y, int(k.oc)));
      if (k.bias && b)
        OPENDL_CHECK_CUDA(launch_bias_act(stream(), k.n, k.oc, 1, false, b, Act::kNone, nullptr, 0, y, y));
      return {};
    });
  }
  // dx^T (ic, n) = W^T (ic, oc) dy^T (oc, n).
  void dense_backward_data(const DenseKey& k, const float* dy, const float* w, float* dx, bool accumulate) override {
    run([&]() -> Status {
      OPENDL_CHECK_STATUS(gemm_mode());
      const float one = 1.f, beta = accumulate ? 1.f : 0.f;
      OPENDL_CHECK_CUBLAS(cublasSgemm(ctx_->cublas(), CUBLAS_OP_N, CUBLAS_OP_N, int(k.ic), int(k.n), int(k.oc), &one,
                                      w, int(k.ic), dy, int(k.oc), &beta, dx, int(k.ic)));
      return {};
    });
  }
  // dW^T (ic, oc) = x^T (ic, n) dy (n, oc); db = the column sums of dy.
  void dense_backward_weights(const DenseKey& k, const float* x, const float* dy, float* dw, float* db,
                              bool accumulate) override {
    run([&]() -> Status {
      OPENDL_CHECK_STATUS(gemm_mode());
      const float one = 1.f, beta = accumulate ? 1.f : 0.f;
      OPENDL_CHECK_CUBLAS(cublasSgemm(ctx_->cublas(), CUBLAS_OP_N, CUBLAS_OP_T, int(k.ic), int(k.oc), int(k.n), &one,
                                      x, int(k.ic), dy, int(k.oc), &beta, dw, int(k.ic)));
      if (db && k.bias) {
        OPENDL_CHECK_STATUS(slot(kChannelParts, channel_scratch_doubles(k.oc) * sizeof(double)));
        OPENDL_CHECK_CUDA(
            launch_bias_grad(stream(), k.n, k.oc, 1, false, dy, db, accumulate, scratch_[kChannelParts]->d()));
      }
      return {};
    });
  }

  // --- elementwise ---------------------------------------------------------------------------------------------
  void act_forward(Act a, size_t n, const float* x, float* y) override {
    run([&] { return kernel(launch_act_forward(stream(), a, n, x, y)); });
  }
  void act_backward(Act a, size_t n, const float* y, const float* dy, float* dx, bool accumulate) override {
    run([&] { return kernel(launch_act_backward(stream(), a, n, y, dy, dx, accumulate)); });
  }
  void pointwise_forward(const PointwiseOp& p, size_t n, const float* x, float* y) override {
    run([&] { return kernel(launch_pointwise_forward(stream(), p, n, x, y)); });
  }
  void pointwise_backward(const PointwiseOp& p, size_t n, const float* x, const float* y, const float* dy, float* dx,
                          bool accumulate) override {
    run([&] { return kernel(launch_pointwise_backward(stream(), p, n, x, y, dy, dx, accumulate)); });
  }
  void softmax_forward(int64_t outer, int64_t c, int64_t inner, const float* x, float* y) override {
    run([&] { return kernel(launch_softmax_forward(stream(), outer, c, inner, x, y)); });
  }
  void softmax_backward(int64_t outer, int64_t c, int64_t inner, const float* y, const float* dy, float* dx,
                        bool accumulate) override {
    run([&] { return kernel(launch_softmax_backward(stream(), outer, c, inner, y, dy, dx, accumulate)); });
  }
  void copy2d(float* dst, int64_t dst_ld, int64_t dst_off, const float* src, int64_t src_ld, int64_t src_off,
              int64_t rows, int64_t cols, float alpha, bool accumulate) override {
    run([&] {
      return kernel(launch_copy2d(stream(), dst, dst_ld, dst_off, src, src_ld, src_off, rows, cols, alpha, accumulate));
    });
  }
  void axpy(size_t n, float alpha, const float* x, float* y) override {
    run([&] { return kernel(launch_axpy(stream(), n, alpha, x, y)); });
  }
  void mul(size_t n, const float* a, const float* b, float* y) override {
    run([&] { return kernel(launch_mul(stream(), n, a, b, y)); });
  }
  void mul_acc(size_t n, const float* a, const float* b, float* y, bool accumulate) override {
    run([&] { return kernel(launch_mul_acc(stream(), n, a, b, y, accumulate)); });
  }
  void minmax_forward(size_t n, bool is_max, const float* a, const float* b, float* y) override {
    run([&] { return kernel(launch_minmax_forward(stream(), n, is_max, a, b, y)); });
  }
  void minmax_backward(size_t n, bool is_max, bool first, const float* a, const float* b, const float* dy, float* dx,
                       bool accumulate) override {
    run([&] { return kernel(launch_minmax_backward(stream(), n, is_max, first, a, b, dy, dx, accumulate)); });
  }
  void zoom_forward(const ZoomKey& k, const float* x, float* y) override {
    run([&] { return kernel(launch_zoom_forward(stream(), k, x, y)); });
  }
  void zoom_backward(const ZoomKey& k, const float* dy, float* dx, bool accumulate) override {
    run([&] { return kernel(launch_zoom_backward(stream(), k, dy, dx, accumulate)); });
  }
  void dropout_forward(const Shape4& s, int64_t block, float p, const uint64_t* step_seed, uint64_t salt,
                       const float* x, float* mask, float* y) override {
    run([&] { return kernel(launch_dropout(stream(), s, block, p, step_seed, salt, x, mask, y)); });
  }
  void depth_max_forward(int64_t n, int64_t c, int64_t hw, const float* x, float* argmax, float* value) override {
    run([&] { return kernel(launch_depth_max_forward(stream(), n, c, hw, x, argmax, value)); });
  }
  void depth_max_backward(int64_t n, int64_t c, int64_t hw, const float* argmax, const float* dvalue, float* dx,
                          bool accumulate) override {
    run([&] { return kernel(launch_depth_max_backward(stream(), n, c, hw, argmax, dvalue, dx, accumulate)); });
  }

  // --- losses and reductions: results stay on the device ---------------------------------------------------------
  void cross_entropy(int64_t n, int64_t c, int64_t s, const float* p, const float* target, const float* weights,
                     int64_t weights_s, float* dp, float scale, bool accumulate, const LossOut& out) override {
    run([&]() -> Status {
      OPENDL_CHECK_STATUS(slot(kReduce, loss_scratch_doubles(size_t(n * s), 0) * sizeof(double)));
      return kernel(launch_cross_entropy(stream(), n, c, s, p, target, weights, weights_s, dp, scale, accumulate, out,
                                         scratch_[kReduce]->d()));
    });
  }
  void huber(size_t n, float beta, const float* x, const float* t, const float* w, const LossNorm& norm, float* dx,
             float scale, bool accumulate, const LossOut& out) override {
    run([&]() -> Status {
      OPENDL_CHECK_STATUS(slot(kReduce, loss_scratch_doubles(n, norm.n) * sizeof(double)));
      return kernel(launch_huber(stream(), n, beta, x, t, w, spec(norm), dx, scale, accumulate, out,
                                 scratch_[kReduce]->d()));
    });
  }
  void focal_binary(int64_t n, int64_t c, int64_t s, float gamma, const float* alpha, const float* x, const float* t,
                    bool t_ids, const float* w, int64_t w_c, const LossNorm& norm, float* dx, float scale,
                    bool accumulate, const LossOut& out) override {
    run([&]() -> Status {
      OPENDL_CHECK_STATUS(slot(kReduce, loss_scratch_doubles(size_t(n * c * s), norm.n) * sizeof(double)));
      return kernel(launch_focal_binary(stream(), n, c, s, gamma, alpha, x, t, t_ids, w, w_c, spec(norm), dx, scale,
                                        accumulate, out, scratch_[kReduce]->d()));
    });
  }
  void distance(size_t n, bool l1, const float* x, const float* t, const float* w, const LossNorm& norm, float* dx,
                float scale, bool accumulate, const LossOut& out) override {
    run([&]() -> Status {
      OPENDL_CHECK_STATUS(slot(kReduce, loss_scratch_doubles(n, norm.n) * sizeof(double)));
      return kernel(launch_distance(stream(), n, l1, x, t, w, spec(norm), dx, scale, accumulate, out,
                                    scratch_[kReduce]->d()));
    });
  }
  void sum_squares_masked(size_t n, const float* x, const float* mask, double* out) override {
    run([&]() -> Status {
      OPENDL_CHECK_STATUS(slot(kArenaReduce, loss_scratch_doubles(n, 0) * sizeof(double)));
      return kernel(launch_sum_squares_masked(stream(), n, x, mask, out, scratch_[kArenaReduce]->d()));
    });
  }
  void sgd_update(size_t n, float lr, float momentum, float weight_prior, const float* lr_mult,
                  const float* decay_mask, float* w, const float* g, float* v) override {
    run([&] {
      return kernel(launch_sgd_update(stream(), n, lr, momentum, weight_prior, lr_mult, decay_mask, w, g, v));
    });
  }
  void adam_update(size_t n, float lr, double beta1, double beta2, float eps, float bias1, float bias2,
                   float weight_prior, const float* lr_mult, const float* decay_mask, float* w, const float* g,
                   float* m, float* v) override {
    run([&] {
      return kernel(launch_adam_update(stream(), n, lr, beta1, beta2, eps, bias1, bias2, weight_prior, lr_mult,
                                       decay_mask, w, g, m, v));
    });
  }
  void box_gather(const BoxGatherArgs& a, const float* src, float* dst) override {
    run([&] { return kernel(launch_box_gather(stream(), a, src, dst)); });
  }
  void box_assign(const BoxAssignArgs& a, const float* boxes, const float* gt, double* scratch, float* out) override {
    run([&] { return kernel(launch_box_assign(stream(), a, boxes, gt, scratch, out)); });
  }
  void box_targets(const BoxTargetArgs& a, const float* assign, const float* gt, float* y) override {
    run([&] { return kernel(launch_box_targets(stream(), a, assign, gt, y)); });
  }
  void box_select(const ProposalSelectArgs& a, const float* scores, const float* deltas, const float* boxes,
                  double* cand) override {
    run([&]() -> Status {
      OPENDL_CHECK_STATUS(sort_limit(a.n * bm::select_elements(a), "class scores"));
      size_t bytes = 0;
      OPENDL_CHECK_CUDA(box_select_workspace(a, &bytes));
      OPENDL_CHECK_STATUS(slot(kProposals, bytes));
      return kernel(launch_box_select(stream(), a, scores, deltas, boxes, cand, scratch_[kProposals]->p));
    });
  }
  void box_nms(const ProposalNmsArgs& a, const double* cand, float* y) override {
    run([&]() -> Status {
      OPENDL_CHECK_STATUS(sort_limit(a.n * a.slots, "box candidates"));
      size_t bytes = 0;
      OPENDL_CHECK_CUDA(box_nms_workspace(a, &bytes));
      OPENDL_CHECK_STATUS(slot(kProposals, bytes));
      return kernel(launch_box_nms(stream(), a, cand, y, scratch_[kProposals]->p));
    });
  }
  void count_nonfinite(size_t n, const float* x, double* out) override {
    run([&]() -> Status {
      OPENDL_CHECK_STATUS(slot(kArenaReduce, loss_scratch_doubles(n, 0) * sizeof(double)));
      return kernel(launch_count_nonfinite(stream(), n, x, out, scratch_[kArenaReduce]->d()));
    });
  }

  // --- recording (CUDA graphs) -------------------------------------------------------------------------------------
  // The calls between graph_begin and graph_end are captured from the stream (thread-local mode: only this
  // thread's unsafe calls break the capture). Entries that cannot be captured (a download waits for the stream;
  // a scratch buffer that would have to grow) fail the capture; graph_end then returns 0 and clears the error.
  bool graph_supported() const override { return true; }
  void graph_begin() override {
    run([&]() -> Status {
      if (capturing_) return Status{OPENDL_CUDA_ERR_CUDA, "graph_begin while recording"};
      OPENDL_CHECK_CUDA(cudaStreamBeginCapture(stream(), cudaStreamCaptureModeThreadLocal));
      capturing_ = true;
      return {};
    });
  }
  uint64_t graph_end() override {
    if (!capturing_) return 0;
    capturing_ = false;
    cudaGraph_t graph = nullptr;
    const bool activated = ctx_->activate().ok();
    cudaError_t e = activated ? cudaStreamEndCapture(stream(), &graph) : cudaErrorInvalidDevice;
    cudaGraphExec_t exec = nullptr;
    if (e == cudaSuccess && graph && error_.ok()) e = cudaGraphInstantiate(&exec, graph, 0);
    if (graph) (void)cudaGraphDestroy(graph);
    const bool ok = e == cudaSuccess && exec && error_.ok();
    (void)cudaGetLastError();
    error_ = Status{};  // a failed recording ran nothing; the caller runs the calls directly
    if (!ok) {
      if (exec) (void)cudaGraphExecDestroy(exec);
      return 0;
    }
    const uint64_t id = ++last_graph_;
    graphs_[id] = exec;
    return id;
  }
  void graph_launch(uint64_t id) override {
    run([&]() -> Status {
      auto it = graphs_.find(id);
      if (it == graphs_.end()) return Status{OPENDL_CUDA_ERR_CUDA, "graph_launch: no recording with this id"};
      OPENDL_CHECK_CUDA(cudaGraphLaunch(it->second, stream()));
      return {};
    });
  }
  void graph_destroy(uint64_t id) override {
    auto it = graphs_.find(id);
    if (it == graphs_.end()) return;
    if (ctx_->activate().ok() && cudaGraphExecDestroy(it->second) != cudaSuccess) (void)cudaGetLastError();
    graphs_.erase(it);
  }
  uint64_t graph_epoch() const override { return epoch_; }
  int64_t conv_plans(bool channels_last) const override {
    int64_t n = 0;
    for (const auto& kv : plans_) n += kv.second->last == channels_last ? 1 : 0;
    return n;
  }

 private:
  CudaBackend() {
    scratch_.resize(kNumSlots);
    recorded_slots_.assign(kNumSlots, false);
  }

  cudaStream_t stream() const { return ctx_->stream(); }
  void* ws() const { return scratch_[kWorkspace] ? scratch_[kWorkspace]->p : nullptr; }

  // Runs one entry unless an error is pending; keeps the first failure.
  template <class F>
  void run(F&& f) {
    if (!error_.ok()) return;
    Status s = ctx_->activate();
    if (s.ok()) {
      try {
        s = f();
      } catch (const std::bad_alloc&) {
        s = Status{6001, "out of host memory in the CUDA plugin"};
      } catch (const std::exception& e) {
        s = Status{OPENDL_CUDA_ERR_CUDA, std::string("CUDA plugin: ") + e.what()};
      }
    }
    if (!s.ok()) error_ = s;
  }
  static Status kernel(cudaError_t e) {
    OPENDL_CHECK_CUDA(e);
    return {};
  }
  static NormSpec spec(const LossNorm& n) { return NormSpec{n.src, n.n, n.fallback}; }
  // Grows scratch slot s to `bytes`. Growing frees the old buffer: during a recording it is refused (which fails
  // the recording), and growing a slot that a recording uses changes the epoch (invalidating recordings).
  Status slot(Slot s, size_t bytes) {
    if (!scratch_[s]) scratch_[s] = std::make_unique<Scratch>();
    if (capturing_) recorded_slots_[s] = true;
    bytes = std::max<size_t>(bytes, 16);
    if (bytes <= scratch_[s]->bytes) return {};
    if (capturing_) return Status{OPENDL_CUDA_ERR_CUDA, "a scratch buffer would grow while recording a CUDA graph"};
    if (recorded_slots_[s]) ++epoch_;
    return scratch_[s]->reserve(bytes);
  }
  // The proposals sort their keys of a batch in one CUB call (int item counts).
  static Status sort_limit(int64_t keys, const char* what) {
    if (keys <= INT_MAX) return {};
    char buf[200];
    std::snprintf(buf, sizeof buf, "box proposals on the GPU: %lld %s in the batch exceed the %d of one sort; use a "
                  "smaller batch size or max_num_pre_nms", static_cast<long long>(keys), what, INT_MAX);
    return Status{OPENDL_CUDA_ERR_WRONG_VALUE, buf};
  }
  // The layouts the GPU kernels take: plain (block 0) or channels-last (block C).
  static Status layout_ok(int64_t block, int64_t c, const char* what) {
    if (block == 0 || block == c) return {};
    char buf[200];
    std::snprintf(buf, sizeof buf, "%s on the GPU takes plain (N, C, H, W) or channels-last activations, got channel "
                  "block %lld of %lld channels", what, static_cast<long long>(block), static_cast<long long>(c));
    return Status{OPENDL_CUDA_ERR_WRONG_VALUE, buf};
  }
  static Status conv_layouts(const ConvKey& k) {
    OPENDL_CHECK_STATUS(layout_ok(k.xb, k.ic, "the convolution's input"));
    return layout_ok(k.yb, k.oc, "the convolution's output");
  }
  // src (shape s, channel block `block`) in the layout a convolution plan runs in (channels-last or plain): src
  // itself, or a copy converted into scratch slot `slot`.
  Status in_layout(const float* src, const Shape4& s, int64_t block, bool last, Slot slot_id, const float** out) {
    *out = src;
    if ((block != 0) == last) return {};
    OPENDL_CHECK_STATUS(slot(slot_id, size_t(s.numel()) * sizeof(float)));
    float* dst = scratch_[slot_id]->f();
    OPENDL_CHECK_CUDA(launch_relayout(stream(), s, s.c, src, dst, /*to_plain=*/!last));
    *out = dst;
    return {};
  }
  // The inverse: `run` (in the plan's layout) into dst (in the other one), overwritten or added to.
  Status out_layout(const float* run, float* dst, const Shape4& s, bool last, bool accumulate) {
    OPENDL_CHECK_CUDA(launch_relayout(stream(), s, s.c, run, dst, /*to_plain=*/last, accumulate));
    return {};
  }
  Status gemm_mode() {
    OPENDL_CHECK_CUBLAS(cublasSetMathMode(ctx_->cublas(), tf32_ ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    return {};
  }

  // The plan's three cuDNN calls, each with its algorithm, math type and workspace: out = beta * out + the
  // convolution of `in` (descriptor p.in) with the filter (p.out the result); the data gradient din (p.in) from
  // dout (p.out); the filter gradient from in and dout.
  Status cudnn_forward(const ConvPlan& p, const float* in, const float* filt, float beta, float* out) {
    const float one = 1.f;
    OPENDL_CHECK_STATUS(slot(kWorkspace, p.fwd_ws));
    OPENDL_CHECK_CUDNN(cudnnSetConvolutionMathType(p.conv, p.fwd_math));
    OPENDL_CHECK_CUDNN(cudnnConvolutionForward(ctx_->cudnn(), &one, p.in, in, p.filt, filt, p.conv, p.fwd, ws(),
                                               p.fwd_ws, &beta, p.out, out));
    return {};
  }
  Status cudnn_backward_data(const ConvPlan& p, const float* filt, const float* dout, float beta, float* din) {
    const float one = 1.f;
    OPENDL_CHECK_STATUS(slot(kWorkspace, p.data_ws));
    OPENDL_CHECK_CUDNN(cudnnSetConvolutionMathType(p.conv, p.data_math));
    OPENDL_CHECK_CUDNN(cudnnConvolutionBackwardData(ctx_->cudnn(), &one, p.filt, filt, p.out, dout, p.conv,
                                                    p.bwd_data, ws(), p.data_ws, &beta, p.in, din));
    return {};
  }
  Status cudnn_backward_filter(const ConvPlan& p, const float* in, const float* dout, float beta, float* dfilt) {
    const float one = 1.f;
    OPENDL_CHECK_STATUS(slot(kWorkspace, p.filter_ws));
    OPENDL_CHECK_CUDNN(cudnnSetConvolutionMathType(p.conv, p.filter_math));
    OPENDL_CHECK_CUDNN(cudnnConvolutionBackwardFilter(ctx_->cudnn(), &one, p.in, in, p.out, dout, p.conv,
                                                      p.bwd_filter, ws(), p.filter_ws, &beta, p.filt, dfilt));
    return {};
  }
  // The weights as the plan's cuDNN filter: w itself for a plain convolution; else a permuted copy in kWeightT
  // (a transposed convolution's filter (g, ic/g, oc/g, kh, kw); channels-last: the kernel position before the inner
  // channel axis).
  Status cudnn_filter(const ConvKey& k, const ConvPlan& p, const float* w, const float** out) {
    *out = w;
    if (!k.transposed && !p.last) return {};
    const size_t wn = size_t(k.oc * (k.ic / k.groups) * k.kh * k.kw);
    OPENDL_CHECK_STATUS(slot(kWeightT, wn * sizeof(float)));
    OPENDL_CHECK_CUDA(launch_filter_permute(stream(), k.groups, k.oc / k.groups, k.ic / k.groups, k.kh * k.kw,
                                            k.transposed, p.last, w, scratch_[kWeightT]->f(), true, false));
    *out = scratch_[kWeightT]->f();
    return {};
  }
  // Copies the cuDNN convolution's unpadded input (x, or dy of a transposed convolution; in the plan's layout) into
  // scratch slot `s` with the padding as zeros.
  Status pad_copy(const ConvKey& k, const ConvPlan& p, const float* src, Slot s) {
    const int64_t h = p.in_h - k.pt - k.pb, w = p.in_w - k.pl - k.pr;
    const size_t total = size_t(k.n * p.in_c * p.in_h * p.in_w);
    OPENDL_CHECK_STATUS(slot(s, total * sizeof(float)));
    OPENDL_CHECK_CUDA(launch_pad_rows(stream(), p.last ? k.n : k.n * p.in_c, p.last ? p.in_c : 1, h, w, p.in_h,
                                      p.in_w, k.pt, k.pl, src, scratch_[s]->f(), true, false));
    return {};
  }
  // The inverse: the unpadded part of a padded tensor into dst (overwritten or added to).
  Status crop(const ConvKey& k, const ConvPlan& p, const float* padded, float* dst, bool accumulate) {
    const int64_t h = p.in_h - k.pt - k.pb, w = p.in_w - k.pl - k.pr;
    OPENDL_CHECK_CUDA(launch_pad_rows(stream(), p.last ? k.n : k.n * p.in_c, p.last ? p.in_c : 1, h, w, p.in_h,
                                      p.in_w, k.pt, k.pl, padded, dst, false, accumulate));
    return {};
  }

  Status plan(const ConvKey& k, ConvPlan** out) {
    const PlanKey key{k, int64_t(tf32_), int64_t(deterministic_)};
    auto it = plans_.find(key);
    if (it != plans_.end()) {
      *out = it->second.get();
      return {};
    }
    if (k.groups < 1 || k.ic % k.groups || k.oc % k.groups) {
      char buf[160];
      std::snprintf(buf, sizeof buf, "convolution channels %lld -> %lld do not split into %lld groups",
                    static_cast<long long>(k.ic), static_cast<long long>(k.oc), static_cast<long long>(k.groups));
      return Status{OPENDL_CUDA_ERR_WRONG_VALUE, buf};
    }
    auto p = std::make_unique<ConvPlan>();
    p->pad_explicit = k.pt != k.pb || k.pl != k.pr;
    // The cuDNN convolution: x -> y, or for a transposed convolution y -> x.
    const int64_t ci = k.transposed ? k.oc : k.ic, hi = k.transposed ? k.oh : k.ih, wi = k.transposed ? k.ow : k.iw;
    const int64_t co = k.transposed ? k.ic : k.oc, ho = k.transposed ? k.ih : k.oh, wo = k.transposed ? k.iw : k.ow;
    p->in_c = ci;
    p->in_h = hi + (p->pad_explicit ? k.pt + k.pb : 0);
    p->in_w = wi + (p->pad_explicit ? k.pl + k.pr : 0);
    p->out_c = co;
    p->out_h = ho;
    p->out_w = wo;
    OPENDL_CHECK_CUDNN(cudnnCreateTensorDescriptor(&p->in));
    OPENDL_CHECK_CUDNN(cudnnCreateTensorDescriptor(&p->out));
    OPENDL_CHECK_CUDNN(cudnnCreateFilterDescriptor(&p->filt));
    OPENDL_CHECK_CUDNN(cudnnCreateConvolutionDescriptor(&p->conv));
    // Channels-last when either activation is; plain when cuDNN has no channels-last algorithm for it (any
    // cuDNN failure of the search; out of memory is not retried that way).
    p->last = k.xb != 0 || k.yb != 0;
    OPENDL_CHECK_STATUS(describe(k, p.get()));
    Status chosen = search(k, p.get());
    if (!chosen.ok() && chosen.code == OPENDL_CUDA_ERR_CUDNN && p->last) {
      p->last = false;
      OPENDL_CHECK_STATUS(describe(k, p.get()));
      chosen = search(k, p.get());
    }
    OPENDL_CHECK_STATUS(chosen);
    *out = p.get();
    plans_.emplace(key, std::move(p));
    return {};
  }

  // The plan's cuDNN descriptors in its layout (p->last).
  Status describe(const ConvKey& k, ConvPlan* p) {
    const int64_t ci = p->in_c, co = p->out_c, ho = p->out_h, wo = p->out_w;
    const int pad_h = p->pad_explicit ? 0 : int(k.pt), pad_w = p->pad_explicit ? 0 : int(k.pl);
    const cudnnTensorFormat_t f = p->last ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;
    OPENDL_CHECK_CUDNN(cudnnSetTensor4dDescriptor(p->in, f, CUDNN_DATA_FLOAT, int(k.n), int(ci), int(p->in_h),
                                                  int(p->in_w)));
    OPENDL_CHECK_CUDNN(cudnnSetTensor4dDescriptor(p->out, f, CUDNN_DATA_FLOAT, int(k.n), int(co), int(ho), int(wo)));
    OPENDL_CHECK_CUDNN(cudnnSetFilter4dDescriptor(p->filt, CUDNN_DATA_FLOAT, f, int(co), int(ci / k.groups), int(k.kh),
                                                  int(k.kw)));
    OPENDL_CHECK_CUDNN(cudnnSetConvolution2dDescriptor(p->conv, pad_h, pad_w, int(k.sh), int(k.sw), int(k.dh),
                                                       int(k.dw), CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    OPENDL_CHECK_CUDNN(cudnnSetConvolutionGroupCount(p->conv, int(k.groups)));
    OPENDL_CHECK_CUDNN(cudnnSetConvolutionMathType(p->conv, tf32_ ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH));
    int n = 0, c = 0, h = 0, w = 0;
    OPENDL_CHECK_CUDNN(cudnnGetConvolution2dForwardOutputDim(p->conv, p->in, p->filt, &n, &c, &h, &w));
    if (h != ho || w != wo) {
      char buf[256];
      std::snprintf(buf, sizeof buf, "convolution geometry: cuDNN computes a %dx%d output from %lldx%lld, the layer "
                    "expects %lldx%lld", h, w, static_cast<long long>(p->in_h), static_cast<long long>(p->in_w),
                    static_cast<long long>(ho), static_cast<long long>(wo));
      return Status{OPENDL_CUDA_ERR_WRONG_VALUE, buf};
    }
    return {};
  }
  Status search(const ConvKey& k, ConvPlan* p) {
    Status chosen = choose_algorithms(k, p);
    if (chosen.code == OPENDL_CUDA_ERR_OUT_OF_DEVICE_MEM) {  // cuDNN's trial buffers: try again with the pool's
      release_pool_cache();                                    // cached memory released
      chosen = choose_algorithms(k, p);
    }
    return chosen;
  }

  // The algorithms of the directions the plan runs: all three for training; for an inference plan only the
  // forward pass (backward data for a transposed convolution, which computes its output that way).
  // cudnnFind* times every algorithm on buffers it allocates itself and lists them fastest first. Deterministic
  // mode takes cuDNN's heuristic order instead (cudnnGet*_v7, no timing), so that every run, in every process,
  // picks the same algorithm and sums in the same order. Nothing usable means cuDNN has no kernel for this shape
  // under the constraints.
  Status choose_algorithms(const ConvKey& k, ConvPlan* p) {
    constexpr int kMax = 16;
    int got = 0;
    auto none = [&](const char* which) {
      char buf[256];
      std::snprintf(buf, sizeof buf, "cuDNN has no %s%s convolution %s algorithm within the %zu MiB workspace bound",
                    deterministic_ ? "deterministic " : "", tf32_ ? "" : "FP32 (TF32 off)", which,
                    workspace_limit() >> 20);
      return Status{OPENDL_CUDA_ERR_CUDNN, buf};
    };
    // The first usable result into algo / workspace / math type.
    auto take = [&](const auto* perf, auto* algo, size_t* ws_bytes, cudnnMathType_t* math, const char* which) {
      int i = 0;
      while (i < got && !usable(perf[i], tf32_, deterministic_)) ++i;
      if (i == got) return none(which);
      *algo = perf[i].algo;
      *ws_bytes = perf[i].memory;
      *math = perf[i].mathType;
      return Status{};
    };
    const bool forward = !k.inference || !k.transposed, data = !k.inference || k.transposed, filter = !k.inference;
    cudnnHandle_t h = ctx_->cudnn();
    if (forward) {
      cudnnConvolutionFwdAlgoPerf_t perf[kMax];
      if (deterministic_)
        OPENDL_CHECK_CUDNN(cudnnGetConvolutionForwardAlgorithm_v7(h, p->in, p->filt, p->conv, p->out, kMax, &got, perf));
      else
        OPENDL_CHECK_CUDNN(cudnnFindConvolutionForwardAlgorithm(h, p->in, p->filt, p->conv, p->out, kMax, &got, perf));
      OPENDL_CHECK_STATUS(take(perf, &p->fwd, &p->fwd_ws, &p->fwd_math, "forward"));
    }
    if (data) {
      cudnnConvolutionBwdDataAlgoPerf_t perf[kMax];
      if (deterministic_)
        OPENDL_CHECK_CUDNN(
            cudnnGetConvolutionBackwardDataAlgorithm_v7(h, p->filt, p->out, p->conv, p->in, kMax, &got, perf));
      else
        OPENDL_CHECK_CUDNN(
            cudnnFindConvolutionBackwardDataAlgorithm(h, p->filt, p->out, p->conv, p->in, kMax, &got, perf));
      OPENDL_CHECK_STATUS(take(perf, &p->bwd_data, &p->data_ws, &p->data_math, "backward-data"));
    }
    if (filter) {
      cudnnConvolutionBwdFilterAlgoPerf_t perf[kMax];
      if (deterministic_)
        OPENDL_CHECK_CUDNN(
            cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, p->in, p->out, p->conv, p->filt, kMax, &got, perf));
      else
        OPENDL_CHECK_CUDNN(
            cudnnFindConvolutionBackwardFilterAlgorithm(h, p->in, p->out, p->conv, p->filt, kMax, &got, perf));
      OPENDL_CHECK_STATUS(take(perf, &p->bwd_filter, &p->filter_ws, &p->filter_math, "backward-filter"));
    }
    return {};
  }

  std::unique_ptr<CudaContext> ctx_;
  Status error_;
  bool tf32_ = true, deterministic_ = false;
  bool capturing_ = false;
  std::vector<bool> recorded_slots_;  // per scratch slot: used by a recording
  uint64_t epoch_ = 1, last_graph_ = 0;
  std::unordered_map<uint64_t, cudaGraphExec_t> graphs_;
  DeviceBuffer cublas_workspace_;
  std::vector<std::unique_ptr<Scratch>> scratch_;
  std::unordered_map<PlanKey, std::unique_ptr<ConvPlan>, PlanKeyHash, PlanKeyEq> plans_;
};

}  // namespace
}  // namespace opendl::cuda

using opendl::cuda::CudaBackend;
using opendl::cuda::Status;

OPENDL_CUDA_EXPORT int opendl_cuda_backend_create(int device, const char* backend_abi, void** out, char* err,
                                                  size_t err_len) {
  if (!out) return opendl::cuda::report(Status{OPENDL_CUDA_ERR_WRONG_VALUE, "out is null"}, err, err_len);
  *out = nullptr;
  if (!backend_abi || std::strcmp(backend_abi, OPENDL_BACKEND_ABI) != 0) {
    std::string m = std::string("libopendl_cuda was built from another version of backend.h (plugin ") +
                    OPENDL_BACKEND_ABI + ", libopendl " + (backend_abi ? backend_abi : "?") + "); rebuild both";
    return opendl::cuda::report(Status{OPENDL_CUDA_ERR_NOT_AVAILABLE, m}, err, err_len);
  }
  try {
    std::unique_ptr<CudaBackend> b;
    Status s = CudaBackend::create(device, &b);
    if (!s.ok()) return opendl::cuda::report(s, err, err_len);
    *out = static_cast<opendl::Backend*>(b.release());
    return 0;
  } catch (const std::exception& e) {
    return opendl::cuda::report(Status{OPENDL_CUDA_ERR_CUDA, std::string("CUDA plugin: ") + e.what()}, err, err_len);
  }
}

OPENDL_CUDA_EXPORT void opendl_cuda_backend_destroy(void* backend) {
  delete static_cast<CudaBackend*>(static_cast<opendl::Backend*>(backend));
}

OPENDL_CUDA_EXPORT int opendl_cuda_backend_take_error(void* backend, char* err, size_t err_len) {
  return static_cast<CudaBackend*>(static_cast<opendl::Backend*>(backend))->take_error(err, err_len);
}

OPENDL_CUDA_EXPORT void opendl_cuda_backend_set_options(void* backend, int tf32, int deterministic) {
  static_cast<CudaBackend*>(static_cast<opendl::Backend*>(backend))->set_options(tf32 != 0, deterministic != 0);
}

OPENDL_CUDA_EXPORT int opendl_cuda_backend_synchronize(void* backend, char* err, size_t err_len) {
  return opendl::cuda::report(static_cast<CudaBackend*>(static_cast<opendl::Backend*>(backend))->sync(), err,
                              err_len);
}
