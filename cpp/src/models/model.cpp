// Model parameters, the training step (validate, micro-batches with gradient accumulation, one solver
// update) and inference of layer-built models.
#include "models/model.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <set>

#include "backend/gpu_backend.h"
#include "core/system.h"
#include "models/class_adapter.h"

namespace opendl {

Model::Model(const std::vector<LayerPtr>& outputs) : adapter_(make_generic_adapter()), rng_(global_seed()) {
  net_ = std::make_unique<Network>(outputs, cpu_backend());
  net_->init_params(rng_);
  alloc_solver_state();
}

Model::~Model() {
  drop_graphs();
  if (net_) {
    net_->backend().free(m_);
    net_->backend().free(v_);
  }
}

void Model::alloc_solver_state() {
  size_t n = std::max<size_t>(net_->num_trainable(), 1);
  m_ = net_->backend().alloc(n);
  v_ = net_->backend().alloc(n);
  net_->backend().fill(m_, n, 0.f);
  net_->backend().fill(v_, n, 0.f);
}

void Model::require_activations() const {
  // Only after an allocation failed and restoring the previous batch size failed as well (Network::set_batch_size).
  if (net_->batch_size() < 1)
    fail(runtime_ == "gpu" ? err::kOutOfDeviceMem : err::kHostMem,
         "the model holds no activation memory after an allocation failed; set 'batch_size' again (smaller)");
}

void Model::reset_solver_state() {
  size_t n = std::max<size_t>(net_->num_trainable(), 1);
  net_->backend().fill(m_, n, 0.f);
  net_->backend().fill(v_, n, 0.f);
  adam_t_ = 0;
}

namespace {
double number(const std::string& name, const Tuple& v) {
  if (v.size() != 1) fail(err::kWrongNumValues3, "'" + name + "' takes exactly one value, got " + to_string(v));
  if (!is_number(v[0])) fail(err::kWrongType3, "'" + name + "' must be a number, got " + to_string(v));
  double d = as_double(v[0]);
  if (!std::isfinite(d)) fail(err::kWrongValue3, "'" + name + "' must be finite, got " + to_string(v));
  return d;
}
int64_t integer(const std::string& name, const Tuple& v) {
  double d = number(name, v);
  if (d != std::floor(d)) fail(err::kWrongType3, "'" + name + "' must be an integer, got " + to_string(v));
  if (std::fabs(d) >= 9.2e18) fail(err::kWrongValue3, "'" + name + "' is out of range, got " + to_string(v));
  return int64_t(d);
}
void in_range(const std::string& name, double d, double lo, double hi, bool hi_open) {
  if (d < lo || d > hi || (hi_open && d == hi)) {
    fail(err::kWrongValue3, "'" + name + "' must lie in [" + to_string(Value(lo)) + ", " + to_string(Value(hi)) +
                                (hi_open ? ")" : "]") + ", got " + to_string(Value(d)));
  }
}
std::vector<std::string> param_names(const ModelAdapter& a) {
  std::vector<std::string> v = {
      "adam_beta1", "adam_beta2", "adam_epsilon", "batch_size", "batch_size_multiplier", "batchnorm_momentum",
      "fuse_bn_relu", "fuse_conv_relu", "gpu", "input_dimensions", "keep_layer_gradients", "layer_names",
      "learning_rate", "momentum",
      "num_trainable_params", "optimize_for_inference",
      "precision", "precision_is_converted", "runtime", "solver_type", "type", "weight_prior"};
  for (auto& n : a.param_names()) v.push_back(n);
  std::sort(v.begin(), v.end());
  return v;
}
[[noreturn]] void unknown_param(const ModelAdapter& a, const std::string& name, bool set) {
  std::string all;
  for (auto& n : param_names(a)) all += (all.empty() ? "'" : ", '") + n + "'";
  fail(err::kWrongValue2, "unknown model parameter '" + name + "' for " + (set ? "set" : "get") + "_dl_model_param of a '" +
                              a.type() + "' model (available: " + all + ")");
}
}  // namespace

void Model::set_param(const std::string& name, const Tuple& v) {
  std::lock_guard<std::mutex> lock(mu_);
  // Anything but the solver's settings (applied after the recorded part of a step) may change what a training
  // step runs.
  static const std::set<std::string> solver_only = {"learning_rate", "momentum",   "weight_prior", "solver_type",
                                                    "adam_beta1",    "adam_beta2", "adam_epsilon"};
  if (!solver_only.count(name)) ++config_version_;
  if (adapter_->set_param(*this, name, v)) return;
  if (name == "batch_size") {
    int64_t b = integer(name, v);
    if (b < 1) fail(err::kWrongValue3, "'batch_size' must be >= 1, got " + std::to_string(b));
    net_->set_batch_size(b);
    batch_size_ = b;
  } else if (name == "batch_size_multiplier") {
    int64_t m = integer(name, v);
    if (m < 1) fail(err::kWrongBatchSizeMultiplier, "'batch_size_multiplier' must be >= 1, got " + std::to_string(m));
    multiplier_ = m;
  } else if (name == "learning_rate") {
    double d = number(name, v);
    if (d <= 0) fail(err::kWrongValue3, "'learning_rate' must be > 0, got " + to_string(v));
    lr_ = d;
  } else if (name == "momentum") {
    double d = number(name, v);
    in_range(name, d, 0.0, 1.0, true);
    momentum_ = d;
  } else if (name == "weight_prior") {
    double d = number(name, v);
    if (d < 0) fail(err::kWrongValue3, "'weight_prior' must be >= 0, got " + to_string(v));
    weight_prior_ = d;
  } else if (name == "adam_beta1" || name == "adam_beta2") {
    double d = number(name, v);
    in_range(name, d, 0.0, 1.0, true);
    (name == "adam_beta1" ? beta1_ : beta2_) = d;
  } else if (name == "adam_epsilon") {
    double d = number(name, v);
    if (d <= 0) fail(err::kWrongValue3, "'adam_epsilon' must be > 0, got " + to_string(v));
    adam_eps_ = d;
  } else if (name == "solver_type") {
    if (v.size() != 1 || !is_string(v[0]) ||
        (std::get<std::string>(v[0]) != "sgd" && std::get<std::string>(v[0]) != "adam"))
      fail(err::kSolverInvalidType, "'solver_type' must be 'sgd' or 'adam', got " + to_string(v));
    std::string s = std::get<std::string>(v[0]);
    if (s != solver_) reset_solver_state();  // the state of one solver means nothing to the other
    solver_ = s;
  } else if (name == "gpu") {
    int64_t g = integer(name, v);
    if (g < 0) fail(err::kWrongValue3, "'gpu' must be a CUDA device index >= 0, got " + std::to_string(g));
    if (runtime_ == "gpu") move_to("gpu", g);  // a model on a GPU moves to the new one
    else gpu_ = g;
  } else if (name == "batchnorm_momentum") {
    // Sets the momentum of every batch-normalisation layer (a number in [0, 1) or 'auto'); weights and
    // statistics are kept.
    if (v.size() != 1 || !(is_number(v[0]) || (is_string(v[0]) && std::get<std::string>(v[0]) == "auto")))
      fail(err::kWrongValue3, "'batchnorm_momentum' takes one number in [0, 1) or 'auto', got " + to_string(v));
    if (is_number(v[0])) in_range(name, as_double(v[0]), 0.0, 1.0, true);
    auto ds = describe();
    bool any = false;
    for (auto& d : ds)
      if (d.type == "batchnorm") {
        d.params["momentum"] = Tuple{is_number(v[0]) ? Value(as_double(v[0])) : v[0]};
        any = true;
      }
    if (!any) fail(err::kParamNotAvailable, "the model has no batch-normalisation layer");
    rebuild(ds);
  } else if (name == "optimize_for_inference") {
    // 'true': inference only. Gradient buffers are released, activations share a liveness-planned arena and
    // batch normalisations are folded into the convolutions before them (Network::set_inference_only);
    // training, gradients and the activations of layers an apply call did not return are unavailable until
    // it is set back to 'false'. Weights, statistics and solver state are kept either way.
    if (v.size() != 1 || !is_string(v[0]) ||
        (std::get<std::string>(v[0]) != "true" && std::get<std::string>(v[0]) != "false"))
      fail(err::kWrongValue3, "'optimize_for_inference' takes 'true' or 'false', got " + to_string(v));
    net_->set_inference_only(std::get<std::string>(v[0]) == "true");
  } else if (name == "fuse_conv_relu" || name == "fuse_bn_relu") {
    // Whether inference-optimized plans merge a ReLU layer into the convolution or batch normalisation before
    // it (Network::set_relu_fusion); the outputs are the same either way.
    if (v.size() != 1 || !is_string(v[0]) ||
        (std::get<std::string>(v[0]) != "true" && std::get<std::string>(v[0]) != "false"))
      fail(err::kWrongValue3, "'" + name + "' takes 'true' or 'false', got " + to_string(v));
    const bool on = std::get<std::string>(v[0]) == "true";
    if (name == "fuse_conv_relu") net_->set_relu_fusion(on, net_->fuse_bn_relu());
    else net_->set_relu_fusion(net_->fuse_conv_relu(), on);
  } else if (name == "keep_layer_gradients") {
    // opendl's own parameter (not HALCON's): whether every layer keeps the gradient of its output after a
    // training step, for get_dl_model_layer_gradients (Network::set_keep_gradients). 'false' (the default):
    // the gradient buffers share memory planned by liveness and only the weight gradients stay readable.
    // Switching reallocates the activation buffers, so the last step's activations and gradients are gone.
    if (v.size() != 1 || !is_string(v[0]) ||
        (std::get<std::string>(v[0]) != "true" && std::get<std::string>(v[0]) != "false"))
      fail(err::kWrongValue3, "'keep_layer_gradients' takes 'true' or 'false', got " + to_string(v));
    const bool on = std::get<std::string>(v[0]) == "true";
    if (on != net_->keep_gradients()) {
      net_->set_keep_gradients(on);
      has_step_ = false;
    }
  } else if (name == "precision" || name == "precision_is_converted") {
    fail(err::kWrongValue2,
         "'" + name + "' can only be read (optimize_dl_model_for_inference returns a converted copy)");
  } else if (name == "runtime_init") {
    if (v.size() != 1 || !is_string(v[0]) || std::get<std::string>(v[0]) != "immediately")
      fail(err::kWrongValue3, "'runtime_init' takes 'immediately'");
    // CPU memory is allocated when the batch size is set, so there is nothing left to initialise.
  } else if (name == "runtime") {
    if (v.size() != 1 || !is_string(v[0]) ||
        (std::get<std::string>(v[0]) != "cpu" && std::get<std::string>(v[0]) != "gpu"))
      fail(err::kWrongValue3, "'runtime' takes 'cpu' or 'gpu', got " + to_string(v));
    // Moves weights, statistics and solver state; fails (model unchanged) when no usable GPU 'gpu' exists.
    move_to(std::get<std::string>(v[0]), gpu_);
  } else if (name == "type") {
    if (v.size() != 1 || !is_string(v[0])) fail(err::kWrongType3, "'type' must be a string");
    const std::string& t = std::get<std::string>(v[0]);
    if (t == adapter_->type()) return;
    const std::string from = adapter_->type();
    std::unique_ptr<ModelAdapter> next;
    if (from == "generic" && t == "classification") next = make_classification_adapter(*this);
    else if (from == "generic" && t == "segmentation") next = make_segmentation_adapter(*this);
    else if (from == "classification" && t == "multi_label_classification") next = make_multi_label_adapter(*this);
    else if (from == "multi_label_classification" && t == "classification")
      next = make_classification_from_multi_label(*this);
    else
      fail(err::kWrongValue3, "a '" + from + "' model cannot become type '" + t + "' (possible: 'generic' -> "
                              "'classification' or 'segmentation', 'classification' <-> 'multi_label_classification')");
    adapter_ = std::move(next);
  } else if (name == "layer_names" || name == "num_trainable_params" ||
             name == "input_dimensions") {
    fail(err::kWrongValue2, "model parameter '" + name + "' can only be read");
  } else {
    unknown_param(*adapter_, name, true);
  }
}

Tuple Model::get_param(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  Tuple out;
  if (adapter_->get_param(*this, name, out)) return out;
  if (name == "batch_size") return {batch_size_};
  if (name == "batch_size_multiplier") return {multiplier_};
  if (name == "learning_rate") return {lr_};
  if (name == "momentum") return {momentum_};
  if (name == "weight_prior") return {weight_prior_};
  if (name == "adam_beta1") return {beta1_};
  if (name == "adam_beta2") return {beta2_};
  if (name == "adam_epsilon") return {adam_eps_};
  if (name == "solver_type") return {solver_};
  if (name == "runtime") return {runtime_};
  if (name == "gpu") return {gpu_};
  if (name == "precision") return {std::string("float32")};
  if (name == "batchnorm_momentum") {  // of the first batch-normalisation layer (all equal after a set)
    for (auto& sl : net_->slots())
      if (sl.layer->type() == "batchnorm") return sl.layer->param("momentum");
    fail(err::kParamNotAvailable, "the model has no batch-normalisation layer");
  }
  if (name == "precision_is_converted") return {std::string(converted_ ? "true" : "false")};
  if (name == "optimize_for_inference") return {std::string(net_->inference_only() ? "true" : "false")};
  if (name == "fuse_conv_relu") return {std::string(net_->fuse_conv_relu() ? "true" : "false")};
  if (name == "fuse_bn_relu") return {std::string(net_->fuse_bn_relu() ? "true" : "false")};
  if (name == "keep_layer_gradients") return {std::string(net_->keep_gradients() ? "true" : "false")};
  if (name == "type") return {adapter_->type()};
  if (name == "num_trainable_params") return {int64_t(net_->num_trainable_values())};
  if (name == "layer_names") {
    Tuple t;
    for (auto& s : net_->slots()) t.push_back(s.layer->name());
    return t;
  }
  if (name == "input_dimensions") {  // [width, height, depth] of every input layer, in graph order
    Tuple t;
    for (int i : net_->input_layers()) {
      const Shape4& s = net_->slots()[i].shape;
      t.push_back(s.w);
      t.push_back(s.h);
      t.push_back(s.c);
    }
    return t;
  }
  unknown_param(*adapter_, name, false);
}

int Model::slot_of(const std::string& layer, int code) const {
  int i = net_->find(layer);
  if (i < 0) fail(code, "the model has no layer named '" + layer + "'");
  return i;
}

LayerPtr Model::layer(const std::string& name) { return net_->slots()[slot_of(name)].layer; }

std::vector<std::vector<float>> Model::pack(const std::vector<Sample>& batch, const std::vector<int>& inputs,
                                            size_t padded) const {
  std::vector<std::vector<float>> out;
  for (int li : inputs) {
    const auto& slot = net_->slots()[li];
    const std::string& key = slot.layer->name();
    const Shape4& s = slot.shape;
    const int64_t per = s.per_sample();
    std::vector<float> buf(size_t(per) * padded, 0.f);
    for (size_t i = 0; i < batch.size(); ++i) {
      auto it = batch[i].find(key);
      std::string where = "sample " + std::to_string(i) + ", key '" + key + "'";
      if (it == batch[i].end())
        fail(err::kInputsMissing, "sample " + std::to_string(i) + " has no key '" + key +
                                      "' required by the input layer of that name");
      float* dst = buf.data() + size_t(per) * i;
      if (std::holds_alternative<Tensor>(it->second)) {
        const Tensor& t = std::get<Tensor>(it->second);
        if (t.dtype() != DType::kFloat32)
          fail(err::kInputWrongType, where + ": image type '" + std::string(dtype_name(t.dtype())) +
                                         "' given, the input needs 'real' (float32) images");
        int64_t h = t.ndim() >= 1 ? t.dim(0) : 0, w = t.ndim() >= 2 ? t.dim(1) : 1;
        int64_t c = t.ndim() == 3 ? t.dim(2) : 1;
        if (t.ndim() < 2 || t.ndim() > 3 || h != s.h || w != s.w || c != s.c)
          fail(err::kInputWrongLength, where + ": image of width " + std::to_string(w) + ", height " +
                                           std::to_string(h) + " and " + std::to_string(c) +
                                           " channel(s) given, the input layer expects width " + std::to_string(s.w) +
                                           ", height " + std::to_string(s.h) + ", depth " + std::to_string(s.c));
        const float* src = t.f32();
        for (int64_t y = 0; y < h; ++y)  // (H, W, C) interleaved -> (C, H, W) planar
          for (int64_t x = 0; x < w; ++x)
            for (int64_t ch = 0; ch < c; ++ch) dst[(ch * h + y) * w + x] = src[(y * w + x) * c + ch];
      } else {
        const Tuple& tup = std::get<Tuple>(it->second);
        const bool smaller = slot.layer->bool_param("allow_smaller_tuple") && int64_t(tup.size()) <= per;
        for (const Value& v : tup)  // the type first: a string given for an image is a wrong type, not length
          if (!is_number(v)) fail(err::kInputWrongType, where + ": value " + to_string(v) + " is not a number");
        if (int64_t(tup.size()) != per && !smaller)
          fail(err::kInputWrongLength, where + ": " + std::to_string(tup.size()) + " value(s) given, the input layer " +
                                           "holds " + std::to_string(per) + " (width " + std::to_string(s.w) +
                                           " x height " + std::to_string(s.h) + " x depth " + std::to_string(s.c) + ")");
        for (size_t j = 0; j < tup.size(); ++j) dst[j] = float(as_double(tup[j]));
      }
      for (int64_t j = 0; j < per; ++j)
        if (!std::isfinite(dst[j]))
          fail(err::kInputWrongValues, where + ": contains a non-finite value (NaN or infinity)");
    }
    out.push_back(std::move(buf));
  }
  return out;
}

TrainResult Model::train_batch(const std::vector<Sample>& batch) {
  std::lock_guard<std::mutex> lock(mu_);
  if (net_->inference_only())
    fail(err::kParamNotAvailable, "the model is optimized for inference ('optimize_for_inference' is 'true') and "
                                  "cannot be trained; set 'optimize_for_inference' to 'false' first");
  require_activations();
  const size_t need = size_t(batch_size_ * multiplier_);
  if (batch.size() != need)
    fail(err::kInputWrongBatchSizeWithMultiplier,
         "dlsample_batch holds " + std::to_string(batch.size()) + " samples, but batch_size (" +
             std::to_string(batch_size_) + ") * batch_size_multiplier (" + std::to_string(multiplier_) + ") = " +
             std::to_string(need));
  auto losses = net_->loss_layers();
  if (losses.empty()) fail(err::kInvalidOutput, "the model has no loss layer, so it cannot be trained");
  auto inputs = net_->input_layers();
  auto staged = pack(adapter_->train_inputs(*this, batch), inputs, batch.size());
  auto& slots = net_->slots();
  Backend& be = net_->backend();
  // Layers check the values fed to them by input layers (targets, ground truth) before anything runs.
  for (size_t mb = 0; mb < size_t(multiplier_); ++mb)
    for (size_t li = 0; li < slots.size(); ++li) {
      const auto& s = slots[li];
      if (s.layer->is_input()) continue;
      std::vector<const float*> host(s.inputs.size(), nullptr);
      for (size_t k = 0; k < s.inputs.size(); ++k) {
        auto it = std::find(inputs.begin(), inputs.end(), s.inputs[k]);
        if (it != inputs.end()) {
          size_t idx = size_t(it - inputs.begin());
          host[k] = staged[idx].data() + size_t(mb) * size_t(slots[s.inputs[k]].shape.numel());
        }
      }
      s.layer->check_inputs(host, s.in_shapes);
    }
  // Persistent state (batch-norm statistics) and the RNG are restored if the step fails numerically or throws
  // (out of device memory, say). The copy stays on the device: no round trip through the host per step.
  const size_t nt = net_->num_trainable();
  const size_t n_state = net_->num_params() - nt;
  struct Backup {
    Backend& be;
    float* p = nullptr;
    ~Backup() { be.free(p); }
  } state{be};
  if (n_state) {
    state.p = be.alloc(n_state);
    be.copy(state.p, net_->params() + nt, n_state);
  }
  const auto rng_state = rng_.state();
  auto restore = [&] {
    if (n_state) be.copy(net_->params() + nt, state.p, n_state);
    rng_.set_state(rng_state);
  };

  // The step's results stay on the device until all are there, then are read back at once: the loss values in
  // double precision (summed over the micro-batches by the loss layers), the regularisation and the number of
  // non-finite gradients.
  double* sv = net_->step_values();
  const size_t nl = losses.size();
  const bool seeded = net_->uses_step_seed();
  try {
    for (int64_t mb = 0; mb < multiplier_; ++mb) {
      for (size_t k = 0; k < inputs.size(); ++k) {
        size_t n = size_t(slots[inputs[k]].shape.numel());
        be.upload(slots[inputs[k]].y, staged[k].data() + size_t(mb) * n, n);
      }
      if (seeded) {  // random layers (dropout) draw from this micro-batch's seed; uploaded outside any recording
        const uint64_t seed = rng_.next();
        be.upload(reinterpret_cast<float*>(net_->step_seed()), reinterpret_cast<const float*>(&seed), 2);
      }
      auto body = [&] {
        net_->forward(true, rng_, mb > 0);
        // Gradients are averaged over the micro-batches (spec E.6): each contributes 1/multiplier.
        net_->backward(1.f / float(multiplier_), mb > 0);
      };
      if (!run_recorded(mb > 0, body)) body();
    }
    net_->set_last_run_training();
  } catch (...) {
    try {
      restore();
    } catch (...) {  // the first error is the one to report
    }
    throw;
  }
  const bool with_reg = weight_prior_ > 0 && nt;
  if (with_reg) be.sum_squares_masked(nt, net_->params(), net_->decay_mask(), sv + nl);
  if (nt) be.count_nonfinite(nt, net_->grads(), sv + nl + 1);
  std::vector<double> values(nl + 2, 0.0);
  be.download(reinterpret_cast<float*>(values.data()), reinterpret_cast<const float*>(sv), 2 * (nl + (nt ? 2 : 0)));
  TrainResult r;
  double total = 0;
  for (size_t k = 0; k < nl; ++k) {
    const auto& layer = *slots[size_t(losses[k])].layer;
    double v = layer.loss_weight() * values[k] / double(multiplier_);
    r[layer.name()] = v;
    total += v;
  }
  const double reg = with_reg ? 0.5 * weight_prior_ * values[nl] : 0.0;
  total += reg;
  if (!std::isfinite(total) || (nt && values[nl + 1] != 0.0)) {
    restore();
    fail(err::kTrainingFailed, "the loss or its gradient is not finite (loss " + to_string(Value(total)) +
                                   "); training diverged, the model was left unchanged. Lower 'learning_rate'");
  }
  if (nt) {
    if (solver_ == "sgd") {
      be.sgd_update(nt, float(lr_), float(momentum_), float(weight_prior_), net_->lr_mult(), net_->decay_mask(),
                    net_->params(), net_->grads(), m_);
    } else {
      ++adam_t_;
      float b1 = float(1.0 - std::pow(beta1_, double(adam_t_))), b2 = float(1.0 - std::pow(beta2_, double(adam_t_)));
      be.adam_update(nt, float(lr_), beta1_, beta2_, float(adam_eps_), b1, b2, float(weight_prior_),
                     net_->lr_mult(), net_->decay_mask(), net_->params(), net_->grads(), m_, v_);
    }
  }
  has_step_ = true;
  r["regularization"] = reg;
  r["total_loss"] = total;
  return r;
}

bool Model::run_recorded(bool accumulating, const std::function<void()>& body) {
  Backend& be = net_->backend();
  if (!be.graph_supported() || !gpu_graphs()) return false;
  StepGraph& g = graphs_[accumulating ? 1 : 0];
  const std::array<uint64_t, 5> key{net_->buffer_epoch(), be.graph_epoch(), config_version_,
                                    uint64_t(net_->input_gradients()), uint64_t(multiplier_)};
  if (g.be != &be || g.key != key) {
    if (g.be && g.id) g.be->graph_destroy(g.id);
    g = StepGraph{};
    g.be = &be;
    g.key = key;
    g.refused = !net_->capturable();
  }
  if (g.refused) return false;
  if (!g.id) {
    if (g.direct_runs++ == 0) return false;
    bool recording = false;
    try {
      be.graph_begin();
      recording = true;
      body();
    } catch (...) {
      // What cannot be recorded runs directly from now on; a real error shows again when it does.
      if (recording) {
        try {
          (void)be.graph_end();
        } catch (...) {
        }
      }
      g.refused = true;
      return false;
    }
    g.id = be.graph_end();
    if (!g.id) {
      g.refused = true;
      return false;
    }
    ++graph_recordings_;
  }
  be.graph_launch(g.id);
  ++graph_replays_;
  return true;
}

void Model::drop_graphs() {
  for (auto& g : graphs_) {
    if (g.be && g.id) {
      try {
        g.be->graph_destroy(g.id);
      } catch (...) {  // destructor path: the recording is freed with the backend at the latest
      }
    }
    g = StepGraph{};
  }
}

Model::GraphStats Model::graph_stats() const {
  GraphStats st;
  st.replayed = graph_replays_;
  st.recorded = graph_recordings_;
  st.refused = graphs_[0].refused || graphs_[1].refused;
  return st;
}

std::vector<Result> Model::apply(const std::vector<Sample>& batch, const std::vector<std::string>& outputs) {
  std::lock_guard<std::mutex> lock(mu_);
  if (batch.empty()) fail(err::kInputWrongBatchSize, "dlsample_batch is empty");
  require_activations();
  if (int64_t(batch.size()) > batch_size_)
    fail(err::kInputWrongBatchSize, "dlsample_batch holds " + std::to_string(batch.size()) +
                                        " samples, more than batch_size (" + std::to_string(batch_size_) + ")");
  auto& slots = net_->slots();
  std::vector<int> want;
  const auto typed_layers = adapter_->output_layers(outputs);
  const bool typed = !typed_layers.empty();
  if (typed) {
    for (auto& n : typed_layers) want.push_back(slot_of(n));
  } else if (outputs.empty()) {
    for (size_t i = 0; i < slots.size(); ++i)
      if (slots[i].layer->params().count("is_inference_output") &&
          slots[i].layer->bool_param("is_inference_output"))
        want.push_back(int(i));
    if (want.empty())
      for (int o : net_->outputs())
        if (!slots[o].layer->is_loss()) want.push_back(o);
    if (want.empty())  // only loss layers were given: their predictions (first inputs) are the outputs
      for (int o : net_->outputs())
        if (slots[o].layer->is_loss() && !slots[slots[o].inputs[0]].layer->is_input())
          want.push_back(slots[o].inputs[0]);
    if (want.empty()) fail(err::kInvalidOutput, "the model has no default outputs; name them in 'outputs'");
  } else {
    for (auto& n : outputs) want.push_back(slot_of(n, err::kWrongValue3));  // apply_dl_model's outputs
  }
  // Only the ancestors of the wanted layers run.
  std::vector<bool> needed(slots.size(), false);
  std::function<void(int)> mark = [&](int i) {
    if (needed[i]) return;
    needed[i] = true;
    for (int j : slots[i].inputs) mark(j);
  };
  for (int w : want) mark(w);
  std::vector<int> inputs;
  for (int i : net_->input_layers())
    if (needed[i]) inputs.push_back(i);
  auto staged = pack(adapter_->apply_inputs(*this, batch), inputs, size_t(batch_size_));
  Backend& be = net_->backend();
  for (size_t k = 0; k < inputs.size(); ++k)
    be.upload(slots[inputs[k]].y, staged[k].data(), size_t(slots[inputs[k]].shape.numel()));
  net_->set_last_run(needed);
  if (net_->inference_only()) {
    net_->run_inference(needed, want, rng_);
  } else {
    for (size_t i = 0; i < slots.size(); ++i) {
      if (!needed[i] || slots[i].layer->is_input()) continue;
      net_->forward_layer(i, false, &rng_);
    }
  }
  std::vector<Result> res(batch.size());
  for (int w : want) {
    const Shape4& s = slots[w].shape;
    Tensor all = to_images(size_t(w), false);  // (N, H, W, C)
    size_t per = size_t(s.per_sample());
    for (size_t i = 0; i < batch.size() && i < size_t(s.n); ++i) {
      Tensor t({s.h, s.w, s.c});
      std::copy(all.f32() + per * i, all.f32() + per * (i + 1), t.f32());
      res[i][slots[w].layer->name()] = std::move(t);
    }
  }
  if (typed) adapter_->make_results(*this, res, outputs);
  return res;
}

Tensor Model::to_images(size_t slot, bool gradient) {
  const Shape4& s = net_->slots()[slot].shape;
  std::vector<float> nchw(size_t(s.numel()));
  net_->download_plain(slot, gradient, nchw.data());
  Tensor t({s.n, s.h, s.w, s.c});
  float* o = t.f32();
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t c = 0; c < s.c; ++c)
      for (int64_t y = 0; y < s.h; ++y)
        for (int64_t x = 0; x < s.w; ++x)
          o[((n * s.h + y) * s.w + x) * s.c + c] = nchw[size_t(((n * s.c + c) * s.h + y) * s.w + x)];
  return t;
}

