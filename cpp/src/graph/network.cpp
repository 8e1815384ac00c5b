// Network compilation (graph copy, topological order, blob arena layout) and execution.
#include "graph/network.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <functional>
#include <set>
#include <unordered_map>

namespace opendl {

Network::Network(const std::vector<LayerPtr>& outputs, Backend& be) : be_(be) {
  if (outputs.empty()) fail(err::kWrongNumValues1, "output_layers must hold at least one layer");
  // Depth-first post-order over the inputs gives a topological order; layers are cloned in that order.
  std::unordered_map<const Layer*, int> index;
  std::set<const Layer*> visiting;
  std::function<int(const LayerPtr&)> visit = [&](const LayerPtr& l) -> int {
    if (!l) fail(err::kInvalidHandle, "a layer handle is invalid");
    auto it = index.find(l.get());
    if (it != index.end()) return it->second;
    if (visiting.count(l.get())) fail(err::kInvalidOutput, "the layer graph has a cycle at '" + l->name() + "'");
    visiting.insert(l.get());
    std::vector<int> ins;
    std::vector<LayerPtr> new_inputs;
    for (auto& in : l->inputs()) {
      int j = visit(in);
      ins.push_back(j);
      new_inputs.push_back(slots_[j].layer);
    }
    LayerSlot s;
    s.layer = clone_layer(*l, new_inputs);
    s.inputs = ins;
    slots_.push_back(std::move(s));
    int id = static_cast<int>(slots_.size()) - 1;
    index[l.get()] = id;
    visiting.erase(l.get());
    return id;
  };
  for (auto& o : outputs) {
    int id = visit(o);
    if (std::find(outputs_.begin(), outputs_.end(), id) == outputs_.end()) outputs_.push_back(id);
  }
  std::set<std::string> names;
  for (size_t i = 0; i < slots_.size(); ++i) {
    const auto& n = slots_[i].layer->name();
    if (!names.insert(n).second)
      fail(err::kDuplicateName, "layer name '" + n + "' is used by more than one layer of the graph");
    for (int j : slots_[i].inputs) slots_[j].consumers.push_back(static_cast<int>(i));
  }
  // The layers a training step runs: the loss layers and what they depend on (all layers without a loss layer).
  in_training_.assign(slots_.size(), false);
  for (size_t i = slots_.size(); i-- > 0;) {
    if (slots_[i].layer->is_loss()) in_training_[i] = true;
    if (in_training_[i])
      for (int j : slots_[i].inputs) in_training_[size_t(j)] = true;
  }
  if (std::find(in_training_.begin(), in_training_.end(), true) == in_training_.end())
    in_training_.assign(slots_.size(), true);
  // Blob layout: trainable blobs first (they share the gradient and solver arenas), then state blobs.
  for (auto& s : slots_) {
    std::vector<Shape4> in;
    for (int j : s.inputs) in.push_back(slots_[j].layer->shape());
    for (auto& spec : s.layer->blob_specs(in)) {
      BlobSlot b;
      b.spec = spec;
      b.size = 1;
      for (auto d : spec.shape) b.size *= static_cast<size_t>(d);
      s.blobs.push_back(b);
    }
  }
  for (size_t i = 0; i < slots_.size(); ++i) {
    auto& s = slots_[i];
    const auto& pm = s.layer->params();
    auto it = pm.find("weights_shared_with");
    if (it == pm.end() || it->second.empty() || std::get<std::string>(it->second[0]).empty()) continue;
    const std::string owner = std::get<std::string>(it->second[0]);
    const std::string at = "layer '" + s.layer->name() + "': weights_shared_with '" + owner + "'";
    int o = -1;
    for (size_t j = 0; j < slots_.size(); ++j)
      if (slots_[j].layer->name() == owner) o = int(j);
    if (o < 0) fail(err::kWrongValue3, at + " is no layer of the model");
    if (o == int(i)) fail(err::kWrongValue3, at + " names the layer itself");
    const auto& opm = slots_[size_t(o)].layer->params();
    auto ot = opm.find("weights_shared_with");
    if (ot != opm.end() && !ot->second.empty() && !std::get<std::string>(ot->second[0]).empty())
      fail(err::kWrongValue3, at + " shares the weights of another layer itself; name that layer instead");
    const auto& ob = slots_[size_t(o)].blobs;
    bool same = slots_[size_t(o)].layer->type() == s.layer->type() && ob.size() == s.blobs.size();
    for (size_t k = 0; same && k < ob.size(); ++k)
      same = ob[k].spec.shape == s.blobs[k].spec.shape && ob[k].spec.role == s.blobs[k].spec.role;
    if (!same)
      fail(err::kWrongValue3, at + ": the layers differ in type or in the shapes of their weights");
    s.blob_owner = o;
  }
  // Every blob starts on a 64-byte boundary (16 floats): cuDNN's tensor-core kernels and the CPU's vector loads
  // want aligned weights. The padding between blobs is zero and never updated (learning-rate multiplier 0).
  auto align = [](size_t n) { return (n + 15) / 16 * 16; };
  for (int pass = 0; pass < 2; ++pass) {
    for (auto& s : slots_)
      for (auto& b : s.blobs) {
        if (s.blob_owner >= 0) continue;
        bool state = b.spec.role == BlobRole::kState;
        if (state != (pass == 1)) continue;
        b.offset = align(n_total_);
        n_total_ = b.offset + b.size;
        if (!state) n_values_ += b.size;
      }
    if (pass == 0) n_train_ = n_total_ = align(n_total_);
  }
  for (auto& s : slots_)
    if (s.blob_owner >= 0)
      for (size_t k = 0; k < s.blobs.size(); ++k) s.blobs[k].offset = slots_[size_t(s.blob_owner)].blobs[k].offset;
  // The destructor does not run for a constructor that throws: whatever was allocated is freed here.
  try {
    allocate_parameters();
    set_batch_size(1);
  } catch (...) {
    free_activations();
    for (float* p : {params_, grads_, lr_mult_, decay_mask_}) be_.free(p);
    throw;
  }
}

void Network::allocate_parameters() {
  params_ = be_.alloc(std::max<size_t>(n_total_, 1));
  grads_ = be_.alloc(std::max<size_t>(n_train_, 1));
  std::vector<float> lr(n_train_, 0.f), decay(n_train_, 0.f);
  for (auto& s : slots_)
    for (auto& b : s.blobs) {
      if (b.spec.role == BlobRole::kState) continue;
      std::fill(lr.begin() + b.offset, lr.begin() + b.offset + b.size, float(b.spec.lr_mult));
      // weight_prior regularises every blob exchanged as 'weights' and never a bias (spec E.5).
      std::fill(decay.begin() + b.offset, decay.begin() + b.offset + b.size,
                b.spec.role == BlobRole::kWeights ? 1.f : 0.f);
    }
  lr_mult_ = be_.alloc(std::max<size_t>(n_train_, 1));
  decay_mask_ = be_.alloc(std::max<size_t>(n_train_, 1));
  if (n_train_) {
    be_.upload(lr_mult_, lr.data(), n_train_);
    be_.upload(decay_mask_, decay.data(), n_train_);
  }
}

Network::~Network() {
  free_activations();
  free_folds();
  be_.free(params_);
  be_.free(grads_);
  be_.free(lr_mult_);
  be_.free(decay_mask_);
}

void Network::free_activations() {
  for (float* p : owned_) be_.free(p);
  owned_.clear();
  owned_floats_ = 0;
  step_values_ = nullptr;
  step_seed_ = nullptr;
  be_.free(arena_);
  arena_ = nullptr;
  arena_floats_ = 0;
  be_.free(grad_arena_);
  grad_arena_ = nullptr;
  grad_arena_floats_ = 0;
  planned_ = false;
}

namespace {
// A buffer of `size` floats alive over the steps [first, last] (inclusive), to be placed in an arena.
struct Life {
  int slot, first, last;
  size_t size, offset;
};

size_t aligned_size(int64_t numel) { return (size_t(numel) + 15) / 16 * 16; }  // 64-byte aligned offsets

// Greedy by size: each buffer, largest first, at the lowest offset clear of every placed buffer it is alive
// together with. Returns the arena size in floats.
size_t place(std::vector<Life>& lives) {
  std::stable_sort(lives.begin(), lives.end(), [](const Life& a, const Life& b) { return a.size > b.size; });
  size_t total = 0;
  std::vector<std::pair<size_t, size_t>> busy;
  for (size_t t = 0; t < lives.size(); ++t) {
    Life& l = lives[t];
    busy.clear();
    for (size_t u = 0; u < t; ++u)
      if (lives[u].first <= l.last && l.first <= lives[u].last)
        busy.emplace_back(lives[u].offset, lives[u].offset + lives[u].size);
    std::sort(busy.begin(), busy.end());
    size_t off = 0;
    for (const auto& [lo, hi] : busy) {
      if (off + l.size <= lo) break;
      off = std::max(off, hi);
    }
    l.offset = off;
    total = std::max(total, off + l.size);
  }
  return total;
}
}  // namespace

void Network::free_folds() {
  for (auto& kv : folds_) {
    be_.free(kv.second.w);
    be_.free(kv.second.b);
  }
  folds_.clear();
  prepared_.clear();
}

namespace {
bool g_blocked = true;
}  // namespace
void set_blocked_layouts(bool on) { g_blocked = on; }
bool blocked_layouts() { return g_blocked; }

void Network::set_batch_size(int64_t n) {
  if (n < 1) fail(err::kWrongValue3, "batch_size must be at least 1, got " + std::to_string(n));
  // Infer first, allocate after: a failing shape check leaves the network as it was.
  std::vector<Shape4> shapes(slots_.size());
  std::vector<std::vector<Shape4>> in_shapes(slots_.size());
  for (size_t i = 0; i < slots_.size(); ++i) {
    auto& s = slots_[i];
    for (int j : s.inputs) in_shapes[i].push_back(shapes[j]);
    if (s.layer->is_input()) {
      shapes[i] = s.layer->shape();
      shapes[i].n = n;
    } else {
      shapes[i] = s.layer->infer(in_shapes[i]);
    }
    // Sizes whose counts overflow 64 bits (in values, or in bytes summed over a network's buffers) would wrap
    // into small or negative buffer sizes: refused here, before anything is allocated. Smaller sizes that do
    // not fit the memory are refused by the allocator (6001 / 4104).
    constexpr int64_t kMaxValues = int64_t(1) << 56;
    int64_t values = 1;
    for (int64_t d : {shapes[i].n, shapes[i].c, shapes[i].h, shapes[i].w})
      if (d < 0 || __builtin_mul_overflow(values, d, &values) || values > kMaxValues)
        fail(err::kInvalidShape, "layer '" + s.layer->name() + "': output shape " + shapes[i].str() +
                                     " holds more than 2^56 values (batch_size " + std::to_string(n) + ")");
  }
  const std::vector<int64_t> blocks = plan_layouts(shapes);
  const int64_t old = batch_size_;
  free_activations();
  try {
    allocate_activations(n, shapes, in_shapes, blocks);
  } catch (...) {
    // Out of (device) memory: back to the previous size, which fitted before its buffers were freed, so that
    // the network stays usable as it was. Should even that fail, it holds no activations and says so on use.
    free_activations();
    batch_size_ = 0;
    if (old > 0) {
      try {
        set_batch_size(old);
      } catch (...) {
        free_activations();
        batch_size_ = 0;
      }
    }
    throw;
  }
}

void Network::allocate_activations(int64_t n, const std::vector<Shape4>& shapes,
                                   const std::vector<std::vector<Shape4>>& in_shapes,
                                   const std::vector<int64_t>& blocks) {
  static std::atomic<uint64_t> epochs{0};
  buffer_epoch_ = ++epochs;
  batch_size_ = n;
  last_run_.clear();  // new buffers hold no call's outputs
  auto own = [&](size_t floats) {
    float* p = be_.alloc(floats);
    owned_.push_back(p);
    owned_floats_ += floats;
    return p;
  };
  for (size_t i = 0; i < slots_.size(); ++i) {
    auto& s = slots_[i];
    s.shape = shapes[i];
    s.in_shapes = in_shapes[i];
    s.block = blocks[i];
    // Inference-only: inputs own their buffers, every other output lives in the planned arena (run_inference).
    const size_t numel = static_cast<size_t>(s.shape.numel());
    s.y = !inference_only_ || s.layer->is_input() ? own(numel) : nullptr;
    s.dy = nullptr;
    s.scratch.clear();
    s.scratch_sizes = s.layer->scratch_sizes(s.in_shapes, s.shape);
    for (auto sz : s.scratch_sizes) s.scratch.push_back(own(static_cast<size_t>(std::max<int64_t>(sz, 1))));
    s.constants.clear();
    for (const auto& c : s.layer->constants(s.in_shapes, s.shape)) {
      s.constants.push_back(own(std::max<size_t>(c.size(), 1)));
      if (!c.empty()) be_.upload(s.constants.back(), c.data(), c.size());
    }
  }
  if (inference_only_) return;
  // doubles; alloc returns storage aligned for them
  // the loss values, two for the caller, then the step seed (a uint64_t in a double's place)
  step_values_ = reinterpret_cast<double*>(own(2 * (loss_layers().size() + 3)));
  step_seed_ = reinterpret_cast<uint64_t*>(step_values_ + loss_layers().size() + 2);
  loss_index_.assign(slots_.size(), -1);
  int nl = 0;
  for (size_t i = 0; i < slots_.size(); ++i)
    if (slots_[i].layer->is_loss()) loss_index_[i] = nl++;
  // Output gradients (see set_keep_gradients): owned when kept and for input layers, else planned.
  std::vector<Life> lives;
  for (size_t j = 0; j < slots_.size(); ++j) {
    auto& s = slots_[j];
    if (keep_grads_ || s.layer->is_input()) {
      s.dy = own(size_t(s.shape.numel()));
      continue;
    }
    int last = -1;  // the last consumer passing a gradient to j: the first backward step writing it
    for (int c : s.consumers) {
      const auto& cs = slots_[size_t(c)];
      for (size_t k = 0; k < cs.inputs.size(); ++k)
        if (cs.inputs[k] == int(j) && cs.layer->input_needs_grad(k)) last = std::max(last, c);
    }
    if (last >= 0) lives.push_back({int(j), int(j), last, aligned_size(s.shape.numel()), 0});
  }
  const size_t total = place(lives);
  if (total > 0) {
    grad_arena_ = be_.alloc(total);
    grad_arena_floats_ = total;
  }
  for (const Life& l : lives) slots_[size_t(l.slot)].dy = grad_arena_ + l.offset;
}

void Network::set_keep_gradients(bool on) {
  if (on == keep_grads_) return;
  keep_grads_ = on;
  const int64_t n = batch_size_;
  if (n < 1) return;
  try {
    set_batch_size(n);
  } catch (...) {
    // set_batch_size could not fall back (same size, same new setting): the old setting at the same size fitted.
    keep_grads_ = !on;
    try {
      set_batch_size(n);
    } catch (...) {
    }
    throw;
  }
}

bool Network::gradient_kept(size_t i) const {
  const LayerSlot& s = slots_[i];
  if (inference_only_ || !s.dy) return false;
  return s.layer->is_input() ? input_gradients() : keep_grads_;
}

// Every candidate tensor starts blocked; constraints along the edges turn tensors plain until none is violated
// (each pass only turns blocked into plain, so this ends): a plain-only layer needs plain inputs, a kSame layer
// the layout of its output on all inputs. Candidates: outputs of layers handling blocked layouts, with a depth
// that is a multiple of the block, that are not model outputs (which users read plain).
std::vector<int64_t> Network::plan_layouts(const std::vector<Shape4>& shapes) const {
  std::vector<int64_t> b(slots_.size(), 0);
  if (!g_blocked) return b;
  // Channels-last where the backend offers it for tensors of at least kWide channels, unless the network has
  // grouped (e.g. depthwise) convolutions, else the fixed block. Measured on the AVX2 machine at batch 16-32:
  // oneDNN's nhwc kernels run the forward pass of 128- to 512-channel 3x3 layers up to 2x faster than its nChw8c
  // kernels, while narrower layers (the 5-conv CNN: 40 against 48 ms per step) and depthwise networks
  // (MobileNetV2: 366 against 489 ms) train faster on the fixed block. Tensors of equal depth get equal layouts,
  // so layers that keep their input's layout (batch norm, pooling, ...) never separate them.
  constexpr int64_t kWide = 128;
  bool grouped = false;
  for (const auto& s : slots_)
    if (s.layer->type() == "convolution" && s.layer->int_param("groups") > 1) grouped = true;
  const int cl = be_.channels_last();
  const int64_t B = be_.activation_block();
  if (B == 0 && cl == 0) return b;
  using L = Layer::Layouts;
  for (size_t i = 0; i < slots_.size(); ++i) {
    const auto& s = slots_[i];
    const bool output = std::find(outputs_.begin(), outputs_.end(), int(i)) != outputs_.end();
    if (s.layer->is_input() || output || s.layer->layouts() == L::kPlainOnly) continue;
    const int64_t c = shapes[i].c;
    if (cl == 2 || (cl == 1 && !grouped && c >= kWide) || (B == 0 && cl == 1)) b[i] = c;
    else if (B > 0 && c % B == 0) b[i] = B;
  }
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t i = 0; i < slots_.size(); ++i) {
      const auto& s = slots_[i];
      if (s.layer->is_input()) continue;
      const L kind = s.layer->layouts();
      for (int j : s.inputs) {
        int64_t& bj = b[size_t(j)];
        if (kind == L::kPlainOnly && bj) bj = 0, changed = true;
        if (kind == L::kSame && bj != b[i]) {
          if (bj) bj = 0;
          else b[i] = 0;
          changed = true;
        }
      }
    }
  }
  return b;
}

