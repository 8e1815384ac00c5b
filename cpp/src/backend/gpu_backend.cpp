// libopendl's side of the GPU backends (gpu_backend.h): a Backend that forwards every entry to the CUDA plugin's
// backend object under the device's lock, pushes the process-wide GPU settings before each call, and turns the
// plugin's pending error into an opendl::Error after it.
#include "backend/gpu_backend.h"

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>

#include "backend/cuda_loader.h"
#include "core/system.h"
#include "opendl/error.h"

#ifndef OPENDL_BACKEND_ABI
#error "OPENDL_BACKEND_ABI (the fingerprint of backend.h) must be defined by the build"
#endif

namespace opendl {
namespace {

std::atomic<bool> g_tf32{true};
std::atomic<bool> g_cudnn_deterministic{false};
std::atomic<bool> g_graphs{true};

class GpuBackend final : public Backend {
 public:
  GpuBackend(const CudaPlugin& plugin, void* handle, int device)
      : plugin_(plugin), handle_(handle), impl_(static_cast<Backend*>(handle)), device_(device) {}

  std::string name() const override { return "gpu"; }
  // The plugin's layouts (channels-last unless OPENDL_ACTIVATION_LAYOUT says plain); fixed for the process.
  int64_t activation_block() const override { return impl_->activation_block(); }
  int channels_last() const override { return impl_->channels_last(); }
  // Never throws (called from destructors); a failure stays pending for the next call.
  void free(float* p) override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    impl_->free(p);
  }