const BlobSlot& Model::blob(int slot, const std::string& type, bool& gradient, int code) const {
  const auto& s = net_->slots()[slot];
  gradient = false;
  std::string base = type;
  const std::string suffix = "_gradient";
  if (base.size() > suffix.size() && base.compare(base.size() - suffix.size(), suffix.size(), suffix) == 0) {
    gradient = true;
    base = base.substr(0, base.size() - suffix.size());
  }
  if (base == "batchnorm_mean") base = "moving_mean";
  if (base == "batchnorm_variance") base = "moving_variance";
  for (auto& b : s.blobs)
    if (b.spec.name == base && !(gradient && b.spec.role == BlobRole::kState)) return b;
  std::string avail;
  for (auto& b : s.blobs) {
    std::string n = b.spec.name == "moving_mean" ? "batchnorm_mean"
                    : b.spec.name == "moving_variance" ? "batchnorm_variance" : b.spec.name;
    if (n == "update_count") continue;
    avail += (avail.empty() ? "'" : ", '") + n + "'";
    if (b.spec.role != BlobRole::kState) avail += ", '" + n + "_gradient'";
  }
  fail(code, "layer '" + s.layer->name() + "' has no weights_type '" + type + "' (available: " +
                              (avail.empty() ? "none" : avail) + ")");
}