namespace {
double fan(const BlobSpec& s) {
  if (s.variance_norm == "norm_out") return s.fan_out;
  if (s.variance_norm == "norm_average") return 0.5 * (s.fan_in + s.fan_out);
  return s.fan_in;
}
}  // namespace

void Network::init_params(Rng& rng) {
  std::vector<float> host(n_total_);
  for (auto& s : slots_)
    for (auto& b : s.blobs) {
      float* p = host.data() + b.offset;
      const BlobSpec& sp = b.spec;
      switch (sp.filler) {
        case Filler::kXavier: {
          // Glorot & Bengio (2010) in Caffe's form: uniform in [-a, a], a = sqrt(3 / n).
          double a = std::sqrt(3.0 / std::max(fan(sp), 1.0));
          for (size_t i = 0; i < b.size; ++i) p[i] = float((2.0 * rng.uniform() - 1.0) * a);
          break;
        }
        case Filler::kMsra: {
          // He et al. (2015): zero-mean Gaussian with variance 2 / n.
          double sd = std::sqrt(2.0 / std::max(fan(sp), 1.0));
          for (size_t i = 0; i < b.size; ++i) p[i] = float(rng.normal() * sd);
          break;
        }
        case Filler::kConst: std::fill(p, p + b.size, float(sp.const_val)); break;
        case Filler::kZero: std::fill(p, p + b.size, 0.f); break;
        case Filler::kOne: std::fill(p, p + b.size, 1.f); break;
      }
    }
  if (n_total_) be_.upload(params(), host.data(), n_total_);
}

