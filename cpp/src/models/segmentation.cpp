// Type 'segmentation' (semantic segmentation and edge extraction): a network whose softmax gives class
// probabilities per pixel at the image's size, and a cross-entropy loss whose target and weight inputs are
// input layers of the image's width and height and depth 1.
// DLSample: 'image', 'segmentation_image' (class ids per pixel: an image of any integer or real type, (H, W)
// or (H, W, 1), the size of the model's image) and optionally 'weight_image' (real, >= 0: the loss weight of
// every pixel, as gen_dl_segmentation_weight_images writes it). Pixels whose id is one of ignore_class_ids
// contribute no loss (their weight is 0 whatever the weight image says). Without a weight image a pixel's
// weight is the class weight of its class: class_weights w_k scaled to w_k * K / sum(w) (all 1 by default),
// so equal weights never rescale the loss. The loss is the weighted mean over all pixels of the batch (spec
// E.3): L = -(1 / (N H W)) sum w log p_target.
// DLResult: 'segmentation_image' (class id of the most probable class per pixel: a byte image when every
// class id is at most 255, else int4) and 'segmentation_confidence' (its probability, real). apply_dl_model
// with outputs 'segmentation_image', 'segmentation_confidence' and/or 'segmentation_confidences' gives just
// those; 'segmentation_confidences' is the (H, W, num_classes) real image of every class's probability, the
// channels in the order of class_ids.
#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "models/class_adapter.h"
#include "models/detection.h"

namespace opendl {

std::unique_ptr<ModelAdapter> make_multi_label_from_file();

namespace {

const std::set<std::string>& result_keys() {
  static const std::set<std::string> k = {"segmentation_image", "segmentation_confidence", "segmentation_confidences"};
  return k;
}

// The values of a one-channel image of any HALCON type as doubles; throws naming `what` otherwise.
std::vector<double> plane_values(const SampleValue& v, const Shape4& s, const std::string& what) {
  const Tensor* t = std::get_if<Tensor>(&v);
  if (!t) fail(err::kInputWrongType, what + " must be an image, not a tuple");
  const int64_t h = t->ndim() >= 1 ? t->dim(0) : 0, w = t->ndim() >= 2 ? t->dim(1) : 0;
  const int64_t c = t->ndim() == 3 ? t->dim(2) : 1;
  if (t->ndim() < 2 || t->ndim() > 3 || h != s.h || w != s.w || c != 1)
    fail(err::kInputWrongLength, what + " has width " + std::to_string(w) + ", height " + std::to_string(h) + " and " +
                                     std::to_string(c) + " channel(s); the model needs width " + std::to_string(s.w) +
                                     ", height " + std::to_string(s.h) + " and 1 channel");
  const size_t n = size_t(h * w);
  std::vector<double> out(n);
  auto copy = [&](auto* p) {
    for (size_t i = 0; i < n; ++i) out[i] = double(p[i]);
  };
  switch (t->dtype()) {
    case DType::kFloat32: copy(t->f32()); break;
    case DType::kUInt8: copy(static_cast<const uint8_t*>(t->raw())); break;
    case DType::kInt8: copy(static_cast<const int8_t*>(t->raw())); break;
    case DType::kInt16: copy(static_cast<const int16_t*>(t->raw())); break;
    case DType::kUInt16: copy(static_cast<const uint16_t*>(t->raw())); break;
    case DType::kInt32: copy(static_cast<const int32_t*>(t->raw())); break;
  }
  return out;
}

class SegmentationAdapter : public ClassAdapter {
 public:
  std::string type() const override { return "segmentation"; }
  std::unique_ptr<ModelAdapter> clone() const override { return std::make_unique<SegmentationAdapter>(*this); }

  void configure_from(const Model& m) {
    find_roles(m, true, "a cross-entropy loss layer on a softmax of a convolution layer (possibly zoomed to the "
                        "image size) whose output has the image's width and height, and whose target and weights "
                        "inputs are input layers");
  }

