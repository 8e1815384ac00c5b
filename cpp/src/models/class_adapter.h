// ClassAdapter: the shared base of the adapters whose models predict classes: 'classification',
// 'multi_label_classification' and 'segmentation'. It knows the roles in the graph (the image input, the
// target and weight inputs of the loss, the class-score layer and the softmax or sigmoid after it) and owns
// the parameters these types share: class_ids, class_names, class_weights, the image size and range. A
// change of the class count or the image size edits the layer descriptions and rebuilds the network; the
// subclasses say which layers follow the class count (resize_classes) and the image size (resize_image).
#pragma once

#include <string>
#include <vector>

#include "models/model.h"

namespace opendl {

class ClassAdapter : public ModelAdapter {
 public:
  std::vector<std::string> param_names() const override;
  bool get_param(const Model& m, const std::string& name, Tuple& out) const override;
  bool set_param(Model& m, const std::string& name, const Tuple& v) override;
  void save(Dict& d) const override;
  void load(const Dict& d) override;
  // Inference needs only the image; by default apply_dl_model gives the class probabilities.
  std::vector<Sample> apply_inputs(const Model& m, const std::vector<Sample>& batch) const override;
  std::vector<std::string> output_layers(const std::vector<std::string>& requested) const override;

  const std::string& image_layer() const { return image_; }
  const std::string& prob_layer() const { return prob_; }
  const std::vector<int64_t>& class_ids() const { return class_ids_; }
  const std::vector<std::string>& class_names() const { return class_names_; }

 protected:
  // Finds the roles in the graph of `m` (a cross-entropy loss on a softmax of class scores; per pixel at the
  // image's size when `spatial`) and sets classes 0..n-1; throws 7912 saying what the type `needs`.
  void find_roles(const Model& m, bool spatial, const std::string& needs);
  // Sets roles and default classes 0..n-1 (used by the type conversions).
  void set_roles(const std::string& image, const std::string& label, const std::string& weight,
                 const std::string& prob, const std::string& logits, int64_t num_classes);
  // Layer edits for a new class count: the class-score layer's outputs (subclasses add their inputs).
  virtual void resize_classes(std::vector<LayerDesc>& ds, int64_t n) const;
  // Layer edits for a new image shape: the image input (subclasses add label images).
  virtual void resize_image(std::vector<LayerDesc>& ds, const Shape4& s) const;
  // Class weights as applied to the loss: w_k * K / sum(w), all 1 when none are set (spec E.3), so that
  // equal weights never rescale the loss.
  std::vector<double> loss_class_weights() const;
  // Index of class id `v` in class_ids, or -1.
  int64_t index_of(int64_t id) const;
  Shape4 image_shape(const Model& m) const;
  // A network sample holding only the image of DLSample `s` (number i, for messages).
  Sample image_of(const Sample& s, size_t i) const;
  static std::vector<int64_t> parse_ids(const Tuple& v, const std::string& what);
  void set_classes(Model& m, const std::vector<int64_t>& ids, const std::vector<std::string>& names);

  std::string image_, label_, weight_, prob_, logits_;
  std::vector<int64_t> class_ids_;
  std::vector<std::string> class_names_;
  std::vector<double> class_weights_;  // empty: all 1
  double range_min_ = -127.0, range_max_ = 128.0;
};

std::string ids_str(const std::vector<int64_t>& v);
// The integer a tuple element holds: an int64 as it is, a real only when it is finite, integral and within
// 64 bits (casting anything else is undefined). False when there is none.
bool exact_int(const Value& e, int64_t& out);

// Type 'multi_label_classification' made from a classification model (rebuilds its head) and back.
std::unique_ptr<ModelAdapter> make_multi_label_adapter(Model& m);
std::unique_ptr<ModelAdapter> make_classification_from_multi_label(Model& m);
// Type 'segmentation' for a layer-built model with a per-pixel softmax and cross-entropy loss.
std::unique_ptr<ModelAdapter> make_segmentation_adapter(const Model& m);
std::unique_ptr<ModelAdapter> make_empty_adapter(const std::string& type);  // for model files; nullptr if unknown

}  // namespace opendl