LayerIO Network::io(size_t i, bool training, Rng* rng) {
  LayerSlot& s = slots_[i];
  LayerIO io;
  for (int j : s.inputs) {
    io.x.push_back(slots_[size_t(j)].y);
    io.xb.push_back(slots_[size_t(j)].block);
  }
  io.xs = s.in_shapes;
  io.y = s.y;
  io.yb = s.block;
  io.ys = s.shape;
  io.dy = s.dy;
  for (auto& b : s.blobs) {
    io.w.push_back(params_ + b.offset);
    io.dw.push_back(b.spec.role == BlobRole::kState ? nullptr : grads_ + b.offset);
  }
  io.scratch = s.scratch;
  io.constants.assign(s.constants.begin(), s.constants.end());
  if (training) ++params_version_;  // training forward passes update statistics blobs
  // Inference calls (of an inference plan, or forward passes outside training) get the slot's prepared weights:
  // the backend keeps them in its kernel's form (reordered, Winograd-transformed) until the weights change. A
  // training pass drops them, as each step changes the weights, so that they hold no memory during training.
  if (inference_only_ || !training) {
    if (prepared_.size() != slots_.size()) prepared_.assign(slots_.size(), PreparedWeights{});
    prepared_[i].version = params_version_;
    io.prepared = &prepared_[i];
  } else if (i < prepared_.size() && prepared_[i].data) {
    prepared_[i] = PreparedWeights{};
  }
  io.training = training;
  io.rng = rng;
  if (training && step_values_) {
    io.step_seed = step_seed();
    io.salt = i;
  }
  io.be = &be_;
  return io;
}

