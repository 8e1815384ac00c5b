// Type 'detection' (create_dl_model_detection), instance types 'rectangle1' (axis-aligned boxes) and 'rectangle2'
// (oriented boxes): a RetinaNet-style detector (Lin et al. 2017) on a classifier backbone.
//
// Network. The backbone is a classification model (built-in name or file) at the detector's image size; its
// classification head is dropped. For each level l in min_level..max_level (level l: the image downsampled
// by 2^l) the docking layer is the backbone's last layer whose output has the size of that level; levels
// deeper than the backbone get a stride-2 conv3x3-ReLU on the level before (like RetinaNet's P6/P7). A feature
// pyramid (Lin et al. 2017, FPN) makes one map of F channels per level: lateral conv1x1 on the docking layer,
// plus the next deeper pyramid map zoomed to its size, then a conv3x3. The class head and the box head are
// shared by all levels as in RetinaNet (their convolutions at level l > min_level name min_level's in
// 'weights_shared_with'), with batch normalisation per level (EfficientDet): n conv3x3-BN-ReLU of F channels,
// then a conv3x3 giving A * K class scores ('class_scores_<l>', the class-score bias starts at
// -log((1 - 0.01) / 0.01) so that every anchor starts at confidence 0.01) or A * D box deltas
// ('box_deltas_<l>'). capacity 'high': F = 128, n = 2; 'medium': 64, 2; 'low': 32, 1.
//
// freeze_backbone_level L (settable later; 0 = nothing): the backbone layers before the first one whose output
// lies at a level deeper than L keep their weights (learning-rate multipliers 0) and their batch normalisation
// normalises with its running statistics and keeps them (use_global_stats); setting a lower L gives the
// layers above it multipliers 1 and batch statistics again.
//
// The anchors, the training targets and the detections are computed by the network's generic detection layers
// (layers/box_layers.cpp): per level an anchors layer 'anchors_<l>' on the pyramid map; the ground truth,
// turned by the adapter into records of the input layer 'gt_boxes' (at most 4096 boxes per image), is assigned
// to the anchors of all levels by the layer 'box_assignment', whose box_targets layers 'class_target_<l>',
// 'class_weight_<l>', 'box_target_<l>', 'box_weight_<l>' and 'num_foreground' feed the losses; the layer
// 'box_proposals' gives the detections, which make_results turns into DLResult keys. The rules:
//
// Anchors. At level l (stride s = 2^l; exactly image size / map size) each map cell (i, j) has A =
// anchor_num_subscales * |anchor_aspect_ratios| anchors centred at ((i + 0.5) * s_row, (j + 0.5) * s_col),
// of size 4 * 2^l * 2^(k / anchor_num_subscales) for subscale k and, for aspect ratio r (height / width),
// height size * sqrt(r) and width size / sqrt(r). Anchor a = k * |ratios| + ratio index; class score channel
// a * K + class index, box delta channel a * 4 + d.
//
// Boxes are HALCON's rectangle1 (row1, col1, row2, col2) in the preprocessed image's pixel coordinates,
// taken as the continuous rectangle [row1, row2] x [col1, col2]. Box encoding (Girshick 2015) relative to
// an anchor of centre (ra, ca), height ha and width wa: ((r - ra) / ha, (c - ca) / wa, log(h / ha),
// log(w / wa)) for a box of centre (r, c), height h and width w.
//
// Training targets (from the DLSample keys bbox_label_id, bbox_row1, bbox_col1, bbox_row2, bbox_col2): an
// anchor whose best IoU with a ground-truth box is >= 0.5 is foreground for that box, < 0.4 background, in
// between ignored; in addition each box's best anchor(s) become foreground for it (so that no box is left
// without an anchor). Class loss per level: the sigmoid focal loss (gamma 2, alpha =
// class_weights, default 0.25 per class) on every non-ignored anchor and class, 'loss_class_<l>', weight
// class_heads_weight; box loss per level: Huber (smooth L1) with beta 0.11 over the 4 deltas of foreground
// anchors, 'loss_box_<l>', weight bbox_heads_weight. Both are divided by the number of foreground anchors of
// the batch over all levels (at least 1). DLTrainResult: total_loss, these per-level losses, regularization.
// An image without boxes is a valid sample (all its anchors are background).
//
// rectangle2 (oriented boxes; DLSample keys bbox_row, bbox_col, bbox_phi, bbox_length1, bbox_length2). Every
// rectangle1 anchor above is repeated for each of anchor_angles: centre kept, l1 = width / 2 along the angle,
// l2 = height / 2 (anchor a = (k * |ratios| + ratio index) * |angles| + angle index). Assignment as above
// with the exact IoU of the oriented rectangles (polygon clipping). Encoding relative to an anchor of centre
// (ra, ca), angle pa and half lengths la1, la2: the centre offset in the anchor's own axes, the log length
// ratios and the angle difference, as (sin, cos) with 6 deltas (ignore_direction 'false': phi is a heading in
// (-pi, pi]) or as one fifth delta in the equivalent form nearest the anchor (ignore_direction 'true': phi
// modulo pi, results in (-pi/2, pi/2]); details in layers/boxes.cpp.
// class_ids_no_orientation: ground-truth boxes of these classes are replaced by their enclosing axis-aligned
// rectangle2 (phi 0), encoded in the form nearest each anchor, and their results are again the enclosing
// axis-aligned rectangle2 of the decoded box. Box channels per anchor: 4 (rectangle1), 5 or 6 (rectangle2).
// A rectangle2 box may reach beyond the image; its centre must lie in it. Results are not clipped.
//
// Inference: per level the anchors and classes with sigmoid confidence >= min_confidence (at most the 1000
// best per level) are decoded (rectangle1: clipped to the image); then non-maximum suppression per class at IoU
// max_overlap, class-agnostic suppression at max_overlap_class_agnostic (1.0: off), and the
// max_num_detections most confident. DLResult: bbox_row1, bbox_col1, bbox_row2, bbox_col2 (rectangle1) or
// bbox_row, bbox_col, bbox_phi, bbox_length1, bbox_length2 (rectangle2), and bbox_class_id, bbox_class_name,
// bbox_confidence (by descending confidence).
#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>

#include "models/class_adapter.h"
#include "models/detection.h"
#include "models/zoo.h"

