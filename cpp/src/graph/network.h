// Network: the compiled layer graph of a model. It owns a private copy of the layers (so handles a user
// keeps do not alias the model), executes them in topological order, keeps one flat arena for all learnable
// blobs (trainable ones first, then persistent state such as batch-norm statistics), one arena for their
// gradients, and per-layer activation, gradient and scratch buffers sized for the current batch size. The
// gradients of the layer outputs share one arena planned by liveness over the backward pass unless all of them
// are kept for inspection (set_keep_gradients).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "graph/layer.h"

namespace opendl {

// Blocked activation layouts (on by default where the backend has one): a tensor is kept in the backend's
// channel-blocked or channels-last layout (Backend::activation_block) when the convolutions producing or reading it run on that layout and every other layer
// touching it handles it (Layer::layouts), so no reorder runs between those layers; model inputs and outputs,
// and everything next to a plain-only layer, stay plain. Process-wide; applies to networks sized afterwards.
void set_blocked_layouts(bool on);
bool blocked_layouts();

struct BlobSlot {
  BlobSpec spec;
  size_t offset = 0;  // in params (and grads for trainable blobs)
  size_t size = 0;
};

// Weight sharing (layer gen param 'weights_shared_with'): a layer naming another layer of the same type and
// blob shapes gets that layer's blob offsets, so both read the same weights, the solver updates them once,
// and their gradients add up (whichever of them runs backward first overwrites, the others accumulate).

struct LayerSlot {
  LayerPtr layer;
  std::vector<int> inputs;        // indices into layers_
  std::vector<int> consumers;
  Shape4 shape;                   // output shape at the current batch size
  std::vector<Shape4> in_shapes;
  std::vector<BlobSlot> blobs;
  int blob_owner = -1;            // slot whose blobs these are (weight sharing); -1: its own
  int64_t block = 0;              // channel block of y and dy (0: plain, C: channels-last), see backend.h
  float* y = nullptr;
  float* dy = nullptr;
  std::vector<float*> scratch;
  std::vector<int64_t> scratch_sizes;
  std::vector<float*> constants;  // Layer::constants, uploaded at allocation
};

class Network {
 public:
  Network(const std::vector<LayerPtr>& outputs, Backend& be);
  ~Network();
  Network(const Network&) = delete;
  Network& operator=(const Network&) = delete;

  // Re-infers all shapes for batch size n, plans the activation layouts and re-allocates activation buffers
  // (weights are kept).
  void set_batch_size(int64_t n);

  // The buffers of slot i for one forward / backward call (inputs, output, blobs, scratch, layouts).
  LayerIO io(size_t i, bool training, Rng* rng);
  // Slot i's output (or its gradient) in the plain (N, C, H, W) layout, on the host.
  void download_plain(size_t i, bool gradient, float* host);
  int64_t batch_size() const { return batch_size_; }

  // Initialises every blob from its filler with the given RNG (He/Xavier as HALCON documents).
  void init_params(Rng& rng);

  // Training forward passes also write each loss layer's value to step_values() (added to it when
  // accumulate_losses: a later micro-batch).
  void forward(bool training, Rng& rng, bool accumulate_losses = false);
  // The forward pass of one (non-input) layer, e.g. of the layers an inference call needs.
  void forward_layer(size_t i, bool training, Rng* rng, bool accumulate_losses = false);
  // Backward from all loss layers, each scaled by `loss_scale` * its loss weight. Parameter gradients are
  // overwritten, or added when accumulate_dw (gradient accumulation over batch_size_multiplier).
  void backward(float loss_scale, bool accumulate_dw);

  std::vector<LayerSlot>& slots() { return slots_; }
  const std::vector<LayerSlot>& slots() const { return slots_; }
  int find(const std::string& name) const;  // -1 if absent
  const std::vector<int>& outputs() const { return outputs_; }
  std::vector<int> loss_layers() const;
  std::vector<int> input_layers() const;

  // A device buffer of loss_layers().size() + 2 doubles for the results of a training step, read back at once:
  // the loss layers' values summed over the micro-batches (written by forward), then two for the caller (the
  // regularisation and the gradient check); null in inference-only mode.
  double* step_values() { return step_values_; }
  // The training step's random seed (device memory, after step_values), read by layers that draw random numbers
  // (Layer::uses_step_seed); null in inference-only mode. uses_step_seed(): whether a training step needs it.
  uint64_t* step_seed() { return step_seed_; }
  bool uses_step_seed() const;
  // Changes whenever any buffer of the network is reallocated (batch size, gradient keeping, inference mode),
  // unique over all networks of the process: a recorded training step is valid for one epoch only.
  uint64_t buffer_epoch() const { return buffer_epoch_; }
  // Whether every layer a training step runs can be recorded and replayed (Layer::capturable) at the current
  // shapes.
  bool capturable() const;
  // Training forward passes run only the layers the loss layers depend on (box proposals, say, or an extra
  // output do not change the losses); `in_training(i)` says whether slot i is among them.
  bool in_training(size_t i) const { return in_training_[i]; }
  // The layers the last call (training step or inference) computed: their outputs are that call's. set_last_run
  // records an inference call's layers (Model::apply); forward() records its own, and set_last_run_training marks
  // a replayed training step's.
  void set_last_run(std::vector<bool> ran) { last_run_ = std::move(ran); }
  void set_last_run_training() { last_run_ = in_training_; }
  // No call has run since the activation buffers were (re)allocated: no layer holds an output.
  bool has_run() const { return !last_run_.empty(); }
  bool ran_last(size_t i) const { return has_run() && (slots_[i].layer->is_input() || last_run_[i]); }