void Network::download_plain(size_t i, bool gradient, float* host) {
  const LayerSlot& s = slots_[i];
  const float* src = gradient ? s.dy : s.y;
  const size_t n = size_t(s.shape.numel());
  if (!s.block) {
    be_.download(host, src, n);
    return;
  }
  float* tmp = be_.alloc(n);
  be_.to_plain(src, tmp, s.shape, s.block);
  be_.download(host, tmp, n);
  be_.free(tmp);
}

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
}  // namespace

void Network::forward_layer(size_t i, bool training, Rng* rng, bool accumulate_losses) {
  auto& s = slots_[i];
  LayerIO io = this->io(i, training, rng);
  if (training && step_values_ && loss_index_[i] >= 0) {
    io.loss_sum = step_values_ + loss_index_[i];
    io.accumulate_loss = accumulate_losses;
  }
  const auto t0 = profiling_ ? Clock::now() : Clock::time_point{};
  s.layer->forward(io);
  if (profiling_) {
    times_[i].forward_s += seconds_since(t0);
    ++times_[i].forward_calls;
  }
}

void Network::forward(bool training, Rng& rng, bool accumulate_losses) {
  if (inference_only_) fail(err::kInternal, "the network holds inference buffers only");
  for (size_t i = 0; i < slots_.size(); ++i)
    if (!slots_[i].layer->is_input() && (!training || in_training_[i])) forward_layer(i, training, &rng, accumulate_losses);
  last_run_ = training ? in_training_ : std::vector<bool>(slots_.size(), true);
}

