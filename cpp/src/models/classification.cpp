// The generic adapter (layer-built models) and the classification adapter (type 'classification').
// A classification network has an input layer for the image, a layer producing one score per class (dense or
// 1x1 convolution), a softmax over it and a cross-entropy loss whose target and weight inputs are input
// layers. The adapter maps DLSample 'image' / 'image_label_id' onto them: class ids become class indices and
// the weight input carries the class weight of each sample's class (spec E.3). Results are all classes sorted
// by descending confidence (spec C.3).
#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>

#include "models/model.h"

namespace opendl {
namespace {

class GenericAdapter : public ModelAdapter {
 public:
  std::string type() const override { return "generic"; }
  std::unique_ptr<ModelAdapter> clone() const override { return std::make_unique<GenericAdapter>(*this); }
};

std::string ids_str(const std::vector<int64_t>& v) {
  Tuple t(v.begin(), v.end());
  return to_string(t);
}

class ClassificationAdapter : public ModelAdapter {
 public:
  std::string type() const override { return "classification"; }
  std::unique_ptr<ModelAdapter> clone() const override { return std::make_unique<ClassificationAdapter>(*this); }

  // Finds the roles in the graph of a model; throws 7912 naming what is missing.
  void configure_from(const Model& m) {
    const auto& slots = m.net().slots();
    for (auto& s : slots) {
      if (s.layer->type() != "loss_cross_entropy") continue;
      const auto& sm = slots[s.inputs[0]];
      const auto& tgt = slots[s.inputs[1]];
      const auto& wgt = slots[s.inputs[2]];
      if (sm.layer->type() != "softmax" || !tgt.layer->is_input() || !wgt.layer->is_input()) continue;
      const auto& logits = slots[sm.inputs[0]];
      if (logits.layer->type() != "dense" && logits.layer->type() != "convolution") continue;
      softmax_ = sm.layer->name();
      logits_ = logits.layer->name();
      label_ = tgt.layer->name();
      weight_ = wgt.layer->name();
      const int64_t c = sm.shape.c;
      if (sm.shape.h != 1 || sm.shape.w != 1) continue;
      for (int i : m.net().input_layers())
        if (slots[i].layer->name() != label_ && slots[i].layer->name() != weight_) image_ = slots[i].layer->name();
      if (image_.empty()) continue;
      class_ids_.resize(size_t(c));
      std::iota(class_ids_.begin(), class_ids_.end(), 0);
      class_names_.clear();
      for (auto id : class_ids_) class_names_.push_back(std::to_string(id));
      return;
    }
    fail(7912, "the model cannot become a 'classification' model: it needs a cross-entropy loss layer on a softmax "
               "of a dense (or convolution) layer with 1x1 output, whose target and weights inputs are input layers");
  }