namespace opendl {

// ---------------------------------------------------------------------------------------------- adapter

namespace {

using namespace zoo;

constexpr double kBeta = 0.11, kGamma = 2.0, kPrior = 0.01;
constexpr int64_t kMaxBoxes = 4096;  // ground-truth boxes per image
const char* kNumFg = "num_foreground";
const char* kGtBoxes = "gt_boxes";
const char* kProposals = "box_proposals";

std::string lname(const char* base, int64_t l) { return std::string(base) + "_" + std::to_string(l); }

double number_of(const Tuple& v, const std::string& what) {
  if (v.size() != 1 || !is_number(v[0]) || !std::isfinite(as_double(v[0])))
    fail(err::kWrongValue3, "'" + what + "' must be one finite number, got " + to_string(v));
  return as_double(v[0]);
}
int64_t integer_of(const Tuple& v, const std::string& what, int64_t lo, int64_t hi) {
  double x = number_of(v, what);
  if (x != std::floor(x) || x < double(lo) || x > double(hi))
    fail(err::kWrongValue3, "'" + what + "' must be an integer in [" + std::to_string(lo) + ", " +
                                std::to_string(hi) + "], got " + to_string(v));
  return int64_t(x);
}
double unit_of(const Tuple& v, const std::string& what) {
  double x = number_of(v, what);
  if (x < 0 || x > 1) fail(err::kWrongValue3, "'" + what + "' must lie in [0, 1], got " + to_string(v));
  return x;
}

class DetectionAdapter : public ClassAdapter {
 public:
  std::string type() const override { return "detection"; }
  std::unique_ptr<ModelAdapter> clone() const override { return std::make_unique<DetectionAdapter>(*this); }

  // Creation settings (not changeable afterwards).
  std::string backbone_ = "pretrained_dl_classifier_compact.hdl", capacity_ = "high";
  int64_t min_level_ = 2, max_level_ = 4, subscales_ = 3;
  std::vector<double> ratios_ = {1.0, 2.0, 0.5};
  std::vector<std::string> docking_;
  double bbox_heads_weight_ = 1.0, class_heads_weight_ = 1.0;
  // Inference settings.
  double min_confidence_ = 0.5, max_overlap_ = 0.5, max_overlap_ca_ = 1.0;
  int64_t max_num_detections_ = 100;

  // rectangle2 settings.
  bool rect2_ = false, ignore_dir_ = false;
  std::vector<double> angles_ = {0.0};
  std::vector<int64_t> no_orient_;  // class_ids_no_orientation
  // Backbone layers in execution order with the pyramid level of their output (freeze_backbone_level).
  std::vector<std::string> bb_names_;
  std::vector<int64_t> bb_levels_;
  int64_t freeze_level_ = 0;

  int64_t num_anchors() const { return subscales_ * int64_t(ratios_.size()) * (rect2_ ? int64_t(angles_.size()) : 1); }
  int64_t box_channels() const { return rect2_ ? box2_deltas(ignore_dir_) : 4; }
  std::vector<double> alpha() const {
    return class_weights_.empty() ? std::vector<double>(class_ids_.size(), 0.25) : class_weights_;
  }

  void set_image_layer(const std::string& n) { image_ = n; }
  void init(int64_t num_classes) {
    label_ = weight_ = prob_ = logits_ = "";
    class_ids_.resize(size_t(num_classes));
    std::iota(class_ids_.begin(), class_ids_.end(), 0);
    class_names_.clear();
    for (auto id : class_ids_) class_names_.push_back(std::to_string(id));
  }

  // ------------------------------------------------------------------ samples

  // Ground truth of one sample, by instance type (b1 for rectangle1, b2 for rectangle2).
  struct Truth {
    std::vector<int64_t> cls;  // class index
    std::vector<Box1> b1;
    std::vector<Box2> b2;
  };
  bool no_orientation(int64_t class_index) const {
    return std::find(no_orient_.begin(), no_orient_.end(), class_ids_[size_t(class_index)]) != no_orient_.end();
  }

  Truth sample_truth(const Sample& s, size_t i, const Shape4& img) const {
    static const char* k1[5] = {"bbox_row1", "bbox_col1", "bbox_row2", "bbox_col2", nullptr};
    static const char* k2[5] = {"bbox_row", "bbox_col", "bbox_phi", "bbox_length1", "bbox_length2"};
    std::vector<const char*> keys{"bbox_label_id"};
    for (int k = 0; k < (rect2_ ? 5 : 4); ++k) keys.push_back(rect2_ ? k2[k] : k1[k]);
    const std::string at = "sample " + std::to_string(i);
    std::vector<Tuple> v(keys.size());
    for (size_t k = 0; k < keys.size(); ++k) {
      auto it = s.find(keys[k]);
      if (it == s.end())
        fail(err::kInputsMissing, at + " has no key '" + keys[k] + "' (an image without objects has empty tuples)");
      if (!std::holds_alternative<Tuple>(it->second))
        fail(err::kInputWrongType, at + ": '" + keys[k] + "' must be a tuple of numbers");
      v[k] = std::get<Tuple>(it->second);
      for (auto& e : v[k])
        if (!is_number(e) || !std::isfinite(as_double(e)))
          fail(err::kInputWrongType, at + ": '" + keys[k] + "' holds " + to_string(e) + ", not a finite number");
      if (v[k].size() != v[0].size())
        fail(err::kInputWrongLength, at + ": '" + keys[k] + "' has " + std::to_string(v[k].size()) +
                                         " values but 'bbox_label_id' " + std::to_string(v[0].size()));
    }
    Truth t;
    for (size_t b = 0; b < v[0].size(); ++b) {
      const double id = as_double(v[0][b]);
      const int64_t k = id == std::floor(id) ? index_of(int64_t(id)) : -1;
      if (k < 0)
        fail(err::kInputWrongValues, at + ": bbox_label_id " + to_string(v[0][b]) + " is not one of the class_ids " +
                                         ids_str(class_ids_));
      std::string which = at + ", box " + std::to_string(b) + " (";
      for (size_t q = 1; q < keys.size(); ++q) which += (q > 1 ? ", " : "") + to_string(v[q][b]);
      which += ")";
      auto x = [&](size_t q) { return as_double(v[q][b]); };
      if (!rect2_) {
        Box1 box{x(1), x(2), x(3), x(4)};
        if (!(box.r2 > box.r1) || !(box.c2 > box.c1))
          fail(err::kInputWrongValues, which + ": zero or negative area (row2 must exceed row1, col2 col1)");
        // HALCON's pixel-centred coordinates put a full-image box at -0.5 .. size - 0.5; half a pixel of
        // slack on either side allows for rounding in the annotation tools.
        if (box.r1 < -1.0 || box.c1 < -1.0 || box.r2 > double(img.h) + 1e-9 || box.c2 > double(img.w) + 1e-9)
          fail(err::kInputWrongValues, which + " lies outside the " + std::to_string(img.h) + " x " +
                                           std::to_string(img.w) + " image");
        t.b1.push_back(box);
      } else {
        Box2 box{x(1), x(2), x(3), x(4), x(5)};
        if (!(box.l1 > 0) || !(box.l2 > 0))
          fail(err::kInputWrongValues, which + ": zero or negative area (bbox_length1 and bbox_length2 must be > 0)");
        // The centre must lie in the image (with the half pixel of slack); the box may reach beyond it.
        if (box.r < -1.0 || box.c < -1.0 || box.r > double(img.h) + 1e-9 || box.c > double(img.w) + 1e-9)
          fail(err::kInputWrongValues, which + ": the centre lies outside the " + std::to_string(img.h) + " x " +
                                           std::to_string(img.w) + " image");
        box.phi = wrap_angle(box.phi, ignore_dir_ ? M_PI : 2 * M_PI);
        if (no_orientation(k)) box = enclosing_axis_aligned(box);
        t.b2.push_back(box);
      }
      t.cls.push_back(k);
    }
    return t;
  }