void Network::backward(float loss_scale, bool accumulate_dw) {
  if (inference_only_) fail(err::kInternal, "the network holds inference buffers only");
  std::vector<bool> written(slots_.size(), false);
  // Per blob owner: whether a layer using its blobs has written their gradients in this pass (sharing).
  std::vector<bool> dw_written(slots_.size(), false);
  for (int i = static_cast<int>(slots_.size()) - 1; i >= 0; --i) {
    auto& s = slots_[i];
    if (s.layer->is_input()) continue;
    bool is_loss = s.layer->is_loss();
    const size_t owner = s.blob_owner >= 0 ? size_t(s.blob_owner) : size_t(i);
    if (!is_loss && !written[i]) {
      // No gradient reaches this layer (an output that is not a loss, or a branch that ends nowhere):
      // its parameter gradients are zero.
      if (!accumulate_dw && !dw_written[owner])
        for (auto& b : s.blobs)
          if (b.spec.role != BlobRole::kState) be_.fill(grads_ + b.offset, b.size, 0.f);
      dw_written[owner] = true;
      continue;
    }
    LayerIO io = this->io(size_t(i), true, nullptr);
    io.accumulate_dw = accumulate_dw || dw_written[owner];
    dw_written[owner] = true;
    io.loss_scale = loss_scale * static_cast<float>(s.layer->loss_weight());
    if (is_loss) io.dy = nullptr;
    for (size_t k = 0; k < s.inputs.size(); ++k) {
      int j = s.inputs[k];
      bool need = s.layer->input_needs_grad(k) && (!slots_[j].layer->is_input() || input_gradients());
      io.dx.push_back(need ? slots_[j].dy : nullptr);
      io.accumulate_dx.push_back(need && written[j]);
      if (need) written[j] = true;
    }
    const auto t0 = profiling_ ? Clock::now() : Clock::time_point{};
    s.layer->backward(io);
    if (profiling_) {
      times_[size_t(i)].backward_s += seconds_since(t0);
      ++times_[size_t(i)].backward_calls;
    }
  }
  // Readable gradients nobody wrote (input layers, layers no gradient reaches) hold zeros, not stale values.
  for (size_t i = 0; i < slots_.size(); ++i)
    if (!written[i] && gradient_kept(i)) be_.fill(slots_[i].dy, size_t(slots_[i].shape.numel()), 0.f);
}

// --- inference-only execution ---------------------------------------------------------------------------------

void Network::set_inference_only(bool on) {
  if (on == inference_only_) return;
  inference_only_ = on;
  free_folds();
  set_batch_size(batch_size_);
}

bool Network::output_kept(size_t i) const {
  if (!inference_only_ || slots_[i].layer->is_input()) return true;
  return planned_ && i < kept_.size() && kept_[i];
}

size_t Network::buffer_bytes() const {
  return (owned_floats_ + arena_floats_ + grad_arena_floats_) * sizeof(float);
}

std::vector<std::string> Network::names_where(const std::vector<bool>& marked) const {
  std::vector<std::string> v;
  for (size_t i = 0; i < slots_.size() && i < marked.size(); ++i)
    if (marked[i]) v.push_back(slots_[i].layer->name());
  return v;
}

std::vector<std::string> Network::folded_layers() const {
  return inference_only_ && planned_ ? names_where(fus_.folded) : std::vector<std::string>{};
}