  // Floats of the trainable part of the parameter arena (blobs 64-byte aligned, so with padding), and the number
  // of trainable values in it (the model's 'num_trainable_params').
  size_t num_trainable() const { return n_train_; }
  size_t num_trainable_values() const { return n_values_; }
  size_t num_params() const { return n_total_; }
  // Any caller may write through it: the folded inference weights are recomputed after each hand-out.
  float* params() {
    ++params_version_;
    return params_;
  }
  float* grads() { return grads_; }
  const float* lr_mult() const { return lr_mult_; }
  const float* decay_mask() const { return decay_mask_; }
  Backend& backend() { return be_; }

  // Gradients with respect to input layers are computed only when enabled (they cost a backward-data pass
  // of the first layer and are needed only for inspection and gradient checks).
  void set_input_gradients(bool on) { input_grads_ = on; }
  bool input_gradients() const { return input_grads_ || keep_grads_; }

  // Gradient buffers of training. By default (off) the output gradient of every non-input layer lives in one
  // arena planned by liveness over the backward pass: layer j's gradient is alive from the backward step of
  // its last consumer that passes a gradient to it (the first to write it) to j's own backward step (the last
  // to read it), i.e. over the slot interval [j, last consumer]; tensors whose intervals intersect get
  // disjoint places, found greedily as for inference plans. So after a step these gradients are overwritten,
  // and layers through which no gradient flows have none. On: every layer keeps its own gradient buffer, input
  // layers included (their gradients are computed then), so that any layer's gradient of the last step can be
  // read (model parameter 'keep_layer_gradients'). Switching reallocates the activation buffers (their values
  // are lost); weights and everything else are kept.
  void set_keep_gradients(bool on);
  bool keep_gradients() const { return keep_grads_; }
  // Whether slot i's output gradient of the last backward pass can be read.
  bool gradient_kept(size_t i) const;

  // Per-layer wall time of forward and backward calls, accumulated while profiling is on (native benchmark's
  // --profile; off by default, it costs two clock reads per layer call). Indexed like slots().
  struct LayerTime {
    double forward_s = 0, backward_s = 0;
    int64_t forward_calls = 0, backward_calls = 0;
  };
  void set_profiling(bool on) {
    profiling_ = on;
    times_.assign(slots_.size(), LayerTime{});
  }
  const std::vector<LayerTime>& layer_times() const { return times_; }

  // Inference-only execution (model parameter 'optimize_for_inference'). No gradient buffers are held, and the
  // outputs of the layers an inference call runs share one arena planned by liveness: offsets are assigned
  // greedily by size (largest first, lowest offset that no tensor alive at the same time overlaps); a tensor
  // is alive from the step that writes it to the last step that reads it, or to the end of the call for the
  // layers the caller keeps readable. A convolution (without activation) whose only consumer is a batch
  // normalisation runs with the normalisation's inference map folded into its weights and bias,
  //   w' = w * gamma / sqrt(var + eps),  b' = (b - mean) * gamma / sqrt(var + eps) + beta,
  // and the normalisation's ReLU as a post-op, writing straight into the normalisation's output; the folded
  // weights are recomputed (in double) whenever the parameters may have changed (params() was handed out).
  // Switching reallocates the activation buffers; weights and everything else are kept.
  void set_inference_only(bool on);
  bool inference_only() const { return inference_only_; }
  // Runs the (non-input) layers marked in `needed`, in order, of which those in `keep` stay readable after
  // the call; the plan is cached per (needed, keep). Inference-only mode only.
  void run_inference(const std::vector<bool>& needed, const std::vector<int>& keep, Rng& rng);
  // Whether slot i's output of the last forward or inference call can be read (always, unless inference-only).
  bool output_kept(size_t i) const;
  // Bytes of activation, gradient and scratch buffers now held (inference-only: of the planned arena; training:
  // the planned gradient arena counted once).
  size_t buffer_bytes() const;
  // Names of the batch normalisations the current inference plan folds into convolutions, and of those any
  // plan folds unless an apply call asks for the convolution's own output.
  std::vector<std::string> folded_layers() const;
  std::vector<std::string> foldable_layers() const;
  // Names of the residual sums and ReLU layers the current inference plan computes in the layer before them
  // (a convolution's post-ops, a batch normalisation's ReLU), and of those a plan fuses when an apply call asks
  // for the model's outputs alone.
  std::vector<std::string> fused_layers() const;
  std::vector<std::string> fusable_layers() const;
  // HALCON's 'fuse_conv_relu' / 'fuse_bn_relu': whether inference plans merge a ReLU layer into the convolution
  // (without activation, folded normalisation included) or the batch normalisation before it, when that layer's
  // output is read by the ReLU alone and not kept. Both on by default.
  void set_relu_fusion(bool conv, bool bn);
  bool fuse_conv_relu() const { return fuse_conv_relu_; }
  bool fuse_bn_relu() const { return fuse_bn_relu_; }

