// Layer: one node of the network graph. A layer holds its validated HALCON parameters (checked against its
// type's parameter table), infers its output shape, declares its learnable blobs and scratch buffers, and
// implements forward and backward by calling the backend. Layer types register themselves in a registry
// (register_layer_type) so that no central switch needs editing when a layer is added.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/rng.h"
#include "core/shape.h"
#include "opendl/error.h"
#include "opendl/tuple.h"

namespace opendl {

class Backend;
struct PreparedWeights;
enum class Act : int64_t;
class Layer;
using LayerPtr = std::shared_ptr<Layer>;
using ParamMap = std::map<std::string, Tuple>;

// One parameter of a layer type: positional (an operator argument) or generic (GenParamName/Value).
struct ParamSpec {
  enum class Kind { kInt, kReal, kNumber, kString, kIntOrString, kNumberOrString };
  std::string name;
  Kind kind = Kind::kInt;
  size_t min_len = 1, max_len = 1;    // tuple length bounds
  Tuple dflt;                         // value when a generic parameter is not given
  std::vector<std::string> choices;   // allowed strings, if any
  double lo = -1e300, hi = 1e300;     // allowed numeric range (inclusive)
  bool positional = false;
};

// Role of a learnable or persistent array owned by a layer.
enum class BlobRole { kWeights, kBias, kState };  // kState: statistics, saved but not trained
enum class Filler { kXavier, kMsra, kConst, kZero, kOne };

struct BlobSpec {
  std::string name;                 // 'weights', 'bias', 'moving_mean', 'moving_variance'
  std::vector<int64_t> shape;       // as exchanged with users
  BlobRole role = BlobRole::kWeights;
  Filler filler = Filler::kXavier;
  double fan_in = 1, fan_out = 1;   // for Xavier/MSRA
  std::string variance_norm = "norm_in";
  double const_val = 0.0;
  double lr_mult = 1.0;
};

// Buffers handed to a layer for one forward/backward call. Gradients of inputs are written (overwritten)
// when accumulate_dx[i] is false and added when true; parameter gradients likewise with accumulate_dw.
struct LayerIO {
  std::vector<const float*> x;
  std::vector<Shape4> xs;
  std::vector<int64_t> xb;          // channel block of each input (and its gradient); 0: plain (see backend.h)
  int64_t yb = 0;                   // channel block of y and dy
  std::vector<float*> dx;           // nullptr: no gradient needed for that input
  std::vector<bool> accumulate_dx;
  float* y = nullptr;
  Shape4 ys;
  const float* dy = nullptr;
  std::vector<float*> w;            // blobs, in blob_specs() order
  std::vector<float*> dw;           // gradient of trainable blobs (nullptr for state blobs)
  bool accumulate_dw = false;
  std::vector<float*> scratch;      // persistent per-layer buffers, scratch_sizes() order
  std::vector<const float*> constants;  // the layer's constants() on the device, in that order
  bool training = false;
  Rng* rng = nullptr;
  // Training: the step's random seed in device memory (set by the caller before each forward pass, outside any
  // recording), and a value unique to the layer within the network to mix into it.
  const uint64_t* step_seed = nullptr;
  uint64_t salt = 0;
  Backend* be = nullptr;
  // Inference-only plans: the layer's weights kept in the backend's form between calls (see backend.h).
  PreparedWeights* prepared = nullptr;
  // Loss layers only: gradient scale (loss_weight / batch_size_multiplier), and where forward writes the value
  // besides y: a training step's double-precision sum (loss_sum, null outside training; added to when
  // accumulate_loss).
  float loss_scale = 1.f;
  double* loss_sum = nullptr;
  bool accumulate_loss = false;
};

struct LayerTypeInfo;

class Layer {
 public:
  virtual ~Layer() = default;

  const std::string& type() const { return type_; }
  const std::string& name() const { return name_; }
  const std::vector<LayerPtr>& inputs() const { return inputs_; }
  const ParamMap& params() const { return params_; }
  const Shape4& shape() const { return shape_; }  // output shape at batch size 1 (or the input's batch)

  // Validated parameter access.
  const Tuple& param(const std::string& k) const;
  int64_t int_param(const std::string& k, size_t i = 0) const;
  double real_param(const std::string& k, size_t i = 0) const;
  std::string str_param(const std::string& k, size_t i = 0) const;
  bool bool_param(const std::string& k) const;  // 'true'/'false' or 1/0

  // Called once after parameters are set and validated: derived checks and cached fields.
  virtual void configure() {}
  // Output shape from input shapes; throws Error naming the offending shape.
  virtual Shape4 infer(const std::vector<Shape4>& in) const = 0;
  // Learnable and persistent blobs for the given input shapes.
  virtual std::vector<BlobSpec> blob_specs(const std::vector<Shape4>& /*in*/) const { return {}; }
  // Persistent scratch buffers (floats) needed between forward and backward.
  virtual std::vector<int64_t> scratch_sizes(const std::vector<Shape4>& /*in*/, const Shape4& /*out*/) const {
    return {};
  }
  // Values the layer reads at every call that depend only on its parameters and shapes (anchors, class
  // weights): uploaded once when the network's buffers are allocated, so no call transfers them.
  virtual std::vector<std::vector<float>> constants(const std::vector<Shape4>& /*in*/, const Shape4& /*out*/) const {
    return {};
  }
  virtual void forward(LayerIO& io) = 0;
  virtual void backward(LayerIO& io) = 0;

  // Which activation layouts the layer's forward and backward handle (the network plans blocked layouts only
  // where every layer touching a tensor handles them): plain only; the same layout for all inputs and the
  // output (pointwise-like layers); or any layout for the input and, independently, the output (convolution).
  enum class Layouts { kPlainOnly, kSame, kAny };
  virtual Layouts layouts() const { return Layouts::kPlainOnly; }