std::vector<std::string> Network::fused_layers() const {
  return inference_only_ && planned_ ? names_where(fus_.fused) : std::vector<std::string>{};
}

std::vector<std::string> Network::fusable_layers() const {
  std::vector<bool> keeping(slots_.size(), false);
  for (int o : outputs_) keeping[size_t(o)] = true;
  return names_where(plan_fusions(std::vector<bool>(slots_.size(), true), keeping).fused);
}

int Network::fold_source(size_t b) const {
  const LayerSlot& s = slots_[b];
  if (s.layer->type() != "batchnorm" || s.inputs.size() != 1) return -1;
  const int c = s.inputs[0];
  const LayerSlot& cs = slots_[size_t(c)];
  const bool output = std::find(outputs_.begin(), outputs_.end(), c) != outputs_.end();
  if (cs.layer->is_input() || !cs.layer->can_fuse() || cs.consumers.size() != 1 || output) return -1;
  return c;
}

std::vector<std::string> Network::foldable_layers() const {
  std::vector<std::string> v;
  for (size_t b = 0; b < slots_.size(); ++b)
    if (fold_source(b) >= 0) v.push_back(slots_[b].layer->name());
  return v;
}

namespace {
// A two-input elementwise sum with unit coefficients (the residual connection of ResNet-like networks).
bool unit_sum(const Layer& l) {
  if (l.type() != "elementwise" || l.inputs().size() != 2 || l.str_param("operation") != "sum") return false;
  for (const Value& c : l.param("coefficients"))
    if (as_double(c) != 1.0) return false;
  return true;
}
}  // namespace

// Folds: a batch normalisation into the convolution before it (fold_source), unless the caller keeps the
// convolution's output. Residual sums: a sum `a` of unit coefficients, one of whose inputs `v` is computed by a
// convolution `c` without activation of its own (v = c, or c's folded normalisation) and read by `a` alone, is
// computed by c's post-ops into the buffer of the other input `o` (the residual): c adds its result to what
// that buffer holds, and a ReLU layer that alone reads `a` becomes a further post-op. This needs `o` to be
// computed before c and to be the value its buffer holds then, no layer other than `a` to read that buffer at
// or after c's step (c itself included), and neither v, o nor (with a ReLU taken in) a to be kept.
Network::Fusions Network::plan_fusions(const std::vector<bool>& needed, const std::vector<bool>& keeping) const {
  const size_t n = slots_.size();
  Fusions f;
  f.fold_bn.assign(n, -1);
  f.folded.assign(n, false);
  f.dest.assign(n, -1);
  f.sum.assign(n, 0);
  f.relu.assign(n, false);
  f.fused.assign(n, false);
  f.storage.resize(n);
  f.step.resize(n);
  for (size_t i = 0; i < n; ++i) f.storage[i] = f.step[i] = int(i);
  for (size_t b = 0; b < n; ++b) {
    const int c = needed[b] ? fold_source(b) : -1;
    if (c < 0 || keeping[size_t(c)]) continue;
    f.fold_bn[size_t(c)] = int(b);
    f.folded[b] = true;
    f.step[b] = c;
  }
  std::vector<int> latest(n);  // per buffer: the slot whose value it holds after all fusions so far
  for (size_t i = 0; i < n; ++i) latest[i] = int(i);
  // Last step at which buffer r is read by a layer other than `except`.
  auto last_read = [&](int r, int except) {
    int last = -1;
    for (size_t q = 0; q < n; ++q) {
      if (!needed[q] || int(q) == except || slots_[q].layer->is_input() || f.folded[q]) continue;
      for (int j : slots_[q].inputs)
        if (f.storage[size_t(j)] == r) last = std::max(last, f.step[q]);
    }
    return last;
  };
  for (size_t a = 0; a < n; ++a) {
    if (!needed[a] || !unit_sum(*slots_[a].layer)) continue;
    for (int p : {0, 1}) {
      const int v = slots_[a].inputs[size_t(p)], o = slots_[a].inputs[size_t(1 - p)];
      if (v == o) break;
      const LayerSlot& vs = slots_[size_t(v)];
      const int c = f.folded[size_t(v)] ? vs.inputs[0] : v;
      const LayerSlot& cs = slots_[size_t(c)];
      if (cs.layer->is_input() || !cs.layer->can_fuse() || f.dest[size_t(c)] >= 0 || f.fused[size_t(v)]) continue;
      if (keeping[size_t(v)] || vs.consumers.size() != 1) continue;
      const LayerSlot& os = slots_[size_t(o)];
      const int r = f.storage[size_t(o)];
      if (os.layer->is_input() || !needed[size_t(o)] || keeping[size_t(o)] || f.fold_bn[size_t(o)] >= 0) continue;
      if (latest[size_t(r)] != o || f.step[size_t(o)] >= c || last_read(r, int(a)) >= c) continue;
      int dest = int(a);
      int64_t sum = 1;
      const LayerSlot& as = slots_[a];
      if (!keeping[a] && as.consumers.size() == 1) {
        const int q = as.consumers[0];
        const LayerSlot& qs = slots_[size_t(q)];
        if (needed[size_t(q)] && qs.inputs.size() == 1 && qs.layer->fusable_activation() == Act::kRelu) {
          dest = q;
          sum = 2;
          f.fused[size_t(q)] = true;
        }
      }
      f.fused[a] = true;
      f.dest[size_t(c)] = dest;
      f.sum[size_t(c)] = sum;
      f.storage[a] = f.storage[size_t(dest)] = r;
      f.step[a] = f.step[size_t(dest)] = c;
      latest[size_t(r)] = dest;
      break;
    }
  }
  // ReLU layers: a plain ReLU layer q whose input p is read by q alone and not kept is computed by p's producer
  // into q's own buffer (p is not materialised): a convolution without activation (p = c, or c's folded
  // normalisation; fuse_conv_relu) as a ReLU post-op, a batch normalisation that is not folded (fuse_bn_relu)
  // with its ReLU. Producers that already compute a residual sum are left alone.
  for (size_t q = 0; q < n; ++q) {
    const LayerSlot& qs = slots_[q];
    if (!needed[q] || f.fused[q] || qs.inputs.size() != 1 || qs.layer->fusable_activation() != Act::kRelu) continue;
    const int p = qs.inputs[0];
    const LayerSlot& ps = slots_[size_t(p)];
    if (ps.layer->is_input() || keeping[size_t(p)] || ps.consumers.size() != 1 || f.fused[size_t(p)]) continue;
    int producer = -1;
    if (f.folded[size_t(p)]) {
      if (fuse_conv_relu_) producer = ps.inputs[0];
    } else if (ps.layer->can_fuse()) {
      if (fuse_conv_relu_ && f.fold_bn[size_t(p)] < 0) producer = p;
    } else if (ps.layer->can_fuse_relu()) {
      if (fuse_bn_relu_) producer = p;
    }
    if (producer < 0 || f.dest[size_t(producer)] >= 0) continue;
    f.fused[q] = true;
    f.dest[size_t(producer)] = int(q);
    f.relu[size_t(producer)] = true;
    f.step[q] = f.step[size_t(producer)];
  }
  return f;
}