  std::vector<Sample> train_inputs(const Model&, const std::vector<Sample>& batch) const override {
    std::vector<Sample> out;
    const double sum = class_weights_.empty() ? 0.0 : std::accumulate(class_weights_.begin(), class_weights_.end(), 0.0);
    for (size_t i = 0; i < batch.size(); ++i) {
      const Sample& s = batch[i];
      Sample n = image_of(s, i);
      auto it = s.find("image_label_id");
      if (it == s.end())
        fail(err::kInputsMissing, "sample " + std::to_string(i) + " has no key 'image_label_id'");
      const Tuple* t = std::get_if<Tuple>(&it->second);
      if (!t) fail(err::kInputWrongType, "sample " + std::to_string(i) + ": 'image_label_id' must be a class id, not an image");
      if (t->size() != 1)
        fail(err::kInputWrongLength, "sample " + std::to_string(i) + ": 'image_label_id' must hold exactly one class id, got " +
                                         std::to_string(t->size()));
      const Value& v = (*t)[0];
      if (!is_number(v) || as_double(v) != std::floor(as_double(v)))
        fail(err::kInputWrongType, "sample " + std::to_string(i) + ": 'image_label_id' " + to_string(v) + " is not an integer");
      int64_t id = int64_t(as_double(v));
      auto pos = std::find(class_ids_.begin(), class_ids_.end(), id);
      if (pos == class_ids_.end())
        fail(err::kInputWrongValues, "sample " + std::to_string(i) + ": 'image_label_id' " + std::to_string(id) +
                                         " is not one of the model's class_ids " + ids_str(class_ids_));
      size_t idx = size_t(pos - class_ids_.begin());
      n[label_] = Tuple{int64_t(idx)};
      // Spec E.3 normalises the class weight by the sum over all classes; the factor K (number of classes)
      // keeps equal weights equivalent to no weights, so setting class_weights never rescales the loss.
      double rho = class_weights_.empty() ? 1.0 : class_weights_[idx] * double(class_ids_.size()) / sum;
      n[weight_] = Tuple{rho};
      out.push_back(std::move(n));
    }
    return out;
  }
  std::vector<Sample> apply_inputs(const Model&, const std::vector<Sample>& batch) const override {
    std::vector<Sample> out;
    for (size_t i = 0; i < batch.size(); ++i) out.push_back(image_of(batch[i], i));
    return out;
  }
  std::vector<std::string> default_outputs() const override { return {softmax_}; }
  void make_results(const Model&, std::vector<Result>& results) const override {
    for (auto& r : results) {
      auto it = r.find(softmax_);
      if (it == r.end()) continue;
      const Tensor& p = std::get<Tensor>(it->second);
      const float* q = p.f32();
      std::vector<size_t> order(class_ids_.size());
      std::iota(order.begin(), order.end(), 0);
      // Stable: equal confidences keep the class order.
      std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return q[a] > q[b]; });
      Tuple ids, names, conf;
      for (size_t k : order) {
        ids.emplace_back(class_ids_[k]);
        names.emplace_back(class_names_[k]);
        conf.emplace_back(double(q[k]));
      }
      r.erase(it);
      r["classification_class_ids"] = ids;
      r["classification_class_names"] = names;
      r["classification_confidences"] = conf;
    }
  }

  std::vector<std::string> param_names() const override {
    return {"class_ids", "class_names", "class_weights", "image_dimensions", "image_height", "image_num_channels",
            "image_range_max", "image_range_min", "image_size", "image_width", "num_classes"};
  }

  bool get_param(const Model& m, const std::string& name, Tuple& out) const override {
    const Shape4 s = image_shape(m);
    if (name == "class_ids") out.assign(class_ids_.begin(), class_ids_.end());
    else if (name == "class_names") out.assign(class_names_.begin(), class_names_.end());
    else if (name == "class_weights") {
      if (class_weights_.empty()) out.assign(class_ids_.size(), Value(1.0));
      else out.assign(class_weights_.begin(), class_weights_.end());
    } else if (name == "num_classes") out = {int64_t(class_ids_.size())};
    else if (name == "image_width") out = {s.w};
    else if (name == "image_height") out = {s.h};
    else if (name == "image_num_channels") out = {s.c};
    else if (name == "image_dimensions") out = {s.w, s.h, s.c};
    else if (name == "image_size") out = {s.w, s.h};
    else if (name == "image_range_min") out = {range_min_};
    else if (name == "image_range_max") out = {range_max_};
    else return false;
    return true;
  }

