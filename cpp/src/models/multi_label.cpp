// Type 'multi_label_classification': a classifier whose classes are independent yes/no decisions (HALCON
// 24.05+ has this type; opendl's documented way there is set_dl_model_param(model, 'type',
// 'multi_label_classification') on a classification model, and back). The conversion rebuilds the head: the
// softmax becomes a sigmoid activation named 'sigmoid' and the cross-entropy loss becomes a focal loss with
// gamma 0 named 'binary_cross_entropy', which is the binary cross-entropy on the class scores, summed over the
// classes and averaged over the samples: L = -(1/N) sum_n sum_k w_k [t_nk log s_nk + (1 - t_nk) log(1 - s_nk)].
// Its target and weight inputs hold one value per class. All other layers keep their weights.
// DLSample: 'image' and 'image_label_ids' (a tuple of class ids, empty for an image without any class).
// DLResult: 'classification_class_ids' / 'classification_class_names' of the classes whose confidence is at
// least min_confidence, by descending confidence, and 'classification_confidences': the confidence of every
// class in the order of class_ids.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "models/class_adapter.h"

namespace opendl {

std::unique_ptr<ModelAdapter> classification_adapter_like(const ClassAdapter& a);

namespace {

const char* kSigmoid = "sigmoid";
const char* kBce = "binary_cross_entropy";

class MultiLabelAdapter : public ClassAdapter {
 public:
  std::string type() const override { return "multi_label_classification"; }
  std::unique_ptr<ModelAdapter> clone() const override { return std::make_unique<MultiLabelAdapter>(*this); }

  // Rebuilds the classification head of `m` (whose adapter is `cls`) as the multi-label one.
  void convert_from(Model& m, const ClassAdapter& cls) {
    ClassAdapter::operator=(cls);
    const int64_t c = int64_t(class_ids_.size());
    auto ds = m.describe();
    auto outputs = output_names(m);
    std::string old_loss;
    for (auto& d : ds) {
      if (d.name == image_ || d.name == logits_) continue;
      if (d.name == label_ || d.name == weight_) d.params["shape"] = Tuple{int64_t(1), int64_t(1), c};
      if (d.name == prob_) {
        old_prob_ = d.name;
        d = LayerDesc{"activation", kSigmoid, {logits_}, {{"activation_type", Tuple{std::string("sigmoid")}}}};
      } else if (d.type == "loss_cross_entropy" && d.inputs.size() == 3 && d.inputs[0] == prob_) {
        old_loss = d.name;
        Tuple lw = d.params.at("loss_weight");
        d = LayerDesc{"loss_focal", kBce, {logits_, label_, weight_},
                      {{"loss_weight", lw}, {"gamma", Tuple{0.0}}, {"class_weights", Tuple{}},
                       {"type", Tuple{std::string("focal_binary")}}}};
      }
    }
    for (auto& o : outputs)
      if (o == old_loss) o = kBce;
    outputs.push_back(kSigmoid);  // the loss works on the scores, so the sigmoid is an output of its own
    old_loss_ = old_loss;
    m.rebuild(ds, outputs);
    prob_ = kSigmoid;
  }
  // Rebuilds the head of `m` as the single-label one it was made from.
  void convert_back(Model& m) const {
    auto outputs = output_names(m);
    std::vector<LayerDesc> ds;
    LayerDesc loss;
    for (auto& d : m.describe()) {
      if (d.name == label_ || d.name == weight_) d.params["shape"] = Tuple{int64_t(1), int64_t(1), int64_t(1)};
      if (d.name == prob_) d = LayerDesc{"softmax", old_prob_, {logits_}, {}};
      if (d.name == kBce)  // goes last: the softmax it takes may come after it in the current order
        loss = LayerDesc{"loss_cross_entropy", old_loss_, {old_prob_, label_, weight_},
                         {{"loss_weight", d.params.at("loss_weight")}}};
      else
        ds.push_back(d);
    }
    ds.push_back(loss);
    std::vector<std::string> outs;
    for (auto& o : outputs)
      if (o != kSigmoid) outs.push_back(o == kBce ? old_loss_ : o);
    m.rebuild(ds, outs);
  }
  // After convert_back: the roles of the single-label head.
  void use_single_label_roles() { prob_ = old_prob_; }