Tensor Model::get_weights(const std::string& layer, const std::string& type) {
  std::lock_guard<std::mutex> lock(mu_);
  bool grad;
  const BlobSlot& b = blob(slot_of(layer), type, grad);
  Tensor t(b.spec.shape);
  net_->backend().download(t.f32(), (grad ? net_->grads() : net_->params()) + b.offset, b.size);
  return t;
}

void Model::set_weights(const Tensor& w, const std::string& layer, const std::string& type) {
  std::lock_guard<std::mutex> lock(mu_);
  bool grad;
  // set_dl_model_layer_weights(weights, dlmodel_handle, layer_name, weights_type)
  const BlobSlot& b = blob(slot_of(layer, err::kWrongValue3), type, grad, err::kWrongValue4);
  if (grad) fail(err::kWrongValue4, "weights_type '" + type + "' can only be read");
  if (w.dtype() != DType::kFloat32) fail(err::kInputWrongType, "weights must be float32 ('real')");
  if (w.shape() != b.spec.shape) {
    std::string want, got;
    for (auto d : b.spec.shape) want += (want.empty() ? "" : ", ") + std::to_string(d);
    for (auto d : w.shape()) got += (got.empty() ? "" : ", ") + std::to_string(d);
    fail(err::kInvalidShape, "weights '" + type + "' of layer '" + layer + "' have shape (" + want + "), got (" +
                                 got + ")");
  }
  const float* p = w.f32();
  for (size_t i = 0; i < b.size; ++i)
    if (!std::isfinite(p[i])) fail(err::kInputWrongValues, "weights contain a non-finite value");
  if (type == "batchnorm_variance")
    for (size_t i = 0; i < b.size; ++i)
      if (p[i] < 0)
        fail(err::kInputWrongValues, "'batchnorm_variance' of layer '" + layer + "' must be >= 0, got " +
                                         to_string(Value(double(p[i]))) + " at index " + std::to_string(i));
  net_->backend().upload(net_->params() + b.offset, p, b.size);
}

