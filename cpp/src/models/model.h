// Model: a Network plus HALCON's model parameters (spec B), the solver state, the model's RNG, and the
// sample adapter of layer-built models (each input layer takes the sample key of its name). Every public
// call validates everything first and changes nothing when it throws.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/rng.h"
#include "graph/network.h"
#include "opendl/model.h"
#include "opendl/tensor.h"

namespace opendl {

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

  Network& net() { return *net_; }
  std::mutex& mutex() { return mu_; }

 private:
  int slot_of(const std::string& layer) const;
  // Validates the samples and packs input layer values into host staging arrays (N, C, H, W).
  std::vector<std::vector<float>> pack(const std::vector<Sample>& batch, const std::vector<int>& inputs,
                                       size_t padded) const;
  void reset_solver_state();
  const BlobSlot& blob(int slot, const std::string& type, bool& gradient) const;
  Tensor to_images(const float* dev, const Shape4& s);

  std::unique_ptr<Network> net_;
  Rng rng_;
  int64_t batch_size_ = 1, multiplier_ = 1;
  double lr_ = 0.001, momentum_ = 0.9, weight_prior_ = 0.0;
  double beta1_ = 0.9, beta2_ = 0.999, adam_eps_ = 1e-8;
  std::string solver_ = "sgd";
  int64_t adam_t_ = 0;
  float* m_ = nullptr;  // SGD velocity / Adam first moment
  float* v_ = nullptr;  // Adam second moment
  bool has_step_ = false;
  std::mutex mu_;
};

}  // namespace opendl