  std::vector<Sample> train_inputs(const Model& m, const std::vector<Sample>& batch) const override {
    const Shape4 s = image_shape(m);
    const auto rho = loss_class_weights();
    // Class id -> class index, ignore ids -> -1.
    std::map<int64_t, int64_t> lut;
    for (size_t k = 0; k < class_ids_.size(); ++k) lut[class_ids_[k]] = int64_t(k);
    for (auto id : ignore_ids_) lut[id] = -1;
    std::vector<Sample> out;
    for (size_t i = 0; i < batch.size(); ++i) {
      const Sample& smp = batch[i];
      const std::string at = "sample " + std::to_string(i);
      Sample n = image_of(smp, i);
      auto it = smp.find("segmentation_image");
      if (it == smp.end()) fail(err::kInputsMissing, at + " has no key 'segmentation_image'");
      auto ids = plane_values(it->second, s, at + ": 'segmentation_image'");
      std::vector<double> given;
      auto wt = smp.find("weight_image");
      if (wt != smp.end()) {
        given = plane_values(wt->second, s, at + ": 'weight_image'");
        for (size_t p = 0; p < given.size(); ++p)
          if (!std::isfinite(given[p]) || given[p] < 0)
            fail(err::kInputWrongValues, at + ": 'weight_image' value " + to_string(Value(given[p])) + " at row " +
                                             std::to_string(p / size_t(s.w)) + ", column " +
                                             std::to_string(p % size_t(s.w)) + " is not a finite number >= 0");
      }
      Tensor target({s.h, s.w, 1}), weight({s.h, s.w, 1});
      float* tp = target.f32();
      float* wp = weight.f32();
      for (size_t p = 0; p < ids.size(); ++p) {
        const double v = ids[p];
        auto hit = v == std::floor(v) ? lut.find(int64_t(v)) : lut.end();
        if (hit == lut.end())
          fail(err::kInputWrongValues, at + ": 'segmentation_image' value " + to_string(Value(v)) + " at row " +
                                           std::to_string(p / size_t(s.w)) + ", column " +
                                           std::to_string(p % size_t(s.w)) + " is neither one of the class_ids " +
                                           ids_str(class_ids_) + " nor of the ignore_class_ids " + ids_str(ignore_ids_));
        const int64_t k = hit->second;
        tp[p] = float(std::max<int64_t>(k, 0));
        wp[p] = k < 0 ? 0.f : float(given.empty() ? rho[size_t(k)] : given[p]);
      }
      n[label_] = std::move(target);
      n[weight_] = std::move(weight);
      out.push_back(std::move(n));
    }
    return out;
  }
  std::vector<std::string> output_layers(const std::vector<std::string>& requested) const override {
    for (auto& r : requested)
      if (!result_keys().count(r)) return {};
    return {prob_};
  }
  void make_results(const Model&, std::vector<Result>& results, const std::vector<std::string>& requested) const override {
    std::set<std::string> want(requested.begin(), requested.end());
    if (want.empty()) want = {"segmentation_image", "segmentation_confidence"};
    const int64_t max_id = *std::max_element(class_ids_.begin(), class_ids_.end());
    const DType id_type = max_id <= 255 ? DType::kUInt8 : DType::kInt32;
    for (auto& r : results) {
      auto it = r.find(prob_);
      if (it == r.end()) continue;
      Tensor probs = std::get<Tensor>(it->second);
      r.erase(it);
      const int64_t h = probs.dim(0), w = probs.dim(1), c = probs.dim(2);
      Tensor ids({h, w}, id_type), conf({h, w});
      const float* q = probs.f32();
      for (int64_t p = 0; p < h * w; ++p) {
        const float* row = q + p * c;
        const int64_t k = int64_t(std::max_element(row, row + c) - row);  // ties: the first class
        if (id_type == DType::kUInt8) static_cast<uint8_t*>(ids.raw())[p] = uint8_t(class_ids_[size_t(k)]);
        else static_cast<int32_t*>(ids.raw())[p] = int32_t(class_ids_[size_t(k)]);
        conf.f32()[p] = row[k];
      }
      if (want.count("segmentation_image")) r["segmentation_image"] = std::move(ids);
      if (want.count("segmentation_confidence")) r["segmentation_confidence"] = std::move(conf);
      if (want.count("segmentation_confidences")) r["segmentation_confidences"] = std::move(probs);
    }
  }

  std::vector<std::string> param_names() const override {
    auto v = ClassAdapter::param_names();
    v.push_back("ignore_class_ids");
    std::sort(v.begin(), v.end());
    return v;
  }
  bool get_param(const Model& m, const std::string& name, Tuple& out) const override {
    if (name == "ignore_class_ids") {
      out.assign(ignore_ids_.begin(), ignore_ids_.end());
      return true;
    }
    return ClassAdapter::get_param(m, name, out);
  }
  bool set_param(Model& m, const std::string& name, const Tuple& v) override {
    if (name == "ignore_class_ids") {
      auto ids = parse_ids(v, "ignore_class_ids");
      check_disjoint(class_ids_, ids);
      ignore_ids_ = ids;
      return true;
    }
    if (name == "class_ids") check_disjoint(parse_ids(v, "class_ids"), ignore_ids_);
    return ClassAdapter::set_param(m, name, v);
  }
  void save(Dict& d) const override {
    ClassAdapter::save(d);
    d.set_tuple("ignore_class_ids", Tuple(ignore_ids_.begin(), ignore_ids_.end()));
  }
  void load(const Dict& d) override {
    ClassAdapter::load(d);
    ignore_ids_.clear();
    for (auto& v : d.get_tuple("ignore_class_ids")) ignore_ids_.push_back(std::get<int64_t>(v));
  }

 protected:
  void resize_image(std::vector<LayerDesc>& ds, const Shape4& s) const override {
    ClassAdapter::resize_image(ds, s);
    for (auto& d : ds)
      if (d.name == label_ || d.name == weight_) d.params["shape"] = Tuple{s.w, s.h, int64_t(1)};
  }

 private:
  static void check_disjoint(const std::vector<int64_t>& classes, const std::vector<int64_t>& ignore) {
    for (auto id : ignore)
      if (std::find(classes.begin(), classes.end(), id) != classes.end())
        fail(err::kWrongValue3, "class id " + std::to_string(id) +
                                    " cannot be both one of the 'class_ids' and of the 'ignore_class_ids'");
  }
  std::vector<int64_t> ignore_ids_;
};

}  // namespace

std::unique_ptr<ModelAdapter> make_segmentation_adapter(const Model& m) {
  auto a = std::make_unique<SegmentationAdapter>();
  a->configure_from(m);
  return a;
}

std::unique_ptr<ModelAdapter> make_empty_adapter(const std::string& type) {
  if (type == "segmentation") return std::make_unique<SegmentationAdapter>();
  if (type == "multi_label_classification") return make_multi_label_from_file();
  if (type == "detection") return make_empty_detection_adapter();
  return nullptr;
}

}  // namespace opendl
