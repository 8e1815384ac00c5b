// Model: a Network plus HALCON's model parameters (spec B), the solver state, the model's RNG, a type adapter
// (generic for layer-built models, classification, ...) and the user's meta_data dict. Every public call
// validates everything first and changes nothing when it throws; architecture changes (classes, image size)
// build the new network completely before swapping it in.
#pragma once

#include <array>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/rng.h"
#include "graph/network.h"
#include "models/adapter.h"
#include "opendl/dict.h"
#include "opendl/model.h"
#include "opendl/tensor.h"

namespace opendl {

// A layer as stored in a model file and edited by architecture changes.
struct LayerDesc {
  std::string type, name;
  std::vector<std::string> inputs;
  ParamMap params;
};

class Model {
 public:
  explicit Model(const std::vector<LayerPtr>& outputs);
  ~Model();

  void set_param(const std::string& name, const Tuple& value);
  Tuple get_param(const std::string& name);

  TrainResult train_batch(const std::vector<Sample>& batch);
  std::vector<Result> apply(const std::vector<Sample>& batch, const std::vector<std::string>& outputs);

  Tensor get_weights(const std::string& layer, const std::string& type);
  void set_weights(const Tensor& w, const std::string& layer, const std::string& type);
  Tensor activations(const std::string& layer);
  Tensor gradients(const std::string& layer);
  LayerPtr layer(const std::string& name);

  // Files and copies (model_io.cpp). to_dict holds everything needed to continue training bit-exactly:
  // architecture, weights, statistics, solver moments, hyper-parameters and the RNG state.
  DictPtr to_dict();
  static std::shared_ptr<Model> from_dict(const Dict& d, int code);
  // Copies the weights of layers whose name, type and blob shapes match; returns one count per target layer.
  std::vector<int64_t> load_weights_from(Model& src);

  // Architecture (model_io.cpp): the current graph as descriptions, and a rebuild from edited descriptions.
  // Blobs whose layer name, blob name and shape are unchanged keep their values and solver state; others are
  // initialised from their fillers. Throws (leaving the model unchanged) when the new graph is invalid.
  // `outputs` names the new graph's output layers (empty: those of the current graph).
  std::vector<LayerDesc> describe() const;
  // `backend` (null: the current one) is where the new network lives: a rebuild onto another backend moves the
  // model between devices.
  void rebuild(const std::vector<LayerDesc>& layers, const std::vector<std::string>& outputs = {},
               Backend* backend = nullptr);
  // Moves weights, statistics and solver state losslessly to runtime 'cpu' or 'gpu' (CUDA device `gpu`); the
  // gradients of the last step are dropped. Throws, leaving the model where it was, when the device is unusable.
  void move_to(const std::string& runtime, int64_t gpu);

  void set_adapter(std::unique_ptr<ModelAdapter> a) { adapter_ = std::move(a); }
  ModelAdapter& adapter() const { return *adapter_; }
  DictPtr meta_data() const { return meta_; }
  void set_meta_data(DictPtr d) { meta_ = d ? std::move(d) : std::make_shared<Dict>(); }
  Network& net() { return *net_; }
  const Network& net() const { return *net_; }
  int64_t batch_size() const { return batch_size_; }
  std::mutex& mutex() { return mu_; }
  // optimize_dl_model_for_inference's mark on its copies ('precision_is_converted').
  void set_converted(bool on) { converted_ = on; }

  // How the training steps ran on a backend that records them (Backend::graph_*): micro-batches replayed from a
  // recording, recordings made, and whether the current network cannot be recorded (a layer that is not
  // capturable, or a recording the backend refused).
  struct GraphStats {
    int64_t replayed = 0, recorded = 0;
    bool refused = false;
  };
  GraphStats graph_stats() const;

 private:
  Model() = default;
  // `code`: the error code for an unknown layer (HALCON's codes name the parameter position: 1302, 1303, ...).
  int slot_of(const std::string& layer, int code = 1302) const;
  // Validates the samples and packs input layer values into host staging arrays (N, C, H, W).
  std::vector<std::vector<float>> pack(const std::vector<Sample>& batch, const std::vector<int>& inputs,
                                       size_t padded) const;
  void reset_solver_state();
  void require_activations() const;
  void alloc_solver_state();
  const BlobSlot& blob(int slot, const std::string& type, bool& gradient, int code = 1303) const;
  Tensor to_images(size_t slot, bool gradient);  // slot's output or gradient as (N, H, W, C)
  std::vector<std::string> output_names() const;
  // One micro-batch's forward and backward (`body`) through a recording of the backend, when it records: the
  // first step at a new fingerprint runs directly (the backend picks its algorithms and sizes its buffers), the
  // second is recorded and replayed, later ones are replayed. Returns false when `body` is to run directly.
  bool run_recorded(bool accumulating, const std::function<void()>& body);
  void drop_graphs();

  std::unique_ptr<Network> net_;
  std::unique_ptr<ModelAdapter> adapter_;
  DictPtr meta_ = std::make_shared<Dict>();
  Rng rng_;
  int64_t batch_size_ = 1, multiplier_ = 1;
  double lr_ = 0.001, momentum_ = 0.9, weight_prior_ = 0.0;
  double beta1_ = 0.9, beta2_ = 0.999, adam_eps_ = 1e-8;
  std::string solver_ = "sgd";
  int64_t adam_t_ = 0;
  int64_t gpu_ = 0;  // CUDA device index for runtime gpu
  std::string runtime_ = "cpu";
  float* m_ = nullptr;  // SGD velocity / Adam first moment
  float* v_ = nullptr;  // Adam second moment
  bool has_step_ = false;
  bool converted_ = false;
  // Recorded training micro-batches: [0] the first (gradients overwritten), [1] later ones (accumulated). A
  // recording is valid for its key: the network's buffer epoch, the backend's graph epoch, config_version_
  // (changed by every set_param but the solver's), the input-gradient setting and the batch size multiplier
  // (the loss scale).
  struct StepGraph {
    Backend* be = nullptr;
    uint64_t id = 0;
    std::array<uint64_t, 5> key{};
    int64_t direct_runs = 0;
    bool refused = false;
  };
  std::array<StepGraph, 2> graphs_{};
  uint64_t config_version_ = 0;
  int64_t graph_replays_ = 0, graph_recordings_ = 0;
  std::mutex mu_;
};

}  // namespace opendl