void Network::set_relu_fusion(bool conv, bool bn) {
  if (conv == fuse_conv_relu_ && bn == fuse_bn_relu_) return;
  fuse_conv_relu_ = conv;
  fuse_bn_relu_ = bn;
  planned_ = false;
}

void Network::plan_inference(const std::vector<bool>& needed, const std::vector<int>& keep_list) {
  std::vector<int> keep = keep_list;
  std::sort(keep.begin(), keep.end());
  keep.erase(std::unique(keep.begin(), keep.end()), keep.end());
  if (planned_ && needed == plan_needed_ && keep == plan_keep_) return;
  planned_ = false;
  const size_t n = slots_.size();
  std::vector<bool> keeping(n, false);
  for (int i : keep) keeping[size_t(i)] = true;
  fus_ = plan_fusions(needed, keeping);
  const Fusions& F = fus_;
  for (auto it = folds_.begin(); it != folds_.end();) {
    if (F.fold_bn[size_t(it->first)] >= 0) {
      ++it;
      continue;
    }
    be_.free(it->second.w);
    be_.free(it->second.b);
    it = folds_.erase(it);
  }
  for (size_t c = 0; c < n; ++c) {
    if (F.fold_bn[c] < 0 || folds_.count(int(c))) continue;
    const LayerSlot& cs = slots_[c];
    Fold f;
    f.w = be_.alloc(cs.blobs[0].size);
    f.b = be_.alloc(size_t(cs.blobs[0].spec.shape[0]));
    f.relu = slots_[size_t(F.fold_bn[c])].layer->str_param("activation") == "relu";
    folds_[int(c)] = f;
  }
  if (prepared_.size() != n) prepared_.assign(n, PreparedWeights{});
  // Lifetimes in steps (= slot indices) of the buffers: a buffer is written at the step of the slot it belongs
  // to (a folded normalisation's or fused sum's by its convolution), read until `last`, and lives to the end
  // when any value it holds is kept. Values of fused sums share their residual's buffer (see plan_fusions).
  std::vector<int> first(n, -1), last(n, -1);
  auto runs = [&](size_t i) {
    return needed[i] && !slots_[i].layer->is_input() && !F.folded[i] && !F.fused[i];
  };
  for (size_t i = 0; i < n; ++i) {
    if (!runs(i) || F.sum[i] > 0) continue;  // a fused sum writes its residual's buffer in place
    // the slot whose buffer step i writes: a merged ReLU layer's, a folded normalisation's, or its own
    const size_t w = F.dest[i] >= 0 ? size_t(F.dest[i]) : F.fold_bn[i] >= 0 ? size_t(F.fold_bn[i]) : i;
    first[w] = last[w] = int(i);
  }
  for (size_t i = 0; i < n; ++i) {
    if (!runs(i)) continue;
    for (int j : slots_[i].inputs) {
      const size_t r = size_t(F.storage[size_t(j)]);
      if (first[r] >= 0) last[r] = std::max(last[r], int(i));
    }
    if (F.sum[i] > 0) {  // reads and rewrites its residual's buffer
      const size_t r = size_t(F.storage[size_t(F.dest[i])]);
      last[r] = std::max(last[r], int(i));
    }
  }
  for (size_t i = 0; i < n; ++i)
    if (keeping[i] && needed[i] && !slots_[i].layer->is_input()) {
      const size_t r = size_t(F.storage[i]);
      if (first[r] >= 0) last[r] = int(n);
    }
  std::vector<Life> lives;
  for (size_t i = 0; i < n; ++i)
    if (first[i] >= 0) lives.push_back({int(i), first[i], last[i], aligned_size(slots_[i].shape.numel()), 0});
  const size_t total = place(lives);
  if (total > arena_floats_) {
    be_.free(arena_);
    arena_ = nullptr;
    arena_floats_ = 0;
    arena_ = be_.alloc(total);
    arena_floats_ = total;
  }
  for (auto& s : slots_)
    if (!s.layer->is_input()) s.y = nullptr;
  for (const Life& l : lives) slots_[size_t(l.slot)].y = arena_ + l.offset;
  for (size_t i = 0; i < n; ++i)
    if (needed[i] && !slots_[i].layer->is_input() && F.storage[i] != int(i))
      slots_[i].y = slots_[size_t(F.storage[i])].y;
  kept_ = keeping;
  plan_needed_ = needed;
  plan_keep_ = keep;
  planned_ = true;
}