  // Inference plans (Network::set_inference_only) fuse what follows a layer into its forward pass: a batch
  // normalisation folded into its weights with the normalisation's ReLU, and the sum of a residual connection
  // (what io.y already holds is added) with an optional ReLU after it. can_fuse: whether the layer takes these
  // (it has no activation of its own); forward_fused runs it with io.w = {weights, bias} (folded, or its own;
  // no bias when io.w has one entry), `relu` after the layer's output, then `sum` (0 none, 1 add io.y, 2 add
  // and a ReLU).
  virtual bool can_fuse() const { return false; }
  // Whether forward_fused with `relu` (and no sum) applies a ReLU to the layer's output (a following ReLU layer
  // merged into it: fuse_conv_relu / fuse_bn_relu); convolutions without activation and batch normalisations.
  virtual bool can_fuse_relu() const { return can_fuse(); }
  virtual void forward_fused(LayerIO& /*io*/, bool /*relu*/, int64_t /*sum*/) {}
  // A ReLU layer's pointwise function as the backend's fusable activation (Act::kRelu), else kNone.
  virtual Act fusable_activation() const;

  // Whether the layer's training forward and backward, for its current parameters and input shapes, issue the
  // same backend calls on the same buffers at every step and take no values from the host (random seeds, values
  // uploaded or downloaded), so that a training step can be recorded once and replayed (a CUDA graph).
  virtual bool capturable(const std::vector<Shape4>& /*in*/) const { return true; }

  // Whether training forward passes draw random numbers (from LayerIO::step_seed).
  virtual bool uses_step_seed() const { return false; }
  virtual bool is_input() const { return false; }
  virtual bool is_loss() const { return false; }
  // Which inputs receive gradients (targets and weights of losses do not).
  virtual bool input_needs_grad(size_t /*i*/) const { return true; }
  // Weight of a loss layer in total_loss.
  virtual double loss_weight() const { return 0.0; }
  // Validates batch values before anything runs; host[i] is set for inputs fed directly by input layers
  // (e.g. the target ids of a loss), nullptr otherwise. Throws Error naming the bad value.
  virtual void check_inputs(const std::vector<const float*>& /*host*/, const std::vector<Shape4>& /*xs*/) const {}
  // Extra read-only values for get_dl_layer_param beyond the stored parameters.
  virtual bool extra_param(const std::string& /*k*/, Tuple& /*out*/) const { return false; }

  // Framework internals (set by create_layer / clone).
  std::string type_, name_;
  std::vector<LayerPtr> inputs_;
  ParamMap params_;
  Shape4 shape_;
  const LayerTypeInfo* info_ = nullptr;
};

struct LayerTypeInfo {
  std::string type;              // HALCON's type name, e.g. 'convolution'
  int min_inputs = 1, max_inputs = 1;
  std::vector<ParamSpec> params; // positional first (in operator order), then generic ones
  std::function<LayerPtr()> make;
};

void register_layer_type(LayerTypeInfo info);
const LayerTypeInfo& layer_type(const std::string& type);

// Creates, validates and shape-infers a layer. Throws Error naming the bad parameter, with HALCON's code for its
// position: `first_position` is the (1-based) operator parameter of positional[0] (3 for create_dl_layer_* of one
// input layer: input, layer_name, ...); gen_param_name and gen_param_value follow the positional ones.
LayerPtr create_layer(const std::string& type, const std::vector<LayerPtr>& inputs, const std::string& name,
                      const std::vector<Tuple>& positional, const Tuple& gen_names, const Tuple& gen_values,
                      int first_position = 3);
// Re-creates a layer from its stored parameters (model files, architecture changes); every value is validated
// against the type's table as at creation, so a damaged file cannot build an invalid layer.
LayerPtr restore_layer(const std::string& type, const std::vector<LayerPtr>& inputs, const std::string& name,
                       const ParamMap& params);
// Deep copy of a layer with new inputs (used by create_dl_model so a model owns its graph).
LayerPtr clone_layer(const Layer& l, const std::vector<LayerPtr>& new_inputs);

// Registration helper: `static LayerRegistrar reg{ {...} };` in each layer file.
struct LayerRegistrar {
  explicit LayerRegistrar(LayerTypeInfo info) { register_layer_type(std::move(info)); }
};

// Common generic parameters shared by layers with weights (HALCON's filler/learning-rate options).
std::vector<ParamSpec> filler_param_specs(bool with_bias);
// Applies those generic parameters to a BlobSpec.
void apply_filler_params(const Layer& l, BlobSpec& s, bool bias);

// Helpers for parameter tables.
// Upper bounds of integer layer parameters: window geometry (kernel size, stride, dilation, padding, zoom size)
// beyond any image extent a network sees, and counts (kernels, groups, outputs) within 32-bit signed, the
// index type of cuDNN. Larger values are refused when the layer is created instead of failing in the backend.
constexpr double kMaxGeometry = 1 << 20;
constexpr double kMaxCount = 2147483647.0;
ParamSpec pos_int(const std::string& n, size_t min_len = 1, size_t max_len = 1, double lo = -1e300, double hi = 1e300);
ParamSpec pos_real(const std::string& n, double lo = -1e300, double hi = 1e300);
ParamSpec pos_str(const std::string& n, std::vector<std::string> choices);
ParamSpec gen(const std::string& n, ParamSpec::Kind k, Tuple dflt, std::vector<std::string> choices = {},
              double lo = -1e300, double hi = 1e300, size_t min_len = 1, size_t max_len = 1);

}  // namespace opendl
