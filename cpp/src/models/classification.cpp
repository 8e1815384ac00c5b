// The generic adapter (layer-built models), the classification adapter (type 'classification') and the
// factories of all adapters. A classification network has an input layer for the image, a layer producing one
// score per class (dense or 1x1 convolution), a softmax over it and a cross-entropy loss whose target and
// weight inputs are input layers. The adapter maps DLSample 'image' / 'image_label_id' onto them: class ids
// become class indices and the weight input carries the class weight of each sample's class (spec E.3).
// Results are all classes sorted by descending confidence (spec C.3).
#include <algorithm>
#include <cmath>
#include <numeric>

#include "models/class_adapter.h"

namespace opendl {

bool find_softmax_head(const Model& m, bool spatial, std::string roles[5], int64_t& num_classes) {
  const auto& slots = m.net().slots();
  for (auto& s : slots) {
    if (s.layer->type() != "loss_cross_entropy") continue;
    const auto& sm = slots[s.inputs[0]];
    const auto& tgt = slots[s.inputs[1]];
    const auto& wgt = slots[s.inputs[2]];
    if (sm.layer->type() != "softmax" || !tgt.layer->is_input() || !wgt.layer->is_input()) continue;
    // The class scores: a dense or convolution layer, possibly zoomed to the image size (segmentation).
    const auto* logits = &slots[sm.inputs[0]];
    if (spatial && logits->layer->type() == "zoom_to_layer_size") logits = &slots[logits->inputs[0]];
    if (logits->layer->type() != "dense" && logits->layer->type() != "convolution") continue;
    std::string image;
    for (int i : m.net().input_layers())
      if (slots[i].layer->name() != tgt.layer->name() && slots[i].layer->name() != wgt.layer->name())
        image = slots[i].layer->name();
    if (image.empty()) continue;
    const Shape4& is = slots[m.net().find(image)].shape;
    if (spatial ? (sm.shape.h != is.h || sm.shape.w != is.w) : (sm.shape.h != 1 || sm.shape.w != 1)) continue;
    roles[0] = image;
    roles[1] = tgt.layer->name();
    roles[2] = wgt.layer->name();
    roles[3] = sm.layer->name();
    roles[4] = logits->layer->name();
    num_classes = sm.shape.c;
    return true;
  }
  return false;
}

namespace {

class GenericAdapter : public ModelAdapter {
 public:
  std::string type() const override { return "generic"; }
  std::unique_ptr<ModelAdapter> clone() const override { return std::make_unique<GenericAdapter>(*this); }
};

class ClassificationAdapter : public ClassAdapter {
 public:
  std::string type() const override { return "classification"; }
  std::unique_ptr<ModelAdapter> clone() const override { return std::make_unique<ClassificationAdapter>(*this); }

  void configure_from(const Model& m) {
    find_roles(m, false, "a cross-entropy loss layer on a softmax of a dense (or convolution) layer with 1x1 "
                         "output, whose target and weights inputs are input layers");
  }
  // Takes over the classes and settings of another class adapter (type conversions).
  void take_over(const ClassAdapter& a) { ClassAdapter::operator=(a); }

  std::vector<Sample> train_inputs(const Model&, const std::vector<Sample>& batch) const override {
    std::vector<Sample> out;
    const auto rho = loss_class_weights();
    for (size_t i = 0; i < batch.size(); ++i) {
      const Sample& s = batch[i];
      const std::string at = "sample " + std::to_string(i);
      Sample n = image_of(s, i);
      auto it = s.find("image_label_id");
      if (it == s.end()) fail(err::kInputsMissing, at + " has no key 'image_label_id'");
      const Tuple* t = std::get_if<Tuple>(&it->second);
      if (!t) fail(err::kInputWrongType, at + ": 'image_label_id' must be a class id, not an image");
      if (t->size() != 1)
        fail(err::kInputWrongLength, at + ": 'image_label_id' must hold exactly one class id, got " +
                                         std::to_string(t->size()));
      const Value& v = (*t)[0];
      int64_t id = 0;
      if (!exact_int(v, id))
        fail(err::kInputWrongType, at + ": 'image_label_id' " + to_string(v) + " is not an integer");
      const int64_t idx = index_of(id);
      if (idx < 0)
        fail(err::kInputWrongValues, at + ": 'image_label_id' " + to_string(v) + " is not one of the model's class_ids " +
                                         ids_str(class_ids_));
      n[label_] = Tuple{idx};
      n[weight_] = Tuple{rho[size_t(idx)]};
      out.push_back(std::move(n));
    }
    return out;
  }
  void make_results(const Model&, std::vector<Result>& results, const std::vector<std::string>&) const override {
    for (auto& r : results) {
      auto it = r.find(prob_);
      if (it == r.end()) continue;
      const float* q = std::get<Tensor>(it->second).f32();
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
};

}  // namespace

std::unique_ptr<ModelAdapter> make_generic_adapter() { return std::make_unique<GenericAdapter>(); }

std::unique_ptr<ModelAdapter> make_classification_adapter(const Model& m) {
  auto a = std::make_unique<ClassificationAdapter>();
  a->configure_from(m);
  return a;
}

std::unique_ptr<ModelAdapter> classification_adapter_like(const ClassAdapter& a) {
  auto c = std::make_unique<ClassificationAdapter>();
  c->take_over(a);
  return c;
}

std::unique_ptr<ModelAdapter> make_adapter(const std::string& type, int code) {
  if (type == "generic") return std::make_unique<GenericAdapter>();
  if (type == "classification") return std::make_unique<ClassificationAdapter>();
  if (auto a = make_empty_adapter(type)) return a;
  fail(code, "unknown model type '" + type + "'");
}

}  // namespace opendl
