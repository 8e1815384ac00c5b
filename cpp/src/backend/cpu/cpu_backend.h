// CpuBackend: oneDNN primitives (onednn_ops.cpp) and OpenMP kernels (kernels.cpp, norm_pool.cpp,
// losses_solvers.cpp, pointwise.cpp) behind the Backend interface.
#pragma once

#include <memory>

#include "backend/backend.h"

// Hot OpenMP kernels are compiled once per ISA level and picked at load time (GCC function multi-versioning),
// so the portable wheel still runs AVX2 / AVX-512 code where the CPU has it. Apply it to functions holding no
// OpenMP parallel region (their outlined bodies would not be cloned).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define OPENDL_CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define OPENDL_CPU_CLONES
#endif

namespace opendl {

// Host memory of the CPU backend: 64-byte aligned, not zeroed; raises kHostMem when none is left. Blocks of 4 MiB
// and more are aligned to 2 MiB and marked for transparent huge pages (Linux, where the system has them in
// 'madvise' mode): a fresh 38 MiB block of transformed weights then takes ~20 page faults on its first touch
// instead of ~9600, which on the development VM cost 35 ms per ResNet-18 512-channel layer.
void* host_alloc(size_t bytes);
void host_free(void* p);

// A host array of floats from host_alloc; resize keeps the block when the count is unchanged.
class HostFloats {
 public:
  void resize(size_t count) {
    if (p_ && count == n_) return;
    p_.reset(static_cast<float*>(host_alloc(count * sizeof(float))));
    n_ = count;
  }
  float* data() { return p_.get(); }
  const float* data() const { return p_.get(); }
  size_t size() const { return n_; }

 private:
  struct Free {
    void operator()(float* p) const { host_free(p); }
  };
  std::unique_ptr<float, Free> p_;
  size_t n_ = 0;
};

// Winograd F(4x4, 3x3) for 3x3 stride-1 convolutions (winograd.cpp): whether it serves the forward pass of key k
// with activation `act`, and the call (the transformed weights kept in `prepared`, or made per call where it is
// null, as in training); whether it serves the data gradient of key k, and that call.
bool winograd_applies(const ConvKey& k, Act act);
void winograd_forward(const ConvKey& k, Act act, const float* x, const float* w, const float* b, float* y,
                      PreparedWeights* prepared);
bool winograd_applies_backward_data(const ConvKey& k);
void winograd_backward_data(const ConvKey& k, const float* dy, const float* w, float* dx, bool accumulate);

class CpuBackend final : public Backend {
 public:
  std::string name() const override { return "cpu"; }
  int64_t activation_block() const override;
  int channels_last() const override;
  void to_plain(const float* blocked, float* plain, const Shape4& s, int64_t block) override;
  void from_plain(const float* plain, float* blocked, const Shape4& s, int64_t block) override;
  float* alloc(size_t count) override;
  void free(float* p) override;
  void fill(float* p, size_t n, float v) override;
  void copy(float* dst, const float* src, size_t n) override;
  void upload(float* dst, const float* host, size_t n) override { copy(dst, host, n); }
  void download(float* host, const float* src, size_t n) override { copy(host, src, n); }

  void conv_forward(const ConvKey& k, Act act, const float* x, const float* w, const float* b, float* y,
                    PreparedWeights* prepared) override;
  void conv_backward(const ConvKey& k, const float* x, const float* dy, const float* w, float* dx, float* dw,
                     float* db, bool accumulate_dx, bool accumulate_dw) override;
  size_t pool_workspace_floats(const PoolKey& k) override;
  void pool_forward(const PoolKey& k, const float* x, float* y, float* ws, bool training) override;
  void pool_backward(const PoolKey& k, const float* dy, const float* ws, float* dx, bool accumulate) override;
  void bn_forward(const BnKey& k, float eps, bool training, Act act, const float* x, const float* scale,
                  const float* shift, float* mean, float* var, float* y) override;
  void bn_update_running(size_t c, double momentum, double unbias, const float* batch_mean, const float* batch_var,
                         float* mean, float* var, float* count) override;
  void bn_backward(const BnKey& k, float eps, Act act, const float* x, const float* y, const float* dy,
                   const float* scale, const float* mean, const float* var, float* dx, float* dscale, float* dshift,
                   bool accumulate_dx, bool accumulate_dw) override;
  void dense_forward(const DenseKey& k, const float* x, const float* w, const float* b, float* y) override;
  void dense_backward_data(const DenseKey& k, const float* dy, const float* w, float* dx, bool accumulate) override;
  void dense_backward_weights(const DenseKey& k, const float* x, const float* dy, float* dw, float* db,
                              bool accumulate) override;
  void act_forward(Act a, size_t n, const float* x, float* y) override;
  void act_backward(Act a, size_t n, const float* y, const float* dy, float* dx, bool accumulate) override;
  void pointwise_forward(const PointwiseOp& p, size_t n, const float* x, float* y) override;
  void pointwise_backward(const PointwiseOp& p, size_t n, const float* x, const float* y, const float* dy, float* dx,
                          bool accumulate) override;
  void softmax_forward(int64_t outer, int64_t c, int64_t inner, const float* x, float* y) override;
  void softmax_backward(int64_t outer, int64_t c, int64_t inner, const float* y, const float* dy, float* dx,
                        bool accumulate) override;