  std::vector<Sample> train_inputs(const Model&, const std::vector<Sample>& batch) const override {
    std::vector<Sample> out;
    const auto rho = loss_class_weights();
    for (size_t i = 0; i < batch.size(); ++i) {
      const Sample& s = batch[i];
      const std::string at = "sample " + std::to_string(i);
      Sample n = image_of(s, i);
      auto it = s.find("image_label_ids");
      if (it == s.end()) fail(err::kInputsMissing, at + " has no key 'image_label_ids'");
      const Tuple* t = std::get_if<Tuple>(&it->second);
      if (!t) fail(err::kInputWrongType, at + ": 'image_label_ids' must be a tuple of class ids, not an image");
      Tuple target(class_ids_.size(), Value(0.0));
      for (auto& v : *t) {
        int64_t id = 0;
        if (!exact_int(v, id))
          fail(err::kInputWrongType, at + ": 'image_label_ids' entry " + to_string(v) + " is not an integer");
        const int64_t idx = index_of(id);
        if (idx < 0)
          fail(err::kInputWrongValues, at + ": 'image_label_ids' entry " + to_string(v) +
                                           " is not one of the model's class_ids " + ids_str(class_ids_));
        target[size_t(idx)] = Value(1.0);
      }
      n[label_] = target;
      n[weight_] = Tuple(rho.begin(), rho.end());
      out.push_back(std::move(n));
    }
    return out;
  }
  void make_results(const Model&, std::vector<Result>& results, const std::vector<std::string>&) const override {
    for (auto& r : results) {
      auto it = r.find(prob_);
      if (it == r.end()) continue;
      const float* q = std::get<Tensor>(it->second).f32();
      std::vector<size_t> order;
      for (size_t k = 0; k < class_ids_.size(); ++k)
        if (double(q[k]) >= min_confidence_) order.push_back(k);
      std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return q[a] > q[b]; });
      Tuple ids, names, conf;
      for (size_t k : order) {
        ids.emplace_back(class_ids_[k]);
        names.emplace_back(class_names_[k]);
      }
      for (size_t k = 0; k < class_ids_.size(); ++k) conf.emplace_back(double(q[k]));
      r.erase(it);
      r["classification_class_ids"] = ids;
      r["classification_class_names"] = names;
      r["classification_confidences"] = conf;
    }
  }

  std::vector<std::string> param_names() const override {
    auto v = ClassAdapter::param_names();
    v.push_back("min_confidence");
    return v;
  }
  bool get_param(const Model& m, const std::string& name, Tuple& out) const override {
    if (name == "min_confidence") {
      out = {min_confidence_};
      return true;
    }
    return ClassAdapter::get_param(m, name, out);
  }
  bool set_param(Model& m, const std::string& name, const Tuple& v) override {
    if (name != "min_confidence") return ClassAdapter::set_param(m, name, v);
    if (v.size() != 1 || !is_number(v[0]) || !(as_double(v[0]) >= 0.0 && as_double(v[0]) <= 1.0))
      fail(err::kWrongValue3, "'min_confidence' takes one number in [0, 1], got " + to_string(v));
    min_confidence_ = as_double(v[0]);
    return true;
  }
  void save(Dict& d) const override {
    ClassAdapter::save(d);
    d.set_tuple("min_confidence", {min_confidence_});
    d.set_tuple("single_label_layers", {old_prob_, old_loss_});
  }
  void load(const Dict& d) override {
    ClassAdapter::load(d);
    min_confidence_ = as_double(d.get_tuple("min_confidence").at(0));
    auto names = d.get_tuple("single_label_layers");
    old_prob_ = std::get<std::string>(names.at(0));
    old_loss_ = std::get<std::string>(names.at(1));
  }

 protected:
  void resize_classes(std::vector<LayerDesc>& ds, int64_t n) const override {
    ClassAdapter::resize_classes(ds, n);
    for (auto& d : ds)
      if (d.name == label_ || d.name == weight_) d.params["shape"] = Tuple{int64_t(1), int64_t(1), n};
  }

 private:
  static std::vector<std::string> output_names(const Model& m) {
    std::vector<std::string> v;
    for (int o : m.net().outputs()) v.push_back(m.net().slots()[o].layer->name());
    return v;
  }
  double min_confidence_ = 0.5;
  std::string old_prob_ = "softmax", old_loss_ = "cross_entropy";
};

}  // namespace

std::unique_ptr<ModelAdapter> make_multi_label_adapter(Model& m) {
  const auto* cls = dynamic_cast<const ClassAdapter*>(&m.adapter());
  if (!cls || m.adapter().type() != "classification")
    fail(err::kWrongValue3, "only a 'classification' model can become 'multi_label_classification'");
  auto a = std::make_unique<MultiLabelAdapter>();
  a->convert_from(m, *cls);
  return a;
}

std::unique_ptr<ModelAdapter> make_classification_from_multi_label(Model& m) {
  const auto* ml = dynamic_cast<const MultiLabelAdapter*>(&m.adapter());
  if (!ml) fail(err::kWrongValue3, "the model is not a 'multi_label_classification' model");
  ml->convert_back(m);
  MultiLabelAdapter copy = *ml;
  copy.use_single_label_roles();
  return classification_adapter_like(copy);
}

std::unique_ptr<ModelAdapter> make_multi_label_from_file() { return std::make_unique<MultiLabelAdapter>(); }

}  // namespace opendl
