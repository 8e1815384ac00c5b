// The parameters shared by the class-predicting model types (see class_adapter.h).
#include "models/class_adapter.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>

namespace opendl {

bool exact_int(const Value& e, int64_t& out) {
  if (is_int(e)) {
    out = std::get<int64_t>(e);
    return true;
  }
  if (!is_real(e)) return false;
  const double d = std::get<double>(e);
  if (!std::isfinite(d) || d != std::floor(d) || std::fabs(d) >= 9.2e18) return false;
  out = static_cast<int64_t>(d);
  return true;
}

std::string ids_str(const std::vector<int64_t>& v) {
  Tuple t(v.begin(), v.end());
  return to_string(t);
}

bool find_softmax_head(const Model& m, bool spatial, std::string roles[5], int64_t& num_classes);

void ClassAdapter::find_roles(const Model& m, bool spatial, const std::string& needs) {
  std::string r[5];
  int64_t c = 0;
  if (!find_softmax_head(m, spatial, r, c))
    fail(7912, "the model cannot become a '" + type() + "' model: it needs " + needs);
  set_roles(r[0], r[1], r[2], r[3], r[4], c);
}

std::vector<Sample> ClassAdapter::apply_inputs(const Model&, const std::vector<Sample>& batch) const {
  std::vector<Sample> out;
  for (size_t i = 0; i < batch.size(); ++i) out.push_back(image_of(batch[i], i));
  return out;
}

std::vector<std::string> ClassAdapter::output_layers(const std::vector<std::string>& requested) const {
  if (!requested.empty()) return {};
  return {prob_};
}

void ClassAdapter::set_roles(const std::string& image, const std::string& label, const std::string& weight,
                             const std::string& prob, const std::string& logits, int64_t num_classes) {
  image_ = image;
  label_ = label;
  weight_ = weight;
  prob_ = prob;
  logits_ = logits;
  class_ids_.resize(size_t(num_classes));
  std::iota(class_ids_.begin(), class_ids_.end(), 0);
  class_names_.clear();
  for (auto id : class_ids_) class_names_.push_back(std::to_string(id));
}

std::vector<std::string> ClassAdapter::param_names() const {
  return {"class_ids", "class_names", "class_weights", "image_dimensions", "image_height", "image_num_channels",
          "image_range_max", "image_range_min", "image_size", "image_width", "num_classes"};
}

bool ClassAdapter::get_param(const Model& m, const std::string& name, Tuple& out) const {
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

bool ClassAdapter::set_param(Model& m, const std::string& name, const Tuple& v) {
  if (name == "class_ids") {
    std::vector<int64_t> ids = parse_ids(v, "class_ids");
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
      int64_t n = 0;
      if (!exact_int(e, n) || n < 1)
        fail(err::kWrongValue3, "'" + name + "' must be positive integers, got " + to_string(v));
      vals.push_back(n);
    }
    size_t need = name == "image_dimensions" ? 3 : name == "image_size" ? 2 : 1;
    if (vals.size() != need)
      fail(err::kWrongNumValues3, "'" + name + "' takes " + std::to_string(need) + " value(s), got " +
                                      std::to_string(vals.size()));
    if (name == "image_width") s.w = vals[0];
    else if (name == "image_height") s.h = vals[0];
    else if (name == "image_num_channels") s.c = vals[0];
    else {
      s.w = vals[0];
      s.h = vals[1];
      if (need == 3) s.c = vals[2];
    }
    if (s.c != 1 && s.c != 3)
      fail(7724, "a '" + type() + "' model takes images with 1 or 3 channels, got " + std::to_string(s.c));
    auto ds = m.describe();
    resize_image(ds, s);
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

void ClassAdapter::save(Dict& d) const {
  d.set_tuple("layer_image", {image_});
  d.set_tuple("layer_label", {label_});
  d.set_tuple("layer_weight", {weight_});
  d.set_tuple("layer_softmax", {prob_});
  d.set_tuple("layer_logits", {logits_});
  d.set_tuple("class_ids", Tuple(class_ids_.begin(), class_ids_.end()));
  d.set_tuple("class_names", Tuple(class_names_.begin(), class_names_.end()));
  d.set_tuple("class_weights", Tuple(class_weights_.begin(), class_weights_.end()));
  d.set_tuple("image_range", {range_min_, range_max_});
}

void ClassAdapter::load(const Dict& d) {
  image_ = std::get<std::string>(d.get_tuple("layer_image").at(0));
  label_ = std::get<std::string>(d.get_tuple("layer_label").at(0));
  weight_ = std::get<std::string>(d.get_tuple("layer_weight").at(0));
  prob_ = std::get<std::string>(d.get_tuple("layer_softmax").at(0));
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

void ClassAdapter::resize_classes(std::vector<LayerDesc>& ds, int64_t n) const {
  for (auto& d : ds)
    if (d.name == logits_) d.params[d.type == "dense" ? "num_out" : "num_kernel"] = Tuple{n};
}

void ClassAdapter::resize_image(std::vector<LayerDesc>& ds, const Shape4& s) const {
  for (auto& d : ds)
    if (d.name == image_) d.params["shape"] = Tuple{s.w, s.h, s.c};
}

std::vector<double> ClassAdapter::loss_class_weights() const {
  const double k = double(class_ids_.size());
  if (class_weights_.empty()) return std::vector<double>(class_ids_.size(), 1.0);
  const double sum = std::accumulate(class_weights_.begin(), class_weights_.end(), 0.0);
  std::vector<double> w;
  for (double c : class_weights_) w.push_back(c * k / sum);
  return w;
}

int64_t ClassAdapter::index_of(int64_t id) const {
  auto pos = std::find(class_ids_.begin(), class_ids_.end(), id);
  return pos == class_ids_.end() ? -1 : int64_t(pos - class_ids_.begin());
}

Shape4 ClassAdapter::image_shape(const Model& m) const {
  for (auto& s : m.net().slots())
    if (s.layer->name() == image_) return s.layer->shape();
  return {};
}

Sample ClassAdapter::image_of(const Sample& s, size_t i) const {
  auto it = s.find("image");
  if (it == s.end()) fail(err::kInputsMissing, "sample " + std::to_string(i) + " has no key 'image'");
  Sample n;
  n[image_] = it->second;
  return n;
}

std::vector<int64_t> ClassAdapter::parse_ids(const Tuple& v, const std::string& what) {
  if (v.empty() && what == "class_ids") fail(7802, "'class_ids' must hold at least one id");
  std::vector<int64_t> ids;
  std::set<int64_t> seen;
  for (auto& e : v) {
    int64_t id = 0;
    if (!exact_int(e, id) || id < 0) fail(7793, "'" + what + "' must be integers >= 0, got " + to_string(e));
    if (!seen.insert(id).second) fail(7792, "class id " + std::to_string(id) + " occurs twice in '" + what + "'");
    ids.push_back(id);
  }
  return ids;
}

// A different class count resizes the class-score layer (its weights are initialised anew, all other
// layers keep theirs: transfer learning) and clears the class weights.
void ClassAdapter::set_classes(Model& m, const std::vector<int64_t>& ids, const std::vector<std::string>& names) {
  if (ids.size() != class_ids_.size()) {
    auto ds = m.describe();
    resize_classes(ds, int64_t(ids.size()));
    m.rebuild(ds);
    class_weights_.clear();
  }
  class_ids_ = ids;
  class_names_ = names;
}

}  // namespace opendl