  // The ground truth as the records of the 'gt_boxes' input (box parameters, then the class index).
  std::vector<Sample> train_inputs(const Model& m, const std::vector<Sample>& batch) const override {
    require_generic_layers(m);
    const Shape4 img = image_shape(m);
    std::vector<Sample> out;
    for (size_t i = 0; i < batch.size(); ++i) {
      Sample n = image_of(batch[i], i);
      const Truth gt = sample_truth(batch[i], i, img);
      if (gt.cls.size() > size_t(kMaxBoxes))
        fail(err::kInputWrongLength, "sample " + std::to_string(i) + " holds " + std::to_string(gt.cls.size()) +
                                         " boxes; a detection model takes at most " + std::to_string(kMaxBoxes) +
                                         " per image");
      Tuple t;
      for (size_t b = 0; b < gt.cls.size(); ++b) {
        if (rect2_) {
          const Box2& x = gt.b2[b];
          for (double v : {x.r, x.c, x.phi, x.l1, x.l2}) t.push_back(v);
        } else {
          const Box1& x = gt.b1[b];
          for (double v : {x.r1, x.c1, x.r2, x.c2}) t.push_back(v);
        }
        t.push_back(double(gt.cls[b]));
      }
      n[kGtBoxes] = std::move(t);
      out.push_back(std::move(n));
    }
    return out;
  }

  // Models written before the generic detection layers computed their targets outside the network.
  void require_generic_layers(const Model& m) const {
    if (m.net().find(kProposals) < 0)
      fail(err::kWrongVersion, "this detection model was written by an older opendl whose network computed no "
                               "anchors, box targets or box proposals; create it again with "
                               "create_dl_model_detection (its weights can be copied with load_dl_model_weights)");
  }

  // ------------------------------------------------------------------ results

  std::vector<std::string> output_layers(const std::vector<std::string>& requested) const override {
    static const std::set<std::string> common = {"bbox_class_id", "bbox_class_name", "bbox_confidence"};
    static const std::set<std::string> k1 = {"bbox_row1", "bbox_col1", "bbox_row2", "bbox_col2"};
    static const std::set<std::string> k2 = {"bbox_row", "bbox_col", "bbox_phi", "bbox_length1", "bbox_length2"};
    for (auto& r : requested)
      if (!common.count(r) && !(rect2_ ? k2 : k1).count(r)) return {};
    return {kProposals};
  }

  // DLResult from the box_proposals layer's records (box parameters, class index, confidence; unused records,
  // class -1, last).
  void make_results(const Model& m, std::vector<Result>& results,
                    const std::vector<std::string>& requested) const override {
    require_generic_layers(m);
    const int64_t P = rect2_ ? 5 : 4;
    for (auto& r : results) {
      auto it = r.find(kProposals);
      if (it == r.end()) continue;
      const Tensor t = std::get<Tensor>(it->second);  // (P + 2, 1, records)
      r.erase(it);
      const int64_t M = t.dim(2);
      const float* x = t.f32();
      std::vector<std::pair<const char*, Tuple>> cols;
      if (rect2_) cols = {{"bbox_row", {}}, {"bbox_col", {}}, {"bbox_phi", {}}, {"bbox_length1", {}}, {"bbox_length2", {}}};
      else cols = {{"bbox_row1", {}}, {"bbox_col1", {}}, {"bbox_row2", {}}, {"bbox_col2", {}}};
      Tuple id, name, conf;
      for (int64_t k = 0; k < M; ++k) {
        const float c = x[P * M + k];
        if (c < 0) break;
        for (int64_t q = 0; q < P; ++q) cols[size_t(q)].second.push_back(double(x[q * M + k]));
        id.push_back(class_ids_[size_t(c)]);
        name.push_back(class_names_[size_t(c)]);
        conf.push_back(double(x[(P + 1) * M + k]));
      }
      cols.push_back({"bbox_class_id", id});
      cols.push_back({"bbox_class_name", name});
      cols.push_back({"bbox_confidence", conf});
      std::set<std::string> want(requested.begin(), requested.end());
      for (auto& [k, v] : cols)
        if (want.empty() || want.count(k)) r[k] = std::move(v);
    }
  }

  // The settings the detection layers carry: inference settings (box_proposals) and the classes without
  // orientation (box_proposals, box_assignment; as class indices).
  void set_layer_params(std::vector<LayerDesc>& ds) const {
    Tuple no;
    for (int64_t id : no_orient_)
      if (index_of(id) >= 0) no.push_back(index_of(id));
    for (auto& d : ds) {
      if (d.type == "box_proposals") {
        d.params["min_confidence"] = {min_confidence_};
        d.params["max_overlap"] = {max_overlap_};
        d.params["max_overlap_class_agnostic"] = {max_overlap_ca_};
        d.params["max_num_detections"] = {max_num_detections_};
      }
      if (d.type == "box_proposals" || d.type == "box_assignment") d.params["class_ids_no_orientation"] = no;
    }
  }
  // Applies a change of the adapter's settings to the layers; on failure the settings are restored.
  template <class F>
  void change(Model& m, F&& set) {
    require_generic_layers(m);
    DetectionAdapter old(*this);
    set();
    try {
      auto ds = m.describe();
      set_layer_params(ds);
      m.rebuild(ds);
    } catch (...) {
      *this = old;
      throw;
    }
  }