 private:
  void free_activations();
  void allocate_parameters();
  void allocate_activations(int64_t n, const std::vector<Shape4>& shapes,
                            const std::vector<std::vector<Shape4>>& in_shapes, const std::vector<int64_t>& blocks);
  std::vector<int64_t> plan_layouts(const std::vector<Shape4>& shapes) const;
  Backend& be_;
  std::vector<LayerSlot> slots_;
  std::vector<int> outputs_;
  int64_t batch_size_ = 0;
  size_t n_train_ = 0, n_total_ = 0, n_values_ = 0;
  float* params_ = nullptr;
  float* grads_ = nullptr;
  float* lr_mult_ = nullptr;
  float* decay_mask_ = nullptr;
  std::vector<float*> owned_;     // activation buffers
  double* step_values_ = nullptr;  // owned_ holds it too
  uint64_t* step_seed_ = nullptr;  // in step_values_' buffer
  std::vector<int> loss_index_;    // per slot: its index among the loss layers, else -1
  uint64_t buffer_epoch_ = 0;
  std::vector<bool> in_training_, last_run_;
  size_t owned_floats_ = 0;
  uint64_t params_version_ = 1;
  // Inference-only state: the plan (see set_inference_only) and the folded weights per convolution slot.
  struct Fold {
    float* w = nullptr;
    float* b = nullptr;
    uint64_t version = 0;  // params_version_ the values were computed from
    bool relu = false;     // the normalisation's activation, run as the convolution's post-op
  };
  void free_folds();
  // The convolution slot batch normalisation slot b can be folded into (its only reader, not a model
  // output), or -1.
  int fold_source(size_t b) const;
  // Which layers an inference plan merges into convolutions (see set_inference_only), for the layers run
  // (`needed`) and those whose output stays readable (`keeping`).
  struct Fusions {
    std::vector<int> fold_bn;     // per convolution slot: the batch normalisation folded into it, else -1
    std::vector<bool> folded;     // per slot: a batch normalisation folded into its input convolution
    std::vector<int> dest;        // per convolution slot: the residual sum (or ReLU after it) it computes, else -1
    std::vector<int64_t> sum;     // per convolution slot: 1 adds the residual, 2 adds it and applies a ReLU
    std::vector<bool> relu;       // per slot: a following ReLU layer merged in (dest is that layer)
    std::vector<bool> fused;      // per slot: a sum or ReLU computed by a convolution's post-ops
    std::vector<int> storage;     // per slot: the slot whose buffer holds its value (a sum: its residual's)
    std::vector<int> step;        // per slot: the step (slot index) that computes its value
  };
  Fusions plan_fusions(const std::vector<bool>& needed, const std::vector<bool>& keeping) const;
  std::vector<std::string> names_where(const std::vector<bool>& marked) const;  // the marked slots' layer names
  void plan_inference(const std::vector<bool>& needed, const std::vector<int>& keep);
  void refresh_fold(int conv, int bn);
  bool inference_only_ = false;
  bool planned_ = false;
  bool fuse_conv_relu_ = true, fuse_bn_relu_ = true;
  std::vector<bool> plan_needed_;
  std::vector<int> plan_keep_;
  Fusions fus_;                   // of the current plan
  std::vector<bool> kept_;        // per slot: output readable after the call
  std::vector<PreparedWeights> prepared_;  // per slot: weights in the backend's form for inference calls
  std::map<int, Fold> folds_;
  float* arena_ = nullptr;
  size_t arena_floats_ = 0;
  float* grad_arena_ = nullptr;   // the planned output gradients of training (unless keep_grads_)
  size_t grad_arena_floats_ = 0;
  bool keep_grads_ = false;
  bool input_grads_ = false;
  bool profiling_ = false;
  std::vector<LayerTime> times_;
};

}  // namespace opendl
