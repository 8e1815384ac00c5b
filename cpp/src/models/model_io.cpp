// Model architecture descriptions, rebuilds after architecture changes, weight transfer and the model file
// content (a Dict: see Model::to_dict). One code path serves write/read_dl_model, serialize/deserialize,
// class and image-size changes and load_dl_model_weights.
#include <algorithm>
#include <cstring>
#include <map>

#include "backend/gpu_backend.h"
#include "models/model.h"

namespace opendl {
namespace {

constexpr int64_t kModelFormatVersion = 1;

using BlobKey = std::pair<std::string, std::string>;  // (layer name, blob name)
struct BlobData {
  std::vector<int64_t> shape;
  std::vector<float> w, m, v;  // m, v only for trainable blobs
};

std::vector<LayerPtr> build_graph(const std::vector<LayerDesc>& ds, const std::vector<std::string>& outputs) {
  std::map<std::string, LayerPtr> made;
  for (auto& d : ds) {
    std::vector<LayerPtr> ins;
    for (auto& n : d.inputs) {
      auto it = made.find(n);
      if (it == made.end())
        fail(err::kInvalidInputData, "layer '" + d.name + "' takes input '" + n + "', which is not defined before it");
      ins.push_back(it->second);
    }
    if (made.count(d.name)) fail(err::kDuplicateName, "layer name '" + d.name + "' occurs twice");
    made[d.name] = restore_layer(d.type, ins, d.name, d.params);
  }
  std::vector<LayerPtr> outs;
  for (auto& n : outputs) {
    auto it = made.find(n);
    if (it == made.end()) fail(err::kInvalidInputData, "output layer '" + n + "' is not defined");
    outs.push_back(it->second);
  }
  return outs;
}

DictPtr sub(const Dict& d, const std::string& k) { return d.get_dict(k); }

Tensor blob_tensor(const std::vector<int64_t>& shape, const float* src) {
  Tensor t(shape);
  std::memcpy(t.f32(), src, size_t(t.numel()) * sizeof(float));
  return t;
}

}  // namespace

std::vector<std::string> Model::output_names() const {
  std::vector<std::string> v;
  for (int o : net_->outputs()) v.push_back(net_->slots()[o].layer->name());
  return v;
}

std::vector<LayerDesc> Model::describe() const {
  std::vector<LayerDesc> out;
  for (auto& s : net_->slots()) {
    LayerDesc d{s.layer->type(), s.layer->name(), {}, s.layer->params()};
    for (auto& in : s.layer->inputs()) d.inputs.push_back(in->name());
    out.push_back(std::move(d));
  }
  return out;
}

namespace {
// All blobs (and for trainable ones the solver moments) of a network, downloaded to the host.
std::map<BlobKey, BlobData> snapshot(Network& net, const float* m, const float* v) {
  std::map<BlobKey, BlobData> out;
  Backend& be = net.backend();
  for (auto& s : net.slots())
    for (auto& b : s.blobs) {
      BlobData d;
      d.shape = b.spec.shape;
      d.w.resize(b.size);
      be.download(d.w.data(), net.params() + b.offset, b.size);
      if (b.offset < net.num_trainable()) {
        d.m.resize(b.size);
        d.v.resize(b.size);
        be.download(d.m.data(), m + b.offset, b.size);
        be.download(d.v.data(), v + b.offset, b.size);
      }
      out[{s.layer->name(), b.spec.name}] = std::move(d);
    }
  return out;
}
}  // namespace

void Model::rebuild(const std::vector<LayerDesc>& layers, const std::vector<std::string>& outputs,
                    Backend* backend) {
  // Build and size the new network completely before anything of the current model changes.
  auto outs = build_graph(layers, outputs.empty() ? output_names() : outputs);
  auto net = std::make_unique<Network>(outs, backend ? *backend : net_->backend());
  net->set_inference_only(net_->inference_only());
  net->set_relu_fusion(net_->fuse_conv_relu(), net_->fuse_bn_relu());
  net->set_keep_gradients(net_->keep_gradients());
  net->set_batch_size(batch_size_);
  auto old = snapshot(*net_, m_, v_);
  Rng init_rng = rng_;
  net->init_params(init_rng);
  // The new solver state too is allocated while the model still holds its own (out of memory changes nothing).
  Backend& be = net->backend();
  const size_t ns = std::max<size_t>(net->num_trainable(), 1);
  float* m = be.alloc(ns);
  float* v = nullptr;
  try {
    v = be.alloc(ns);
    be.fill(m, ns, 0.f);
    be.fill(v, ns, 0.f);
  } catch (...) {
    be.free(m);
    be.free(v);
    throw;
  }
  net_->backend().free(m_);
  net_->backend().free(v_);
  net_ = std::move(net);
  m_ = m;
  v_ = v;
  rng_ = init_rng;
  for (auto& s : net_->slots())
    for (auto& b : s.blobs) {
      auto it = old.find({s.layer->name(), b.spec.name});
      if (it == old.end()) continue;
      const BlobData& d = it->second;
      const bool trainable = b.offset < net_->num_trainable();
      if (d.shape == b.spec.shape) {
        be.upload(net_->params() + b.offset, d.w.data(), b.size);
        if (trainable && !d.m.empty()) {
          be.upload(m_ + b.offset, d.m.data(), b.size);
          be.upload(v_ + b.offset, d.v.data(), b.size);
        }
      } else if (b.spec.shape.size() == 4 && d.shape.size() == 4 && d.shape[0] == b.spec.shape[0] &&
                 d.shape[2] == b.spec.shape[2] && d.shape[3] == b.spec.shape[3] &&
                 ((d.shape[1] == 3 && b.spec.shape[1] == 1) || (d.shape[1] == 1 && b.spec.shape[1] == 3))) {
        // Input channels 3 -> 1: a gray image g stands for (g, g, g), so the kernels of the three channels
        // are summed. 1 -> 3: each channel gets a third of the kernel, so a gray-valued colour image gives
        // the same response as before.
        const int64_t k = d.shape[0], hw = d.shape[2] * d.shape[3];
        std::vector<float> w(b.size, 0.f);
        for (int64_t o = 0; o < k; ++o)
          for (int64_t i = 0; i < hw; ++i) {
            if (d.shape[1] == 3) {
              w[size_t(o * hw + i)] = d.w[size_t((o * 3 + 0) * hw + i)] + d.w[size_t((o * 3 + 1) * hw + i)] +
                                      d.w[size_t((o * 3 + 2) * hw + i)];
            } else {
              for (int c = 0; c < 3; ++c) w[size_t((o * 3 + c) * hw + i)] = d.w[size_t(o * hw + i)] / 3.f;
            }
          }
        be.upload(net_->params() + b.offset, w.data(), b.size);
      }
    }
}

void Model::move_to(const std::string& runtime, int64_t gpu) {
  Backend& target = runtime == "gpu" ? gpu_backend(int(gpu)) : cpu_backend();
  if (&target != &net_->backend()) {
    // The rebuild initialises the new blobs from their fillers before copying the old values over them; the
    // model's random state must not advance for a move.
    const Rng keep = rng_;
    rebuild(describe(), {}, &target);
    rng_ = keep;
    has_step_ = false;
  }
  runtime_ = runtime;
  gpu_ = gpu;
}

std::vector<int64_t> Model::load_weights_from(Model& src) {
  std::scoped_lock lock(mu_, src.mu_);
  auto theirs = snapshot(*src.net_, src.m_, src.v_);
  // Match whole layers: same name, same type and every blob of the same shape.
  std::vector<int64_t> changed;
  std::map<std::string, const LayerSlot*> src_layers;
  for (auto& s : src.net_->slots()) src_layers[s.layer->name()] = &s;
  Backend& be = net_->backend();
  for (auto& s : net_->slots()) {
    int64_t n = 0;
    auto it = src_layers.find(s.layer->name());
    bool match = it != src_layers.end() && it->second->layer->type() == s.layer->type() && !s.blobs.empty() &&
                 it->second->blobs.size() == s.blobs.size();
    if (match)
      for (size_t i = 0; i < s.blobs.size(); ++i)
        match = match && it->second->blobs[i].spec.name == s.blobs[i].spec.name &&
                it->second->blobs[i].spec.shape == s.blobs[i].spec.shape;
    if (match)
      for (auto& b : s.blobs) {
        const BlobData& d = theirs.at({s.layer->name(), b.spec.name});
        be.upload(net_->params() + b.offset, d.w.data(), b.size);
        n += int64_t(b.size);
      }
    changed.push_back(n);
  }
  return changed;
}

DictPtr Model::to_dict() {
  std::lock_guard<std::mutex> lock(mu_);
  auto d = std::make_shared<Dict>();
  d->set_tuple("format", {std::string("opendl_model")});
  d->set_tuple("format_version", {kModelFormatVersion});
  d->set_tuple("type", {adapter_->type()});
  DictTuple layers;
  for (auto& ld : describe()) {
    auto l = std::make_shared<Dict>();
    l->set_tuple("type", {ld.type});
    l->set_tuple("name", {ld.name});
    Tuple ins(ld.inputs.begin(), ld.inputs.end());
    l->set_tuple("inputs", ins);
    auto p = std::make_shared<Dict>();
    for (auto& [k, v] : ld.params) p->set_tuple(k, v);
    l->set_dict("params", p);
    layers.emplace_back(l);
  }
  d->set("layers", layers);
  auto outs = output_names();
  d->set_tuple("outputs", Tuple(outs.begin(), outs.end()));
  auto blobs = std::make_shared<Dict>(), mom = std::make_shared<Dict>(), vel = std::make_shared<Dict>();
  for (auto& [key, data] : snapshot(*net_, m_, v_)) {
    auto get = [&](DictPtr& root) {
      if (!root->contains(key.first)) root->set_dict(key.first, std::make_shared<Dict>());
      return root->get_dict(key.first);
    };
    get(blobs)->set_object(key.second, blob_tensor(data.shape, data.w.data()));
    if (!data.m.empty()) {
      get(mom)->set_object(key.second, blob_tensor(data.shape, data.m.data()));
      get(vel)->set_object(key.second, blob_tensor(data.shape, data.v.data()));
    }
  }
  d->set_dict("blobs", blobs);
  d->set_dict("solver_moment1", mom);
  d->set_dict("solver_moment2", vel);
  auto h = std::make_shared<Dict>();
  h->set_tuple("batch_size", {batch_size_});
  h->set_tuple("batch_size_multiplier", {multiplier_});
  h->set_tuple("learning_rate", {lr_});
  h->set_tuple("momentum", {momentum_});
  h->set_tuple("weight_prior", {weight_prior_});
  h->set_tuple("adam_beta1", {beta1_});
  h->set_tuple("adam_beta2", {beta2_});
  h->set_tuple("adam_epsilon", {adam_eps_});
  h->set_tuple("solver_type", {solver_});
  h->set_tuple("adam_step", {adam_t_});
  h->set_tuple("has_step", {int64_t(has_step_)});
  h->set_tuple("optimize_for_inference", {int64_t(net_->inference_only())});
  h->set_tuple("fuse_conv_relu", {int64_t(net_->fuse_conv_relu())});
  h->set_tuple("fuse_bn_relu", {int64_t(net_->fuse_bn_relu())});
  h->set_tuple("precision_is_converted", {int64_t(converted_)});
  d->set_dict("hyper", h);
  Tuple rs;
  for (uint64_t w : rng_.state()) rs.emplace_back(static_cast<int64_t>(w));
  d->set_tuple("rng_state", rs);
  d->set_dict("meta_data", meta_);
  auto a = std::make_shared<Dict>();
  adapter_->save(*a);
  d->set_dict("adapter", a);
  return d;
}

std::shared_ptr<Model> Model::from_dict(const Dict& d, int code) {
  std::shared_ptr<Model> m(new Model());
  try {
    if (!d.contains("format") || d.get_tuple("format") != Tuple{std::string("opendl_model")})
      fail(code, "the data is not an opendl model (HALCON's own .hdl files cannot be read; export them to ONNX)");
    int64_t version = std::get<int64_t>(d.get_tuple("format_version").at(0));
    if (version > kModelFormatVersion)
      fail(err::kWrongVersion, "model format version " + std::to_string(version) + " is newer than this opendl reads (" +
                                   std::to_string(kModelFormatVersion) + ")");
    std::vector<LayerDesc> ds;
    const auto* layers = std::get_if<DictTuple>(d.find("layers"));
    if (!layers) fail(code, "no layer list");
    for (auto& e : *layers) {
      const auto* lp = std::get_if<DictPtr>(&e);
      if (!lp || !*lp) fail(code, "a layer entry is not a dict");
      const Dict& l = **lp;
      LayerDesc ld;
      ld.type = std::get<std::string>(l.get_tuple("type").at(0));
      ld.name = std::get<std::string>(l.get_tuple("name").at(0));
      for (auto& v : l.get_tuple("inputs")) ld.inputs.push_back(std::get<std::string>(v));
      DictPtr params = l.get_dict("params");
      for (auto& [k, v] : params->items()) {
        if (!std::holds_alternative<std::string>(k)) fail(code, "a layer parameter name is not a string");
        ld.params[std::get<std::string>(k)] = params->get_tuple(k);
      }
      ds.push_back(std::move(ld));
    }
    std::vector<std::string> outs;
    for (auto& v : d.get_tuple("outputs")) outs.push_back(std::get<std::string>(v));
    m->net_ = std::make_unique<Network>(build_graph(ds, outs), cpu_backend());
    m->adapter_ = make_adapter(std::get<std::string>(d.get_tuple("type").at(0)), code);
    m->adapter_->load(*sub(d, "adapter"));
    auto h = sub(d, "hyper");
    auto num = [&](const char* k) { return as_double(h->get_tuple(k).at(0)); };
    auto integer = [&](const char* k) { return std::get<int64_t>(h->get_tuple(k).at(0)); };
    m->batch_size_ = integer("batch_size");
    m->multiplier_ = integer("batch_size_multiplier");
    if (m->batch_size_ < 1 || m->multiplier_ < 1) fail(code, "invalid batch size");
    m->lr_ = num("learning_rate");
    m->momentum_ = num("momentum");
    m->weight_prior_ = num("weight_prior");
    m->beta1_ = num("adam_beta1");
    m->beta2_ = num("adam_beta2");
    m->adam_eps_ = num("adam_epsilon");
    m->solver_ = std::get<std::string>(h->get_tuple("solver_type").at(0));
    if (m->solver_ != "sgd" && m->solver_ != "adam") fail(code, "invalid solver type");
    m->adam_t_ = integer("adam_step");
    m->has_step_ = integer("has_step") != 0;
    // Absent in files written before these parameters existed.
    if (h->contains("precision_is_converted")) m->converted_ = integer("precision_is_converted") != 0;
    if (h->contains("optimize_for_inference")) m->net_->set_inference_only(integer("optimize_for_inference") != 0);
    if (h->contains("fuse_conv_relu"))
      m->net_->set_relu_fusion(integer("fuse_conv_relu") != 0, integer("fuse_bn_relu") != 0);
    m->net_->set_batch_size(m->batch_size_);
    m->alloc_solver_state();
    Backend& be = m->net_->backend();
    auto blobs = sub(d, "blobs"), mom = sub(d, "solver_moment1"), vel = sub(d, "solver_moment2");
    for (auto& s : m->net_->slots())
      for (auto& b : s.blobs) {
        auto load = [&](const DictPtr& root, float* dst) {
          const Tensor& t = root->get_dict(s.layer->name())->get_object(b.spec.name);
          if (t.dtype() != DType::kFloat32 || t.shape() != b.spec.shape)
            fail(code, "blob '" + b.spec.name + "' of layer '" + s.layer->name() + "' has the wrong shape");
          be.upload(dst + b.offset, t.f32(), b.size);
        };
        load(blobs, m->net_->params());
        if (b.offset < m->net_->num_trainable()) {
          load(mom, m->m_);
          load(vel, m->v_);
        }
      }
    auto rs = d.get_tuple("rng_state");
    if (rs.size() != 4) fail(code, "invalid RNG state");
    std::array<uint64_t, 4> st{};
    for (size_t i = 0; i < 4; ++i) st[i] = static_cast<uint64_t>(std::get<int64_t>(rs[i]));
    m->rng_.set_state(st);
    m->meta_ = sub(d, "meta_data");
  } catch (const Error& e) {
    if (e.code() == code || e.code() == err::kWrongVersion) throw;
    throw Error(code, "", "the model data is damaged or incomplete: " + e.message());
  } catch (const std::bad_variant_access&) {
    throw Error(code, "", "the model data is damaged: a value has the wrong type");
  } catch (const std::out_of_range&) {
    throw Error(code, "", "the model data is damaged: a value is missing");
  }
  return m;
}

}  // namespace opendl