  bool set_param(Model& m, const std::string& name, const Tuple& v) override {
    if (name == "class_ids") {
      std::vector<int64_t> ids = parse_ids(v);
      std::vector<std::string> names;
      if (ids.size() == class_names_.size()) names = class_names_;
      else for (auto id : ids) names.push_back(std::to_string(id));
      set_classes(m, ids, names);
    } else if (name == "class_names") {
      if (v.empty()) fail(err::kWrongValue3, "'class_names' must hold at least one name");
      std::vector<std::string> names;
      std::set<std::string> seen;
      for (auto& e : v) {
        if (!is_string(e)) fail(err::kWrongType3, "'class_names' must be strings, got " + to_string(e));
        if (!seen.insert(std::get<std::string>(e)).second)
          fail(err::kWrongValue3, "class name '" + std::get<std::string>(e) + "' occurs twice in 'class_names'");
        names.push_back(std::get<std::string>(e));
      }
      std::vector<int64_t> ids = class_ids_;
      if (ids.size() != names.size()) {
        ids.resize(names.size());
        std::iota(ids.begin(), ids.end(), 0);
      }
      set_classes(m, ids, names);
    } else if (name == "class_weights") {
      std::vector<double> w;
      for (auto& e : v) {
        if (!is_number(e) || !std::isfinite(as_double(e)) || as_double(e) < 0)
          fail(err::kWrongValue3, "'class_weights' must be finite numbers >= 0, got " + to_string(e));
        w.push_back(as_double(e));
      }
      if (w.size() == 1) w.assign(class_ids_.size(), w[0]);
      if (w.size() != class_ids_.size())
        fail(err::kWrongNumValues3, "'class_weights' needs one value per class (" + std::to_string(class_ids_.size()) +
                                        "), got " + std::to_string(w.size()));
      if (std::accumulate(w.begin(), w.end(), 0.0) <= 0) fail(err::kWrongValue3, "'class_weights' must not all be 0");
      class_weights_ = w;
    } else if (name == "image_width" || name == "image_height" || name == "image_num_channels" ||
               name == "image_dimensions" || name == "image_size") {
      Shape4 s = image_shape(m);
      std::vector<int64_t> vals;
      for (auto& e : v) {
        if (!is_number(e) || as_double(e) != std::floor(as_double(e)) || as_double(e) < 1)
          fail(err::kWrongValue3, "'" + name + "' must be positive integers, got " + to_string(v));
        vals.push_back(int64_t(as_double(e)));
      }
      size_t need = name == "image_dimensions" ? 3 : name == "image_size" ? 2 : 1;
      if (vals.size() != need)
        fail(err::kWrongNumValues3, "'" + name + "' takes " + std::to_string(need) + " value(s), got " + std::to_string(vals.size()));
      if (name == "image_width") s.w = vals[0];
      else if (name == "image_height") s.h = vals[0];
      else if (name == "image_num_channels") s.c = vals[0];
      else {
        s.w = vals[0];
        s.h = vals[1];
        if (need == 3) s.c = vals[2];
      }
      if (s.c != 1 && s.c != 3)
        fail(7724, "a classifier takes images with 1 or 3 channels, got " + std::to_string(s.c));
      auto ds = m.describe();
      for (auto& d : ds)
        if (d.name == image_) d.params["shape"] = Tuple{s.w, s.h, s.c};
      try {
        m.rebuild(ds);
      } catch (const Error& e) {
        fail(7722, "image size " + std::to_string(s.w) + " x " + std::to_string(s.h) + " x " + std::to_string(s.c) +
                       " does not fit the network: " + e.message());
      }
    } else if (name == "image_range_min" || name == "image_range_max") {
      if (v.size() != 1 || !is_number(v[0]) || !std::isfinite(as_double(v[0])))
        fail(err::kWrongValue3, "'" + name + "' must be one finite number");
      double x = as_double(v[0]);
      if ((name == "image_range_min" && x >= range_max_) || (name == "image_range_max" && x <= range_min_))
        fail(err::kWrongValue3, "'image_range_min' must stay below 'image_range_max'");
      (name == "image_range_min" ? range_min_ : range_max_) = x;
    } else {
      return false;
    }
    return true;
  }