  // ------------------------------------------------------------------ parameters

  std::vector<std::string> param_names() const override {
    auto v = ClassAdapter::param_names();
    for (const char* n : {"backbone", "instance_type", "min_level", "max_level", "anchor_num_subscales",
                          "anchor_aspect_ratios", "capacity", "backbone_docking_layers", "bbox_heads_weight",
                          "class_heads_weight", "min_confidence", "max_overlap", "max_overlap_class_agnostic",
                          "max_num_detections", "anchor_angles", "ignore_direction", "class_ids_no_orientation",
                          "freeze_backbone_level"})
      v.push_back(n);
    return v;
  }
  bool get_param(const Model& m, const std::string& name, Tuple& out) const override {
    if (name == "class_weights") {
      auto a = alpha();
      out.assign(a.begin(), a.end());
    } else if (name == "backbone") out = {backbone_};
    else if (name == "instance_type") out = {std::string(rect2_ ? "rectangle2" : "rectangle1")};
    else if (name == "anchor_angles") out.assign(angles_.begin(), angles_.end());
    else if (name == "ignore_direction") out = {std::string(ignore_dir_ ? "true" : "false")};
    else if (name == "class_ids_no_orientation") out.assign(no_orient_.begin(), no_orient_.end());
    else if (name == "freeze_backbone_level") out = {freeze_level_};
    else if (name == "min_level") out = {min_level_};
    else if (name == "max_level") out = {max_level_};
    else if (name == "anchor_num_subscales") out = {subscales_};
    else if (name == "anchor_aspect_ratios") out.assign(ratios_.begin(), ratios_.end());
    else if (name == "capacity") out = {capacity_};
    else if (name == "backbone_docking_layers") out.assign(docking_.begin(), docking_.end());
    else if (name == "bbox_heads_weight") out = {bbox_heads_weight_};
    else if (name == "class_heads_weight") out = {class_heads_weight_};
    else if (name == "min_confidence") out = {min_confidence_};
    else if (name == "max_overlap") out = {max_overlap_};
    else if (name == "max_overlap_class_agnostic") out = {max_overlap_ca_};
    else if (name == "max_num_detections") out = {max_num_detections_};
    else return ClassAdapter::get_param(m, name, out);
    return true;
  }
  bool set_param(Model& m, const std::string& name, const Tuple& v) override {
    static const std::set<std::string> fixed = {
        "backbone", "instance_type", "min_level", "max_level", "anchor_num_subscales", "anchor_aspect_ratios",
        "capacity", "backbone_docking_layers", "bbox_heads_weight", "class_heads_weight", "image_width",
        "image_height", "image_num_channels", "image_dimensions", "image_size", "anchor_angles", "ignore_direction"};
    if (fixed.count(name))
      fail(err::kWrongValue2, "'" + name + "' of a detection model is set at creation (create_dl_model_detection) "
                                           "and cannot be changed afterwards");
    if (name == "min_confidence") {
      const double x = unit_of(v, name);
      change(m, [&] { min_confidence_ = x; });
    } else if (name == "max_overlap") {
      const double x = unit_of(v, name);
      change(m, [&] { max_overlap_ = x; });
    } else if (name == "max_overlap_class_agnostic") {
      const double x = unit_of(v, name);
      change(m, [&] { max_overlap_ca_ = x; });
    } else if (name == "max_num_detections") {
      const int64_t x = integer_of(v, name, 1, 1 << 24);
      change(m, [&] { max_num_detections_ = x; });
    }
    else if (name == "freeze_backbone_level") {
      const int64_t level = integer_of(v, name, 0, 16);
      if (level > 0 && bb_names_.empty())
        fail(err::kWrongValue3, "freeze_backbone_level: this model file does not list its backbone layers (written "
                                "by an older opendl); create the model again to freeze its backbone");
      auto ds = m.describe();
      freeze(ds, level);
      m.rebuild(ds);
      freeze_level_ = level;
    } else if (name == "class_ids_no_orientation") {
      std::vector<int64_t> ids;
      for (auto& e : v) {
        const double x = is_number(e) ? as_double(e) : -1;
        if (x != std::floor(x) || index_of(int64_t(x)) < 0)
          fail(err::kWrongValue3, "'class_ids_no_orientation' holds " + to_string(e) + ", not one of the class_ids " +
                                      ids_str(class_ids_));
        ids.push_back(int64_t(x));
      }
      if (!ids.empty() && !rect2_)
        fail(7822, "'class_ids_no_orientation' applies to instance_type 'rectangle2' only; this model is 'rectangle1'");
      change(m, [&] { no_orient_ = ids; });
    } else if (name == "num_classes") {
      fail(err::kWrongValue2, "model parameter 'num_classes' of a detection model can only be read; it follows "
                              "'class_ids' (set those to change the classes)");
    } else if (name == "class_ids") {
      // Classes without orientation that are no longer classes are dropped.
      ClassAdapter::set_param(m, name, v);
      std::vector<int64_t> keep;
      for (int64_t id : no_orient_)
        if (index_of(id) >= 0) keep.push_back(id);
      change(m, [&] { no_orient_ = keep; });
    }
    else if (name == "class_weights") {
      std::vector<double> w;
      for (auto& e : v) {
        if (!is_number(e) || !(as_double(e) >= 0 && as_double(e) <= 1))  // NaN fails too
          fail(err::kWrongValue3, "'class_weights' (focal loss alpha) must lie in [0, 1], got " + to_string(e));
        w.push_back(as_double(e));
      }
      if (w.size() == 1) w.assign(class_ids_.size(), w[0]);
      if (w.size() != class_ids_.size())
        fail(err::kWrongNumValues3, "'class_weights' needs one value per class (" +
                                        std::to_string(class_ids_.size()) + "), got " + std::to_string(w.size()));
      auto ds = m.describe();
      auto old = class_weights_;
      class_weights_ = w;
      try {
        set_focal_alpha(ds);
        m.rebuild(ds);
      } catch (...) {
        class_weights_ = old;
        throw;
      }
    } else return ClassAdapter::set_param(m, name, v);
    return true;
  }
  // freeze_backbone_level L: the backbone layers before the first one of a level deeper than L get learning-rate
  // multipliers 0 and their batch normalisation uses (and keeps) its running statistics; the others get
  // multipliers 1 and batch statistics. L = 0 freezes nothing.
  void freeze(std::vector<LayerDesc>& ds, int64_t level) const {
    std::set<std::string> frozen, backbone(bb_names_.begin(), bb_names_.end());
    for (size_t i = 0; i < bb_names_.size() && level > 0 && bb_levels_[i] <= level; ++i) frozen.insert(bb_names_[i]);
    for (auto& d : ds) {
      if (!backbone.count(d.name)) continue;
      const bool f = frozen.count(d.name) > 0;
      for (const char* k : {"learning_rate_multiplier", "learning_rate_multiplier_bias"})
        if (d.params.count(k)) d.params[k] = Tuple{f ? 0.0 : 1.0};
      if (d.params.count("use_global_stats")) d.params["use_global_stats"] = Tuple{std::string(f ? "true" : "false")};
    }
  }