  void to_plain(const float* blocked, float* plain, const Shape4& s, int64_t block) override {
    return call([&] { return impl_->to_plain(blocked, plain, s, block); });
  }
  void from_plain(const float* plain, float* blocked, const Shape4& s, int64_t block) override {
    return call([&] { return impl_->from_plain(plain, blocked, s, block); });
  }
  float* alloc(size_t count) override {
    return call([&] { return impl_->alloc(count); });
  }
  void fill(float* p, size_t n, float v) override {
    return call([&] { return impl_->fill(p, n, v); });
  }
  void copy(float* dst, const float* src, size_t n) override {
    return call([&] { return impl_->copy(dst, src, n); });
  }
  void upload(float* dst, const float* host, size_t n) override {
    return call([&] { return impl_->upload(dst, host, n); });
  }
  void download(float* host, const float* src, size_t n) override {
    return call([&] { return impl_->download(host, src, n); });
  }
  void conv_forward(const ConvKey& k, Act act, const float* x, const float* w, const float* b, float* y,
                    PreparedWeights* prepared) override {
    return call([&] { return impl_->conv_forward(k, act, x, w, b, y, prepared); });
  }
  void conv_backward(const ConvKey& k, const float* x, const float* dy, const float* w, float* dx, float* dw, float* db,
                     bool accumulate_dx, bool accumulate_dw) override {
    return call([&] { return impl_->conv_backward(k, x, dy, w, dx, dw, db, accumulate_dx, accumulate_dw); });
  }
  size_t pool_workspace_floats(const PoolKey& k) override {
    return call([&] { return impl_->pool_workspace_floats(k); });
  }
  void pool_forward(const PoolKey& k, const float* x, float* y, float* ws, bool training) override {
    return call([&] { return impl_->pool_forward(k, x, y, ws, training); });
  }
  void pool_backward(const PoolKey& k, const float* dy, const float* ws, float* dx, bool accumulate) override {
    return call([&] { return impl_->pool_backward(k, dy, ws, dx, accumulate); });
  }
  void bn_forward(const BnKey& k, float eps, bool training, Act act, const float* x, const float* scale,
                  const float* shift, float* mean, float* var, float* y) override {
    return call([&] { return impl_->bn_forward(k, eps, training, act, x, scale, shift, mean, var, y); });
  }
  void bn_update_running(size_t c, double momentum, double unbias, const float* batch_mean, const float* batch_var,
                         float* mean, float* var, float* count) override {
    return call([&] { return impl_->bn_update_running(c, momentum, unbias, batch_mean, batch_var, mean, var, count); });
  }
  void bn_backward(const BnKey& k, float eps, Act act, const float* x, const float* y, const float* dy,
                   const float* scale, const float* mean, const float* var, float* dx, float* dscale, float* dshift,
                   bool accumulate_dx, bool accumulate_dw) override {
    return call([&] {
      return impl_->bn_backward(k, eps, act, x, y, dy, scale, mean, var, dx, dscale, dshift, accumulate_dx,
                                accumulate_dw);
    });
  }
  void dense_forward(const DenseKey& k, const float* x, const float* w, const float* b, float* y) override {
    return call([&] { return impl_->dense_forward(k, x, w, b, y); });
  }
  void dense_backward_data(const DenseKey& k, const float* dy, const float* w, float* dx, bool accumulate) override {
    return call([&] { return impl_->dense_backward_data(k, dy, w, dx, accumulate); });
  }
  void dense_backward_weights(const DenseKey& k, const float* x, const float* dy, float* dw, float* db,
                              bool accumulate) override {
    return call([&] { return impl_->dense_backward_weights(k, x, dy, dw, db, accumulate); });
  }
  void act_forward(Act a, size_t n, const float* x, float* y) override {
    return call([&] { return impl_->act_forward(a, n, x, y); });
  }
  void act_backward(Act a, size_t n, const float* y, const float* dy, float* dx, bool accumulate) override {
    return call([&] { return impl_->act_backward(a, n, y, dy, dx, accumulate); });
  }
  void pointwise_forward(const PointwiseOp& p, size_t n, const float* x, float* y) override {
    return call([&] { return impl_->pointwise_forward(p, n, x, y); });
  }
  void pointwise_backward(const PointwiseOp& p, size_t n, const float* x, const float* y, const float* dy, float* dx,
                          bool accumulate) override {
    return call([&] { return impl_->pointwise_backward(p, n, x, y, dy, dx, accumulate); });
  }
  void softmax_forward(int64_t outer, int64_t c, int64_t inner, const float* x, float* y) override {
    return call([&] { return impl_->softmax_forward(outer, c, inner, x, y); });
  }
  void softmax_backward(int64_t outer, int64_t c, int64_t inner, const float* y, const float* dy, float* dx,
                        bool accumulate) override {
    return call([&] { return impl_->softmax_backward(outer, c, inner, y, dy, dx, accumulate); });
  }
  void copy2d(float* dst, int64_t dst_ld, int64_t dst_off, const float* src, int64_t src_ld, int64_t src_off,
              int64_t rows, int64_t cols, float alpha, bool accumulate) override {
    return call(
        [&] { return impl_->copy2d(dst, dst_ld, dst_off, src, src_ld, src_off, rows, cols, alpha, accumulate); });
  }
  void axpy(size_t n, float alpha, const float* x, float* y) override {
    return call([&] { return impl_->axpy(n, alpha, x, y); });
  }
  void mul(size_t n, const float* a, const float* b, float* y) override {
    return call([&] { return impl_->mul(n, a, b, y); });
  }
  void mul_acc(size_t n, const float* a, const float* b, float* y, bool accumulate) override {
    return call([&] { return impl_->mul_acc(n, a, b, y, accumulate); });
  }
  void minmax_forward(size_t n, bool is_max, const float* a, const float* b, float* y) override {
    return call([&] { return impl_->minmax_forward(n, is_max, a, b, y); });
  }
  void minmax_backward(size_t n, bool is_max, bool first, const float* a, const float* b, const float* dy, float* dx,
                       bool accumulate) override {
    return call([&] { return impl_->minmax_backward(n, is_max, first, a, b, dy, dx, accumulate); });
  }
  void zoom_forward(const ZoomKey& k, const float* x, float* y) override {
    return call([&] { return impl_->zoom_forward(k, x, y); });
  }
  void zoom_backward(const ZoomKey& k, const float* dy, float* dx, bool accumulate) override {
    return call([&] { return impl_->zoom_backward(k, dy, dx, accumulate); });
  }
  void dropout_forward(const Shape4& s, int64_t block, float p, const uint64_t* step_seed, uint64_t salt,
                       const float* x, float* mask, float* y) override {
    return call([&] { return impl_->dropout_forward(s, block, p, step_seed, salt, x, mask, y); });
  }
  void depth_max_forward(int64_t n, int64_t c, int64_t hw, const float* x, float* argmax, float* value) override {
    return call([&] { return impl_->depth_max_forward(n, c, hw, x, argmax, value); });
  }
  void depth_max_backward(int64_t n, int64_t c, int64_t hw, const float* argmax, const float* dvalue, float* dx,
                          bool accumulate) override {
    return call([&] { return impl_->depth_max_backward(n, c, hw, argmax, dvalue, dx, accumulate); });
  }
  void cross_entropy(int64_t n, int64_t c, int64_t s, const float* p, const float* target, const float* weights,
                     int64_t weights_s, float* dp, float scale, bool accumulate, const LossOut& out) override {
    return call([&] { impl_->cross_entropy(n, c, s, p, target, weights, weights_s, dp, scale, accumulate, out); });
  }
  void huber(size_t n, float beta, const float* x, const float* t, const float* w, const LossNorm& norm, float* dx,
             float scale, bool accumulate, const LossOut& out) override {
    return call([&] { impl_->huber(n, beta, x, t, w, norm, dx, scale, accumulate, out); });
  }
  void focal_binary(int64_t n, int64_t c, int64_t s, float gamma, const float* alpha, const float* x, const float* t,
                    bool t_ids, const float* w, int64_t w_c, const LossNorm& norm, float* dx, float scale,
                    bool accumulate, const LossOut& out) override {
    return call([&] {
      impl_->focal_binary(n, c, s, gamma, alpha, x, t, t_ids, w, w_c, norm, dx, scale, accumulate, out);
    });
  }
  void distance(size_t n, bool l1, const float* x, const float* t, const float* w, const LossNorm& norm, float* dx,
                float scale, bool accumulate, const LossOut& out) override {
    return call([&] { impl_->distance(n, l1, x, t, w, norm, dx, scale, accumulate, out); });
  }
  void sum_squares_masked(size_t n, const float* x, const float* mask, double* out) override {
    return call([&] { impl_->sum_squares_masked(n, x, mask, out); });
  }
  void sgd_update(size_t n, float lr, float momentum, float weight_prior, const float* lr_mult, const float* decay_mask,
                  float* w, const float* g, float* v) override {
    return call([&] { return impl_->sgd_update(n, lr, momentum, weight_prior, lr_mult, decay_mask, w, g, v); });
  }
  void adam_update(size_t n, float lr, double beta1, double beta2, float eps, float bias1, float bias2,
                   float weight_prior, const float* lr_mult, const float* decay_mask, float* w, const float* g,
                   float* m, float* v) override {
    return call([&] {
      return impl_->adam_update(n, lr, beta1, beta2, eps, bias1, bias2, weight_prior, lr_mult, decay_mask, w, g, m, v);
    });
  }
  void box_gather(const BoxGatherArgs& a, const float* src, float* dst) override {
    return call([&] { impl_->box_gather(a, src, dst); });
  }
  void box_assign(const BoxAssignArgs& a, const float* boxes, const float* gt, double* scratch, float* out) override {
    return call([&] { impl_->box_assign(a, boxes, gt, scratch, out); });
  }
  void box_targets(const BoxTargetArgs& a, const float* assign, const float* gt, float* y) override {
    return call([&] { impl_->box_targets(a, assign, gt, y); });
  }
  void box_select(const ProposalSelectArgs& a, const float* scores, const float* deltas, const float* boxes,
                  double* cand) override {
    return call([&] { impl_->box_select(a, scores, deltas, boxes, cand); });
  }
  void box_nms(const ProposalNmsArgs& a, const double* cand, float* y) override {
    return call([&] { impl_->box_nms(a, cand, y); });
  }
  void count_nonfinite(size_t n, const float* x, double* out) override {
    return call([&] { impl_->count_nonfinite(n, x, out); });
  }