  void copy2d(float* dst, int64_t dst_ld, int64_t dst_off, const float* src, int64_t src_ld, int64_t src_off,
              int64_t rows, int64_t cols, float alpha, bool accumulate) override;
  void axpy(size_t n, float alpha, const float* x, float* y) override;
  void mul(size_t n, const float* a, const float* b, float* y) override;
  void mul_acc(size_t n, const float* a, const float* b, float* y, bool accumulate) override;
  void minmax_forward(size_t n, bool is_max, const float* a, const float* b, float* y) override;
  void minmax_backward(size_t n, bool is_max, bool first, const float* a, const float* b, const float* dy, float* dx,
                       bool accumulate) override;
  void zoom_forward(const ZoomKey& k, const float* x, float* y) override;
  void zoom_backward(const ZoomKey& k, const float* dy, float* dx, bool accumulate) override;
  void dropout_forward(const Shape4& s, int64_t block, float p, const uint64_t* step_seed, uint64_t salt,
                       const float* x, float* mask, float* y) override;
  void depth_max_forward(int64_t n, int64_t c, int64_t hw, const float* x, float* argmax, float* value) override;
  void depth_max_backward(int64_t n, int64_t c, int64_t hw, const float* argmax, const float* dvalue, float* dx,
                          bool accumulate) override;

  void cross_entropy(int64_t n, int64_t c, int64_t s, const float* p, const float* target, const float* weights,
                     int64_t weights_s, float* dp, float scale, bool accumulate, const LossOut& out) override;
  void huber(size_t n, float beta, const float* x, const float* t, const float* w, const LossNorm& norm, float* dx,
             float scale, bool accumulate, const LossOut& out) override;
  void focal_binary(int64_t n, int64_t c, int64_t s, float gamma, const float* alpha, const float* x, const float* t,
                    bool t_ids, const float* w, int64_t w_c, const LossNorm& norm, float* dx, float scale,
                    bool accumulate, const LossOut& out) override;
  void distance(size_t n, bool l1, const float* x, const float* t, const float* w, const LossNorm& norm, float* dx,
                float scale, bool accumulate, const LossOut& out) override;

  void sum_squares_masked(size_t n, const float* x, const float* mask, double* out) override;
  void sgd_update(size_t n, float lr, float momentum, float weight_prior, const float* lr_mult, const float* decay_mask,
                  float* w, const float* g, float* v) override;
  void adam_update(size_t n, float lr, double beta1, double beta2, float eps, float bias1, float bias2,
                   float weight_prior, const float* lr_mult, const float* decay_mask, float* w, const float* g,
                   float* m, float* v) override;
  void count_nonfinite(size_t n, const float* x, double* out) override;
  void box_gather(const BoxGatherArgs& a, const float* src, float* dst) override;
  void box_assign(const BoxAssignArgs& a, const float* boxes, const float* gt, double* scratch, float* out) override;
  void box_targets(const BoxTargetArgs& a, const float* assign, const float* gt, float* y) override;
  void box_select(const ProposalSelectArgs& a, const float* scores, const float* deltas, const float* boxes,
                  double* cand) override;
  void box_nms(const ProposalNmsArgs& a, const double* cand, float* y) override;
};

}  // namespace opendl