  void save(Dict& d) const override {
    for (auto k : {"image", "label", "weight", "softmax", "logits"})
      d.set_tuple(std::string("layer_") + k, {role(k)});
    d.set_tuple("class_ids", Tuple(class_ids_.begin(), class_ids_.end()));
    d.set_tuple("class_names", Tuple(class_names_.begin(), class_names_.end()));
    d.set_tuple("class_weights", Tuple(class_weights_.begin(), class_weights_.end()));
    d.set_tuple("image_range", {range_min_, range_max_});
  }
  void load(const Dict& d) override {
    image_ = std::get<std::string>(d.get_tuple("layer_image").at(0));
    label_ = std::get<std::string>(d.get_tuple("layer_label").at(0));
    weight_ = std::get<std::string>(d.get_tuple("layer_weight").at(0));
    softmax_ = std::get<std::string>(d.get_tuple("layer_softmax").at(0));
    logits_ = std::get<std::string>(d.get_tuple("layer_logits").at(0));
    class_ids_.clear();
    for (auto& v : d.get_tuple("class_ids")) class_ids_.push_back(std::get<int64_t>(v));
    class_names_.clear();
    for (auto& v : d.get_tuple("class_names")) class_names_.push_back(std::get<std::string>(v));
    class_weights_.clear();
    for (auto& v : d.get_tuple("class_weights")) class_weights_.push_back(as_double(v));
    auto r = d.get_tuple("image_range");
    range_min_ = as_double(r.at(0));
    range_max_ = as_double(r.at(1));
    if (class_names_.size() != class_ids_.size() || class_ids_.empty() ||
        (!class_weights_.empty() && class_weights_.size() != class_ids_.size()))
      fail(err::kInvalidInputData, "inconsistent class lists");
  }

 private:
  std::string role(const std::string& k) const {
    return k == "image" ? image_ : k == "label" ? label_ : k == "weight" ? weight_ : k == "softmax" ? softmax_ : logits_;
  }
  Shape4 image_shape(const Model& m) const {
    for (auto& s : m.net().slots())
      if (s.layer->name() == image_) return s.layer->shape();
    return {};
  }
  Sample image_of(const Sample& s, size_t i) const {
    auto it = s.find("image");
    if (it == s.end()) fail(err::kInputsMissing, "sample " + std::to_string(i) + " has no key 'image'");
    Sample n;
    n[image_] = it->second;
    return n;
  }
  static std::vector<int64_t> parse_ids(const Tuple& v) {
    if (v.empty()) fail(7802, "'class_ids' must hold at least one id");
    std::vector<int64_t> ids;
    std::set<int64_t> seen;
    for (auto& e : v) {
      if (!is_number(e) || as_double(e) != std::floor(as_double(e)) || as_double(e) < 0)
        fail(7793, "class ids must be integers >= 0, got " + to_string(e));
      int64_t id = int64_t(as_double(e));
      if (!seen.insert(id).second) fail(7792, "class id " + std::to_string(id) + " occurs twice in 'class_ids'");
      ids.push_back(id);
    }
    return ids;
  }
  // Changes the classes; a different count resizes the class-score layer (its weights are initialised anew,
  // all other layers keep theirs: transfer learning).
  void set_classes(Model& m, const std::vector<int64_t>& ids, const std::vector<std::string>& names) {
    if (ids.size() != class_ids_.size()) {
      auto ds = m.describe();
      for (auto& d : ds)
        if (d.name == logits_) d.params[d.type == "dense" ? "num_out" : "num_kernel"] = Tuple{int64_t(ids.size())};
      m.rebuild(ds);
      class_weights_.clear();
    }
    class_ids_ = ids;
    class_names_ = names;
  }

  std::string image_, label_, weight_, softmax_, logits_;
  std::vector<int64_t> class_ids_;
  std::vector<std::string> class_names_;
  std::vector<double> class_weights_;  // empty: all 1
  double range_min_ = -127.0, range_max_ = 128.0;
};

}  // namespace

std::unique_ptr<ModelAdapter> make_generic_adapter() { return std::make_unique<GenericAdapter>(); }

std::unique_ptr<ModelAdapter> make_classification_adapter(const Model& m) {
  auto a = std::make_unique<ClassificationAdapter>();
  a->configure_from(m);
  return a;
}

std::unique_ptr<ModelAdapter> make_adapter(const std::string& type, int code) {
  if (type == "generic") return std::make_unique<GenericAdapter>();
  if (type == "classification") return std::make_unique<ClassificationAdapter>();
  fail(code, "unknown model type '" + type + "'");
}

}  // namespace opendl