  // Recording: the device stays locked from graph_begin to graph_end, so that no other thread's calls (another
  // model on the same device) end up in the recording; the recording thread's own calls lock recursively.
  bool graph_supported() const override { return true; }
  void graph_begin() override {
    std::unique_lock<std::recursive_mutex> lock(mu_);
    call([&] { impl_->graph_begin(); });
    recording_lock_ = std::move(lock);  // released by graph_end
  }
  uint64_t graph_end() override {
    std::unique_lock<std::recursive_mutex> lock(mu_);
    if (recording_lock_.owns_lock()) recording_lock_.unlock();
    return call([&] { return impl_->graph_end(); });
  }
  void graph_launch(uint64_t id) override {
    return call([&] { impl_->graph_launch(id); });
  }
  void graph_destroy(uint64_t id) override {
    return call([&] { impl_->graph_destroy(id); });
  }
  uint64_t graph_epoch() const override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    return impl_->graph_epoch();
  }
  int64_t conv_plans(bool channels_last) const override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    return impl_->conv_plans(channels_last);
  }

 private:
  // Runs one plugin entry: lock, settings, call, then the plugin's pending error (if any) as an opendl::Error.
  template <class F>
  auto call(F&& f) -> decltype(f()) {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    const int tf32 = gpu_tf32() ? 1 : 0, det = cudnn_deterministic() || thread_deterministic() ? 1 : 0;
    if (tf32 != tf32_ || det != det_) {
      plugin_.backend_set_options(handle_, tf32, det);
      tf32_ = tf32;
      det_ = det;
    }
    if constexpr (std::is_void_v<decltype(f())>) {
      f();
      check();
    } else {
      auto r = f();
      check();
      return r;
    }
  }
  void check() {
    char err[1024];
    const int code = plugin_.backend_take_error(handle_, err, sizeof err);
    if (code != 0) fail(code, "GPU " + std::to_string(device_) + ": " + err);
  }

  const CudaPlugin& plugin_;
  void* handle_;
  Backend* impl_;
  int device_;
  mutable std::recursive_mutex mu_;
  std::unique_lock<std::recursive_mutex> recording_lock_;  // held from graph_begin to graph_end
  int tf32_ = -1, det_ = -1;
};

}  // namespace