  void set_focal_alpha(std::vector<LayerDesc>& ds) const {
    Tuple t;
    auto a = alpha();
    for (int64_t x = 0; x < num_anchors(); ++x)
      for (double v : a) t.push_back(v);
    for (auto& d : ds)
      if (d.type == "loss_focal") d.params["class_weights"] = t;
  }
  void resize_classes(std::vector<LayerDesc>& ds, int64_t n) const override {
    const int64_t a = num_anchors();
    for (auto& d : ds) {
      if (d.name.rfind("class_scores_", 0) == 0) d.params["num_kernel"] = Tuple{a * n};
      if (d.type == "box_assignment") d.params["num_classes"] = Tuple{n};
      // Class indices may change meaning: set again (set_param 'class_ids') once the classes are set.
      if (d.type == "box_assignment" || d.type == "box_proposals") d.params["class_ids_no_orientation"] = Tuple{};
    }
    DetectionAdapter copy(*this);
    copy.class_ids_.resize(size_t(n));
    copy.class_weights_.clear();
    copy.set_focal_alpha(ds);
  }

  void save(Dict& d) const override {
    ClassAdapter::save(d);
    d.set_tuple("backbone", {backbone_});
    d.set_tuple("capacity", {capacity_});
    d.set_tuple("levels", {min_level_, max_level_});
    d.set_tuple("anchor_num_subscales", {subscales_});
    d.set_tuple("anchor_aspect_ratios", Tuple(ratios_.begin(), ratios_.end()));
    d.set_tuple("backbone_docking_layers", Tuple(docking_.begin(), docking_.end()));
    d.set_tuple("heads_weights", {bbox_heads_weight_, class_heads_weight_});
    d.set_tuple("inference", {min_confidence_, max_overlap_, max_overlap_ca_, max_num_detections_});
    d.set_tuple("backbone_layers", Tuple(bb_names_.begin(), bb_names_.end()));
    d.set_tuple("backbone_layer_levels", Tuple(bb_levels_.begin(), bb_levels_.end()));
    d.set_tuple("freeze_backbone_level", {freeze_level_});
    if (rect2_) {
      d.set_tuple("rectangle2", {int64_t(ignore_dir_ ? 1 : 0)});
      d.set_tuple("anchor_angles", Tuple(angles_.begin(), angles_.end()));
      d.set_tuple("class_ids_no_orientation", Tuple(no_orient_.begin(), no_orient_.end()));
    }
  }
  void load(const Dict& d) override {
    ClassAdapter::load(d);
    backbone_ = std::get<std::string>(d.get_tuple("backbone").at(0));
    capacity_ = std::get<std::string>(d.get_tuple("capacity").at(0));
    auto lv = d.get_tuple("levels");
    min_level_ = std::get<int64_t>(lv.at(0));
    max_level_ = std::get<int64_t>(lv.at(1));
    subscales_ = std::get<int64_t>(d.get_tuple("anchor_num_subscales").at(0));
    ratios_.clear();
    for (auto& v : d.get_tuple("anchor_aspect_ratios")) ratios_.push_back(as_double(v));
    docking_.clear();
    for (auto& v : d.get_tuple("backbone_docking_layers")) docking_.push_back(std::get<std::string>(v));
    auto hw = d.get_tuple("heads_weights");
    bbox_heads_weight_ = as_double(hw.at(0));
    class_heads_weight_ = as_double(hw.at(1));
    auto inf = d.get_tuple("inference");
    min_confidence_ = as_double(inf.at(0));
    max_overlap_ = as_double(inf.at(1));
    max_overlap_ca_ = as_double(inf.at(2));
    max_num_detections_ = std::get<int64_t>(inf.at(3));
    bb_names_.clear();
    bb_levels_.clear();
    freeze_level_ = 0;
    if (d.contains("backbone_layers")) {
      for (auto& v : d.get_tuple("backbone_layers")) bb_names_.push_back(std::get<std::string>(v));
      for (auto& v : d.get_tuple("backbone_layer_levels")) bb_levels_.push_back(std::get<int64_t>(v));
      freeze_level_ = std::get<int64_t>(d.get_tuple("freeze_backbone_level").at(0));
    }
    rect2_ = d.contains("rectangle2");
    ignore_dir_ = rect2_ && std::get<int64_t>(d.get_tuple("rectangle2").at(0)) != 0;
    angles_ = {0.0};
    no_orient_.clear();
    if (rect2_) {
      angles_.clear();
      for (auto& v : d.get_tuple("anchor_angles")) angles_.push_back(as_double(v));
      for (auto& v : d.get_tuple("class_ids_no_orientation")) no_orient_.push_back(std::get<int64_t>(v));
    }
  }
};

// ---------------------------------------------------------------------------------------------- creation

struct Head {
  // Layer names of the detector's own layers carry its prefixes, so they never collide with backbone names.
  // `share`: the layer whose weights a convolution uses ('' = its own).
  L cbr(const L& x, const std::string& nm, int64_t out, const std::string& share = "") {
    L c = CreateDlLayerConvolution(x, nm + "_conv", {int64_t(3)}, {int64_t(1)}, {int64_t(1)}, out, 1,
                                   {std::string("half_kernel_size")}, "none",
                                   {std::string("weight_filler"), std::string("bias_term"),
                                    std::string("weights_shared_with")},
                                   {std::string("msra"), std::string("false"), share.empty() ? "" : share + "_conv"});
    return CreateDlLayerBatchNormalization(c, nm + "_bn", Value(0.9), 1e-5, "relu", kNone, kNone);
  }
  L conv_bias(const L& x, const std::string& nm, int64_t k, int64_t out, int64_t stride, const std::string& act,
              double bias = 0.0, const std::string& share = "") {
    return CreateDlLayerConvolution(x, nm, {k}, {int64_t(1)}, {stride}, out, 1, {std::string("half_kernel_size")},
                                    act, {std::string("weight_filler"), std::string("bias_filler_const_val"),
                                          std::string("weights_shared_with")},
                                    {std::string("msra"), bias, share});
  }
};

std::vector<double> numbers(const Tuple& v, const std::string& what) {
  std::vector<double> out;
  for (auto& e : v) {
    if (!is_number(e) || !std::isfinite(as_double(e)) || as_double(e) <= 0)
      fail(err::kWrongValue3, "'" + what + "' must be positive numbers, got " + to_string(v));
    out.push_back(as_double(e));
  }
  if (out.empty()) fail(err::kWrongNumValues3, "'" + what + "' needs at least one value");
  return out;
}

}  // namespace

std::shared_ptr<Model> create_detection_model(const std::string& backbone_name, int64_t num_classes,
                                              const std::map<std::string, Tuple>& given,
                                              const std::function<std::shared_ptr<Model>(const std::string&)>& read) {
  if (num_classes < 1) fail(err::kWrongValue2, "num_classes must be >= 1, got " + std::to_string(num_classes));
  DetectionAdapter a;
  a.init(num_classes);
  a.backbone_ = backbone_name;
  std::map<std::string, Tuple> p = given;
  auto take = [&](const std::string& k) -> const Tuple* {
    auto it = p.find(k);
    return it == p.end() ? nullptr : &it->second;
  };
  static const std::set<std::string> known = {
      "backbone", "num_classes", "class_ids", "class_names", "image_width", "image_height", "image_num_channels",
      "image_dimensions", "instance_type", "min_level", "max_level", "anchor_num_subscales",
      "anchor_aspect_ratios", "capacity", "backbone_docking_layers", "class_weights", "bbox_heads_weight",
      "class_heads_weight", "min_confidence", "max_overlap", "max_overlap_class_agnostic", "max_num_detections",
      "image_range_min", "image_range_max", "anchor_angles", "ignore_direction", "class_ids_no_orientation",
      "freeze_backbone_level"};
  for (auto& kv : p)
    if (!known.count(kv.first))
      fail(err::kWrongValue3, "dlmodel_detection_param: unknown key '" + kv.first + "'");
  for (const char* k : {"class_ids", "class_names"})
    if (auto v = take(k))
      if (int64_t(v->size()) != num_classes)
        fail(err::kWrongValue3, std::string("dlmodel_detection_param '") + k + "' holds " + std::to_string(v->size()) +
                                    " value(s), but num_classes is " + std::to_string(num_classes));
  if (auto v = take("num_classes"))
    if (integer_of(*v, "num_classes", 1, 1 << 20) != num_classes)
      fail(err::kWrongValue3, "dlmodel_detection_param 'num_classes' differs from num_classes");
  if (auto v = take("backbone"))
    if (v->size() != 1 || !is_string((*v)[0]) || std::get<std::string>((*v)[0]) != backbone_name)
      fail(err::kWrongValue3, "dlmodel_detection_param 'backbone' " + to_string(*v) + " differs from backbone '" +
                                  backbone_name + "'");
  if (auto v = take("instance_type")) {
    const std::string t = v->size() == 1 && is_string((*v)[0]) ? std::get<std::string>((*v)[0]) : "";
    if (t != "rectangle1" && t != "rectangle2")
      fail(7824, "instance_type must be 'rectangle1' or 'rectangle2', got " + to_string(*v));
    a.rect2_ = t == "rectangle2";
  }
  if (auto v = take("ignore_direction")) {
    const Value x = v->size() == 1 ? (*v)[0] : Value(std::string());
    const std::string t = is_string(x) ? std::get<std::string>(x) : is_number(x) ? std::to_string(int(as_double(x))) : "";
    if (t != "true" && t != "false" && t != "1" && t != "0")
      fail(7822, "ignore_direction must be 'true' or 'false', got " + to_string(*v));
    a.ignore_dir_ = t == "true" || t == "1";
    if (a.ignore_dir_ && !a.rect2_)
      fail(7822, "ignore_direction applies to instance_type 'rectangle2' only");
  }
  if (auto v = take("anchor_angles")) {
    std::vector<double> ang;
    for (auto& e : *v) {
      if (!is_number(e) || !std::isfinite(as_double(e)))
        fail(7822, "anchor_angles must be finite angles in radians, got " + to_string(*v));
      ang.push_back(wrap_angle(as_double(e), a.ignore_dir_ ? M_PI : 2 * M_PI));
    }
    if (ang.empty()) fail(err::kWrongNumValues3, "anchor_angles needs at least one angle");
    if (!a.rect2_ && (ang.size() != 1 || ang[0] != 0.0))
      fail(7822, "anchor_angles apply to instance_type 'rectangle2' only; a 'rectangle1' model takes [0.0]");
    a.angles_ = ang;
  }
  if (auto v = take("min_level")) a.min_level_ = integer_of(*v, "min_level", 1, 8);
  if (auto v = take("max_level")) a.max_level_ = integer_of(*v, "max_level", 1, 8);
  if (a.min_level_ > a.max_level_)
    fail(7813, "min_level (" + std::to_string(a.min_level_) + ") must not exceed max_level (" +
                   std::to_string(a.max_level_) + ")");
  if (auto v = take("anchor_num_subscales")) a.subscales_ = integer_of(*v, "anchor_num_subscales", 1, 16);
  if (auto v = take("anchor_aspect_ratios")) a.ratios_ = numbers(*v, "anchor_aspect_ratios");
  if (a.ratios_.size() > kMaxAnchorValues || a.angles_.size() > kMaxAnchorValues)
    fail(err::kWrongNumValues3, "anchor_aspect_ratios and anchor_angles take at most " +
                                    std::to_string(kMaxAnchorValues) + " values each, got " +
                                    std::to_string(a.ratios_.size()) + " and " + std::to_string(a.angles_.size()));
  if (auto v = take("capacity")) {
    const std::string c = v->size() == 1 && is_string((*v)[0]) ? std::get<std::string>((*v)[0]) : "";
    if (c != "high" && c != "medium" && c != "low")
      fail(err::kWrongValue3, "capacity must be 'high', 'medium' or 'low', got " + to_string(*v));
    a.capacity_ = c;
  }
  if (auto v = take("bbox_heads_weight")) a.bbox_heads_weight_ = numbers(*v, "bbox_heads_weight").at(0);
  if (auto v = take("class_heads_weight")) a.class_heads_weight_ = numbers(*v, "class_heads_weight").at(0);

  // The backbone at the detector's image size.
  std::shared_ptr<Model> bb = read(backbone_name);
  if (bb->adapter().type() != "classification")
    fail(err::kWrongValue1, "backbone '" + backbone_name + "' is a '" + bb->adapter().type() +
                                "' model; a classification model is needed");
  try {  // the backbone checks the image size; its messages speak of a classification model
    if (auto v = take("image_dimensions")) bb->set_param("image_dimensions", *v);
    for (const char* k : {"image_width", "image_height", "image_num_channels"})
      if (auto v = take(k)) bb->set_param(k, *v);
  } catch (const Error& e) {
    throw Error(e.code(), e.op(), "dlmodel_detection_param: the detector's image size is its backbone's ('" +
                                      backbone_name + "', a classifier): " + e.message());
  }
  a.set_image_layer(static_cast<const ClassAdapter&>(bb->adapter()).image_layer());
  Tuple range_min = bb->get_param("image_range_min"), range_max = bb->get_param("image_range_max");
  const Shape4 img = [&] {
    Tuple d = bb->get_param("image_dimensions");
    return Shape4{1, std::get<int64_t>(d[2]), std::get<int64_t>(d[1]), std::get<int64_t>(d[0])};
  }();

  // Docking layers: per level the last layer (in execution order) of that level's size.
  auto descs = bb->describe();
  std::map<std::string, LayerPtr> made;
  std::map<std::string, Shape4> shapes;
  for (auto& s : bb->net().slots()) shapes[s.layer->name()] = s.layer->shape();
  std::vector<int64_t> hs{img.h}, ws{img.w};
  for (int64_t l = 1; l <= a.max_level_; ++l) {
    hs.push_back((hs.back() + 1) / 2);
    ws.push_back((ws.back() + 1) / 2);
  }
  std::map<int64_t, std::string> dock;
  if (auto v = take("backbone_docking_layers")) {
    if (int64_t(v->size()) > a.max_level_ - a.min_level_ + 1 || v->empty())
      fail(err::kWrongNumValues3, "backbone_docking_layers needs 1 to " +
                                      std::to_string(a.max_level_ - a.min_level_ + 1) + " layer names");
    for (size_t i = 0; i < v->size(); ++i) {
      if (!is_string((*v)[i])) fail(err::kWrongType3, "backbone_docking_layers must be layer names");
      const std::string n = std::get<std::string>((*v)[i]);
      if (!shapes.count(n)) fail(err::kWrongValue3, "backbone_docking_layers: the backbone has no layer '" + n + "'");
      dock[a.min_level_ + int64_t(i)] = n;
    }
  } else {
    for (auto& d : descs) {
      if (d.type == "input" || d.type.rfind("loss", 0) == 0) continue;
      const Shape4& s = shapes[d.name];
      for (int64_t l = a.min_level_; l <= a.max_level_; ++l)
        if (s.h == hs[size_t(l)] && s.w == ws[size_t(l)] && s.h > 1) dock[l] = d.name;
    }
    if (!dock.count(a.min_level_))
      fail(7813, "backbone '" + backbone_name + "' has no layer at level min_level = " +
                     std::to_string(a.min_level_) + " (" + std::to_string(hs[size_t(a.min_level_)]) + " x " +
                     std::to_string(ws[size_t(a.min_level_)]) + ") for a " + std::to_string(img.w) + " x " +
                     std::to_string(img.h) + " image");
  }
  for (auto& kv : dock) a.docking_.push_back(kv.second);
  {
    std::vector<int64_t> hl{img.h};  // image height at each level, deep enough for any backbone layer
    while (hl.back() > 1) hl.push_back((hl.back() + 1) / 2);
    for (auto& d : descs) {
      int64_t l = 0;
      while (l + 1 < int64_t(hl.size()) && hl[size_t(l)] > shapes[d.name].h) ++l;
      a.bb_names_.push_back(d.name);
      a.bb_levels_.push_back(l);
    }
  }
  for (auto& d : descs) {
    std::vector<LayerPtr> ins;
    for (auto& n : d.inputs) ins.push_back(made.at(n));
    made[d.name] = restore_layer(d.type, ins, d.name, d.params);
  }

  const int64_t F = a.capacity_ == "high" ? 128 : a.capacity_ == "medium" ? 64 : 32;
  const int n_head = a.capacity_ == "low" ? 1 : 2;
  Head b;
  std::map<int64_t, L> feat;
  for (int64_t l = a.min_level_; l <= a.max_level_; ++l) {
    if (dock.count(l)) {
      feat[l] = L{made.at(dock[l])};
    } else {
      if (!feat.count(l - 1))
        fail(7813, "backbone_docking_layers leave level " + std::to_string(l - 1) + " without a layer");
      feat[l] = b.conv_bias(feat[l - 1], lname("fpn_extra", l), 3, F, 2, "relu");
    }
  }
  // Top-down pyramid.
  std::map<int64_t, L> pyr;
  for (int64_t l = a.max_level_; l >= a.min_level_; --l) {
    L lat = b.conv_bias(feat[l], lname("fpn_lateral", l), 1, F, 1, "none");
    if (l < a.max_level_) {
      L up = CreateDlLayer("zoom_to_layer_size", {pyr[l + 1], lat}, lname("fpn_zoom", l),
                           {{std::string("bilinear")}, {std::string("false")}}, kNone, kNone);
      lat = CreateDlLayerElementwise({lat, up}, lname("fpn_sum", l), "sum", kNone, kNone, kNone);
    }
    pyr[l] = lat;
  }
  const int64_t A = a.num_anchors(), K = num_classes, P = a.rect2_ ? 5 : 4;
  const L image{made.at(a.image_layer())};
  const Tuple no_names, no_values;
  Tuple alpha;
  for (int64_t x = 0; x < A; ++x)
    for (int64_t k = 0; k < K; ++k) alpha.push_back(0.25);
  // Heads and anchors per level. The anchors layer takes length1 / length2 ratios for rectangle2 anchors,
  // the model's anchor_aspect_ratios are height / width (= length2 / length1).
  Tuple ratios, angles;
  for (double q : a.ratios_) ratios.push_back(a.rect2_ ? 1.0 / q : q);
  if (a.rect2_)
    for (double x : a.angles_) angles.push_back(x);
  std::vector<L> cls_l, box_l, anc_l;
  for (int64_t l = a.min_level_; l <= a.max_level_; ++l) {
    L p = b.conv_bias(pyr[l], lname("fpn_out", l), 3, F, 1, "none");
    // The head convolutions of every level share the weights of min_level's (RetinaNet); each level keeps its
    // own batch normalisation, since the statistics of the levels differ (as in EfficientDet).
    auto shared = [&](const char* base) { return l == a.min_level_ ? std::string() : lname(base, a.min_level_); };
    L ch = p, bh = p;
    for (int i = 0; i < n_head; ++i) {
      const std::string k = "_" + std::to_string(i);
      ch = b.cbr(ch, lname("class_head", l) + k, F, l == a.min_level_ ? "" : shared("class_head") + k);
      bh = b.cbr(bh, lname("box_head", l) + k, F, l == a.min_level_ ? "" : shared("box_head") + k);
    }
    cls_l.push_back(b.conv_bias(ch, lname("class_scores", l), 3, A * K, 1, "none", -std::log((1 - kPrior) / kPrior),
                                shared("class_scores")));
    box_l.push_back(b.conv_bias(bh, lname("box_deltas", l), 3, A * a.box_channels(), 1, "none", 0.0,
                                shared("box_deltas")));
    // Anchor size 4 * 2^l; the anchors layer reads the level off the map size (a map of 1 x 1 may stand for
    // several levels), so the scale makes up the difference.
    const Shape4 s = p.ptr->shape();
    const int64_t seen = anchor_level(s.h, s.w, img.h, img.w);
    if (seen < 0 || seen > l)
      fail(err::kInternal, "level " + std::to_string(l) + " of the pyramid has a map of " + std::to_string(s.w) +
                               " x " + std::to_string(s.h) + ", not the image downsampled by 2^" + std::to_string(l));
    anc_l.push_back(CreateDlLayer(
        "anchors", {p, image}, lname("anchors", l), {ratios, {a.subscales_}, angles},
        {std::string("instance_type"), std::string("ignore_direction"), std::string("scale")},
        {std::string(a.rect2_ ? "rectangle2" : "rectangle1"), std::string(a.ignore_dir_ ? "true" : "false"),
         4.0 * std::ldexp(1.0, int(l - seen))}));
  }
  // Training targets: the assignment of all levels' anchors to the ground truth, then per level the targets
  // of the class and box losses, normalised by the batch's foreground anchors.
  L gt = CreateDlLayerInput(kGtBoxes, {P + 1, kMaxBoxes, int64_t(1)}, {std::string("allow_smaller_tuple")},
                            {std::string("true")});
  std::vector<L> asg_in = anc_l;
  asg_in.push_back(gt);
  L asg = CreateDlLayer("box_assignment", asg_in, "box_assignment", {{std::string("anchors")}, {K}}, kNone, kNone);
  auto target = [&](const std::string& name, const char* output, int64_t level) {
    return CreateDlLayer("box_targets", {asg, gt}, name, {}, {std::string("output"), std::string("level")},
                         {std::string(output), level});
  };
  L num_fg = target(kNumFg, "num_fg_instances", 0);
  std::vector<LayerPtr> outputs;
  for (int64_t l = a.min_level_; l <= a.max_level_; ++l) {
    const size_t i = size_t(l - a.min_level_);
    L ct = target(lname("class_target", l), "cls_target", int64_t(i));
    L cw = target(lname("class_weight", l), "cls_weight", int64_t(i));
    L bt = target(lname("box_target", l), "box_target", int64_t(i));
    L bw = target(lname("box_weight", l), "box_weight", int64_t(i));
    L lc = CreateDlLayer("loss_focal", {cls_l[i], ct, cw, num_fg}, lname("loss_class", l),
                         {{a.class_heads_weight_}, {kGamma}, alpha, {std::string("focal_binary")}}, kNone, kNone);
    L lb = CreateDlLayer("loss_huber", {box_l[i], bt, bw, num_fg}, lname("loss_box", l),
                         {{a.bbox_heads_weight_}, {kBeta}}, kNone, kNone);
    outputs.push_back(lc.ptr);
    outputs.push_back(lb.ptr);
  }
  // Inference: decoding, suppression and the most confident detections (settings: set_layer_params).
  std::vector<L> prop_in = cls_l;
  prop_in.insert(prop_in.end(), box_l.begin(), box_l.end());
  prop_in.insert(prop_in.end(), anc_l.begin(), anc_l.end());
  prop_in.push_back(image);
  outputs.push_back(CreateDlLayer("box_proposals", prop_in, kProposals, {}, kNone, kNone).ptr);
  auto m = std::make_shared<Model>(outputs);
  m->load_weights_from(*bb);
  {
    auto ds = m->describe();
    a.set_layer_params(ds);
    m->rebuild(ds);
  }
  m->set_adapter(std::make_unique<DetectionAdapter>(a));
  m->set_param("image_range_min", range_min);
  m->set_param("image_range_max", range_max);
  // Settable keys last, through the adapter's own checks.
  for (const char* k : {"class_ids", "class_names", "class_weights", "min_confidence", "max_overlap",
                        "max_overlap_class_agnostic", "max_num_detections", "image_range_min", "image_range_max",
                        "class_ids_no_orientation", "freeze_backbone_level"})
    if (auto v = take(k)) m->set_param(k, *v);
  auto meta = std::make_shared<Dict>();
  meta->set_tuple("architecture", {std::string("detection: RetinaNet-style feature pyramid on ") + backbone_name});
  meta->set_tuple("weights", {std::string("backbone layers from '") + backbone_name +
                              "', pyramid and heads seeded He initialisation"});
  m->set_meta_data(meta);
  return m;
}

std::unique_ptr<ModelAdapter> make_empty_detection_adapter() { return std::make_unique<DetectionAdapter>(); }

}  // namespace opendl