Tensor Model::activations(const std::string& layer) {
  std::lock_guard<std::mutex> lock(mu_);
  int i = slot_of(layer);
  if (!net_->output_kept(size_t(i)))
    fail(err::kParamNotAvailable, "the model is optimized for inference ('optimize_for_inference' is 'true'), "
                                  "which keeps only the outputs the last apply_dl_model returned; layer '" + layer +
                                      "' was not among them (name it in apply_dl_model's outputs)");
  if (!net_->has_run())
    fail(err::kParamNotAvailable, "no apply_dl_model or train_dl_model_batch call has run since the model was "
                                  "created or read or its buffers were reallocated (batch size, "
                                  "'optimize_for_inference', 'keep_layer_gradients'), so layer '" + layer +
                                      "' holds no activations yet");
  if (!net_->ran_last(size_t(i)))
    fail(err::kParamNotAvailable, "layer '" + layer + "' was not computed by the last call: training steps run only "
                                  "the layers the losses depend on, apply_dl_model only those its outputs need "
                                  "(name the layer in apply_dl_model's outputs)");
  return to_images(size_t(i), false);
}

Tensor Model::gradients(const std::string& layer) {
  std::lock_guard<std::mutex> lock(mu_);
  int i = slot_of(layer);
  const auto& s = net_->slots()[i];
  if (net_->inference_only())
    fail(err::kParamNotAvailable, "the model is optimized for inference ('optimize_for_inference' is 'true') and "
                                  "holds no gradients");
  if (!has_step_ || !net_->has_run())
    fail(err::kParamNotAvailable, "no training step has run since the model was created or read or its buffers "
                                  "were reallocated (batch size, 'keep_layer_gradients'), so there are no gradients");
  if (!net_->gradient_kept(size_t(i))) {
    if (s.layer->is_input())
      fail(err::kParamNotAvailable, "gradients with respect to input layer '" + layer + "' are computed only with "
                                    "set_dl_model_param(model, 'keep_layer_gradients', 'true') before training");
    fail(err::kParamNotAvailable, "the gradient of layer '" + layer + "' was not kept: gradient buffers are "
                                  "shared to save memory; set_dl_model_param(model, 'keep_layer_gradients', 'true') "
                                  "before training keeps the gradients of all layers");
  }
  return to_images(size_t(i), true);
}

}  // namespace opendl