Backend& gpu_backend(int device) {
  static std::mutex mu;
  // Leaked on purpose: the plugin's CUDA objects must not be destroyed during static destruction.
  static auto* backends = new std::map<int, GpuBackend*>();
  const CudaPlugin& plugin = require_cuda_plugin();
  std::lock_guard<std::mutex> lock(mu);
  auto it = backends->find(device);
  if (it != backends->end()) return *it->second;
  if (device < 0 || size_t(device) >= plugin.devices.size())
    fail(err::kWrongValue2, "GPU id " + std::to_string(device) + " does not exist (" +
                                std::to_string(plugin.devices.size()) + " CUDA device(s) found)");
  char err[1024];
  void* handle = nullptr;
  const int code = plugin.backend_create(device, OPENDL_BACKEND_ABI, &handle, err, sizeof err);
  if (code != 0) fail(code, "creating the backend of GPU " + std::to_string(device) + ": " + err);
  auto* b = new GpuBackend(plugin, handle, device);
  (*backends)[device] = b;
  return *b;
}

void set_gpu_tf32(bool on) { g_tf32 = on; }
bool gpu_tf32() { return g_tf32; }
void set_cudnn_deterministic(bool on) { g_cudnn_deterministic = on; }
bool cudnn_deterministic() { return g_cudnn_deterministic; }
void set_gpu_graphs(bool on) { g_graphs = on; }
bool gpu_graphs() { return g_graphs; }

}  // namespace opendl