void Network::refresh_fold(int c, int b) {
  Fold& f = folds_.at(c);
  if (f.version == params_version_) return;
  const LayerSlot& cs = slots_[size_t(c)];
  const LayerSlot& bs = slots_[size_t(b)];
  const BlobSlot& wb = cs.blobs[0];
  const size_t k = size_t(wb.spec.shape[0]), per = wb.size / k;
  std::vector<float> w(wb.size), bias(k, 0.f), gamma(k), beta(k), mean(k), var(k);
  be_.download(w.data(), params_ + wb.offset, wb.size);
  if (cs.blobs.size() > 1) be_.download(bias.data(), params_ + cs.blobs[1].offset, k);
  be_.download(gamma.data(), params_ + bs.blobs[0].offset, k);
  be_.download(beta.data(), params_ + bs.blobs[1].offset, k);
  be_.download(mean.data(), params_ + bs.blobs[2].offset, k);
  be_.download(var.data(), params_ + bs.blobs[3].offset, k);
  const double eps = bs.layer->real_param("epsilon");
  for (size_t o = 0; o < k; ++o) {
    const double scale = double(gamma[o]) / std::sqrt(double(var[o]) + eps);
    for (size_t q = 0; q < per; ++q) w[o * per + q] = float(double(w[o * per + q]) * scale);
    bias[o] = float((double(bias[o]) - double(mean[o])) * scale + double(beta[o]));
  }
  be_.upload(f.w, w.data(), wb.size);
  be_.upload(f.b, bias.data(), k);
  f.version = params_version_;
}

void Network::run_inference(const std::vector<bool>& needed, const std::vector<int>& keep, Rng& rng) {
  if (!inference_only_) fail(err::kInternal, "run_inference needs the inference-only mode");
  plan_inference(needed, keep);
  const Fusions& F = fus_;
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (!needed[i] || slots_[i].layer->is_input() || F.folded[i] || F.fused[i]) continue;
    const int b = F.fold_bn[i], d = F.dest[i];
    if (b < 0 && d < 0) {
      forward_layer(i, false, &rng);
      continue;
    }
    LayerIO io = this->io(i, false, &rng);
    bool relu = F.relu[i];
    if (b >= 0) {
      refresh_fold(int(i), b);
      const Fold& f = folds_.at(int(i));
      io.w = {f.w, f.b};
      relu = relu || f.relu;
    }
    io.dw.assign(io.w.size(), nullptr);
    const LayerSlot& out = slots_[size_t(d >= 0 ? d : b)];  // the slot whose value the convolution computes
    io.y = out.y;
    io.yb = out.block;
    io.ys = out.shape;
    const auto t0 = profiling_ ? Clock::now() : Clock::time_point{};
    slots_[i].layer->forward_fused(io, relu, F.sum[i]);
    if (profiling_) {
      times_[i].forward_s += seconds_since(t0);
      ++times_[i].forward_calls;
    }
  }
}

int Network::find(const std::string& name) const {
  for (size_t i = 0; i < slots_.size(); ++i)
    if (slots_[i].layer->name() == name) return static_cast<int>(i);
  return -1;
}

bool Network::uses_step_seed() const {
  for (size_t i = 0; i < slots_.size(); ++i)
    if (in_training_[i] && slots_[i].layer->uses_step_seed()) return true;
  return false;
}

bool Network::capturable() const {
  for (size_t i = 0; i < slots_.size(); ++i) {
    const auto& s = slots_[i];
    if (in_training_[i] && !s.layer->is_input() && !s.layer->capturable(s.in_shapes)) return false;
  }
  return true;
}

std::vector<int> Network::loss_layers() const {
  std::vector<int> v;
  for (size_t i = 0; i < slots_.size(); ++i)
    if (slots_[i].layer->is_loss()) v.push_back(static_cast<int>(i));
  return v;
}

std::vector<int> Network::input_layers() const {
  std::vector<int> v;
  for (size_t i = 0; i < slots_.size(); ++i)
    if (slots_[i].layer->is_input()) v.push_back(static_cast<int>(i));
  return v;
}

}  // namespace opendl
