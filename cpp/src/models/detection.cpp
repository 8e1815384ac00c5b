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
// Training targets (computed from the DLSample keys bbox_label_id, bbox_row1, bbox_col1, bbox_row2,
// bbox_col2): an anchor whose best IoU with a ground-truth box is >= 0.5 is foreground for that box, < 0.4
// background, in between ignored; in addition each box's best anchor(s) become foreground for it (so that no
// box is left without an anchor). Class loss per level: the sigmoid focal loss (gamma 2, alpha =
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
// (ra, ca), angle pa and half lengths la1, la2: the centre offset in the anchor's own axes, ((d . e1) / (2
// la1), (d . e2) / (2 la2)) with d = (r - ra, c - ca), e1 = (-sin pa, cos pa) and e2 = (cos pa, sin pa) in
// (row, col); log(l1 / la1), log(l2 / la2); then the angle difference dphi = phi - pa:
// - ignore_direction 'false' (the default): phi is a heading in (-pi, pi] and the box has 6 deltas, the last
//   two sin(dphi) and cos(dphi), so that the target is continuous all around the circle (decoded with atan2);
// - ignore_direction 'true': phi is taken modulo pi, results lie in (-pi/2, pi/2], and since (l1, l2, phi) and
//   (l2, l1, phi +- pi/2) are the same rectangle the box is encoded in the form whose dphi is nearest 0,
//   |dphi| <= pi/4, as one fifth delta.
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

// ---------------------------------------------------------------------------------------------- geometry

double box_iou(const Box1& a, const Box1& b) {
  const double h = std::min(a.r2, b.r2) - std::max(a.r1, b.r1);
  const double w = std::min(a.c2, b.c2) - std::max(a.c1, b.c1);
  if (h <= 0 || w <= 0) return 0.0;
  const double inter = h * w;
  const double u = (a.r2 - a.r1) * (a.c2 - a.c1) + (b.r2 - b.r1) * (b.c2 - b.c1) - inter;
  return u > 0 ? inter / u : 0.0;
}

std::vector<Box1> level_anchors(int64_t level, int64_t map_h, int64_t map_w, int64_t image_h, int64_t image_w,
                                int64_t num_subscales, const std::vector<double>& ratios) {
  std::vector<Box1> out;
  out.reserve(size_t(map_h * map_w) * size_t(num_subscales) * ratios.size());
  const double sr = double(image_h) / double(map_h), sc = double(image_w) / double(map_w);
  for (int64_t i = 0; i < map_h; ++i)
    for (int64_t j = 0; j < map_w; ++j) {
      const double r = (double(i) + 0.5) * sr, c = (double(j) + 0.5) * sc;
      for (int64_t k = 0; k < num_subscales; ++k) {
        const double size = 4.0 * std::ldexp(1.0, int(level)) * std::pow(2.0, double(k) / double(num_subscales));
        for (double q : ratios) {
          const double h = size * std::sqrt(q), w = size / std::sqrt(q);
          out.push_back({r - h / 2, c - w / 2, r + h / 2, c + w / 2});
        }
      }
    }
  return out;
}

void encode_box(const Box1& anchor, const Box1& box, float out[4]) {
  const double ha = anchor.r2 - anchor.r1, wa = anchor.c2 - anchor.c1;
  const double h = box.r2 - box.r1, w = box.c2 - box.c1;
  out[0] = float(((box.r1 + box.r2) / 2 - (anchor.r1 + anchor.r2) / 2) / ha);
  out[1] = float(((box.c1 + box.c2) / 2 - (anchor.c1 + anchor.c2) / 2) / wa);
  out[2] = float(std::log(h / ha));
  out[3] = float(std::log(w / wa));
}

Box1 decode_box(const Box1& anchor, const float d[4]) {
  const double ha = anchor.r2 - anchor.r1, wa = anchor.c2 - anchor.c1;
  const double r = (anchor.r1 + anchor.r2) / 2 + double(d[0]) * ha;
  const double c = (anchor.c1 + anchor.c2) / 2 + double(d[1]) * wa;
  // exp is limited (log(1000 / 16)) so that an untrained head cannot make infinite boxes
  const double lim = std::log(1000.0 / 16.0);
  const double h = ha * std::exp(std::min(double(d[2]), lim)), w = wa * std::exp(std::min(double(d[3]), lim));
  return {r - h / 2, c - w / 2, r + h / 2, c + w / 2};
}

namespace {
template <class B>
std::vector<size_t> greedy_nms(const std::vector<B>& boxes, const std::vector<double>& scores, double max_overlap) {
  std::vector<size_t> order(boxes.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  std::vector<size_t> keep;
  std::vector<char> gone(boxes.size(), 0);
  for (size_t x = 0; x < order.size(); ++x) {
    const size_t i = order[x];
    if (gone[i]) continue;
    keep.push_back(i);
    for (size_t y = x + 1; y < order.size(); ++y) {
      const size_t j = order[y];
      if (!gone[j] && box_iou(boxes[i], boxes[j]) > max_overlap) gone[j] = 1;
    }
  }
  return keep;
}

struct Pt {
  double x, y;  // x = column, y = row
};
double cross(const Pt& o, const Pt& a, const Pt& b) { return (a.x - o.x) * (b.y - o.y) - (a.y - o.y) * (b.x - o.x); }
void corners(const Box2& b, Pt out[4]) {
  // length1 runs along (row, col) = (-sin phi, cos phi), length2 along (cos phi, sin phi)
  const double s = std::sin(b.phi), c = std::cos(b.phi);
  const double ux = c * b.l1, uy = -s * b.l1, vx = s * b.l2, vy = c * b.l2;
  out[0] = {b.c + ux + vx, b.r + uy + vy};
  out[1] = {b.c - ux + vx, b.r - uy + vy};
  out[2] = {b.c - ux - vx, b.r - uy - vy};
  out[3] = {b.c + ux - vx, b.r + uy - vy};
}
}  // namespace

std::vector<size_t> nms(const std::vector<Box1>& boxes, const std::vector<double>& scores, double max_overlap) {
  return greedy_nms(boxes, scores, max_overlap);
}
std::vector<size_t> nms(const std::vector<Box2>& boxes, const std::vector<double>& scores, double max_overlap) {
  return greedy_nms(boxes, scores, max_overlap);
}

double box_iou(const Box2& a, const Box2& b) {
  if (!(a.l1 > 0) || !(a.l2 > 0) || !(b.l1 > 0) || !(b.l2 > 0)) return 0.0;
  if (std::hypot(a.r - b.r, a.c - b.c) >= std::hypot(a.l1, a.l2) + std::hypot(b.l1, b.l2)) return 0.0;
  // Sutherland-Hodgman: clip a's polygon by each edge of b (both convex).
  Pt pa[4], pb[4];
  corners(a, pa);
  corners(b, pb);
  const double orient = cross(pb[0], pb[1], pb[2]) > 0 ? 1.0 : -1.0;
  std::vector<Pt> poly(pa, pa + 4), next;
  for (int e = 0; e < 4 && !poly.empty(); ++e) {
    const Pt &e0 = pb[e], &e1 = pb[(e + 1) % 4];
    next.clear();
    for (size_t j = 0; j < poly.size(); ++j) {
      const Pt& cur = poly[j];
      const Pt& prev = poly[(j + poly.size() - 1) % poly.size()];
      const double sc = orient * cross(e0, e1, cur), sp = orient * cross(e0, e1, prev);
      if (sc >= 0) {
        if (sp < 0) {
          const double t = sp / (sp - sc);
          next.push_back({prev.x + t * (cur.x - prev.x), prev.y + t * (cur.y - prev.y)});
        }
        next.push_back(cur);
      } else if (sp >= 0) {
        const double t = sp / (sp - sc);
        next.push_back({prev.x + t * (cur.x - prev.x), prev.y + t * (cur.y - prev.y)});
      }
    }
    poly.swap(next);
  }
  double inter = 0;
  for (size_t j = 0; j < poly.size(); ++j) {
    const Pt &p = poly[j], &q = poly[(j + 1) % poly.size()];
    inter += p.x * q.y - q.x * p.y;
  }
  inter = std::abs(inter) / 2;
  const double u = 4 * a.l1 * a.l2 + 4 * b.l1 * b.l2 - inter;
  return u > 0 ? std::clamp(inter / u, 0.0, 1.0) : 0.0;
}

double wrap_angle(double x, double period) { return x - period * std::ceil(x / period - 0.5); }

Box2 enclosing_axis_aligned(const Box2& b) {
  const double s = std::abs(std::sin(b.phi)), c = std::abs(std::cos(b.phi));
  return {b.r, b.c, 0.0, b.l1 * c + b.l2 * s, b.l1 * s + b.l2 * c};
}

std::vector<Box2> level_anchors(int64_t level, int64_t map_h, int64_t map_w, int64_t image_h, int64_t image_w,
                                int64_t num_subscales, const std::vector<double>& ratios,
                                const std::vector<double>& angles) {
  std::vector<Box2> out;
  out.reserve(size_t(map_h * map_w) * size_t(num_subscales) * ratios.size() * angles.size());
  for (const Box1& a : level_anchors(level, map_h, map_w, image_h, image_w, num_subscales, ratios))
    for (double phi : angles)
      out.push_back({(a.r1 + a.r2) / 2, (a.c1 + a.c2) / 2, phi, (a.c2 - a.c1) / 2, (a.r2 - a.r1) / 2});
  return out;
}

void encode_box(const Box2& anchor, const Box2& box, bool ignore_direction, float* out) {
  Box2 b = box;
  double dphi;
  if (ignore_direction) {
    // (l1, l2, phi) and (l2, l1, phi +- pi / 2) are the same region: take the form nearest the anchor
    dphi = wrap_angle(b.phi - anchor.phi, M_PI);
    if (dphi > M_PI / 4) std::swap(b.l1, b.l2), dphi -= M_PI / 2;
    else if (dphi <= -M_PI / 4) std::swap(b.l1, b.l2), dphi += M_PI / 2;
  } else {
    dphi = wrap_angle(b.phi - anchor.phi, 2 * M_PI);
  }
  const double s = std::sin(anchor.phi), c = std::cos(anchor.phi);
  const double dr = b.r - anchor.r, dc = b.c - anchor.c;
  out[0] = float((-s * dr + c * dc) / (2 * anchor.l1));
  out[1] = float((c * dr + s * dc) / (2 * anchor.l2));
  out[2] = float(std::log(b.l1 / anchor.l1));
  out[3] = float(std::log(b.l2 / anchor.l2));
  if (ignore_direction) {
    out[4] = float(dphi);
  } else {
    out[4] = float(std::sin(dphi));
    out[5] = float(std::cos(dphi));
  }
}

Box2 decode_box(const Box2& anchor, const float* d, bool ignore_direction) {
  const double s = std::sin(anchor.phi), c = std::cos(anchor.phi);
  const double u = double(d[0]) * 2 * anchor.l1, v = double(d[1]) * 2 * anchor.l2;
  const double lim = std::log(1000.0 / 16.0);
  Box2 b;
  b.r = anchor.r - s * u + c * v;
  b.c = anchor.c + c * u + s * v;
  b.l1 = anchor.l1 * std::exp(std::min(double(d[2]), lim));
  b.l2 = anchor.l2 * std::exp(std::min(double(d[3]), lim));
  const double dphi = ignore_direction ? double(d[4]) : std::atan2(double(d[4]), double(d[5]));
  b.phi = wrap_angle(anchor.phi + dphi, ignore_direction ? M_PI : 2 * M_PI);
  return b;
}

// ---------------------------------------------------------------------------------------------- adapter

namespace {

using namespace zoo;

constexpr double kFgIou = 0.5, kBgIou = 0.4, kBeta = 0.11, kGamma = 2.0, kPrior = 0.01;
constexpr size_t kTopPerLevel = 1000;
const char* kNumFg = "num_foreground";

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

  struct Level {
    int64_t l, h, w;
  };
  std::vector<Level> levels(const Model& m) const {
    std::vector<Level> out;
    for (int64_t l = min_level_; l <= max_level_; ++l) {
      const auto& s = m.net().slots()[size_t(m.net().find(lname("class_scores", l)))].layer->shape();
      out.push_back({l, s.h, s.w});
    }
    return out;
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

  // The equivalent form of an unoriented box (l1, l2, phi + j pi / 2, lengths swapped for odd j) whose angle
  // lies nearest the anchor's.
  static Box2 nearest_form(Box2 b, double anchor_phi) {
    double d = wrap_angle(b.phi - anchor_phi, M_PI);
    if (d > M_PI / 4) std::swap(b.l1, b.l2), d -= M_PI / 2;
    else if (d <= -M_PI / 4) std::swap(b.l1, b.l2), d += M_PI / 2;
    b.phi = anchor_phi + d;
    return b;
  }

  std::vector<Sample> train_inputs(const Model& m, const std::vector<Sample>& batch) const override {
    const Shape4 img = image_shape(m);
    const auto lv = levels(m);
    const int64_t a_num = num_anchors(), k_num = int64_t(class_ids_.size()), d_num = box_channels();
    // All anchors of all levels, for the assignment.
    std::vector<Box1> anchors1;
    std::vector<Box2> anchors2;
    std::vector<size_t> start;
    for (auto& L : lv) {
      if (rect2_) {
        start.push_back(anchors2.size());
        auto a = level_anchors(L.l, L.h, L.w, img.h, img.w, subscales_, ratios_, angles_);
        anchors2.insert(anchors2.end(), a.begin(), a.end());
      } else {
        start.push_back(anchors1.size());
        auto a = level_anchors(L.l, L.h, L.w, img.h, img.w, subscales_, ratios_);
        anchors1.insert(anchors1.end(), a.begin(), a.end());
      }
    }
    const size_t n_anchors = rect2_ ? anchors2.size() : anchors1.size();
    std::vector<Sample> out;
    for (size_t i = 0; i < batch.size(); ++i) {
      Sample n = image_of(batch[i], i);
      const Truth gt = sample_truth(batch[i], i, img);
      const size_t G = gt.cls.size();
      std::vector<double> q(n_anchors * G);  // IoU of anchor a and box b at a * G + b
      for (size_t a = 0; a < n_anchors; ++a)
        for (size_t b = 0; b < G; ++b)
          q[a * G + b] = rect2_ ? box_iou(anchors2[a], gt.b2[b]) : box_iou(anchors1[a], gt.b1[b]);
      std::vector<int64_t> match(n_anchors, -1);  // -1 background, -2 ignored, else box index
      std::vector<double> best_of_box(G, 0.0);
      for (size_t a = 0; a < n_anchors; ++a) {
        double best = 0;
        int64_t arg = -1;
        for (size_t b = 0; b < G; ++b) {
          if (q[a * G + b] > best) best = q[a * G + b], arg = int64_t(b);
          best_of_box[b] = std::max(best_of_box[b], q[a * G + b]);
        }
        match[a] = best >= kFgIou ? arg : best >= kBgIou ? -2 : -1;
      }
      for (size_t b = 0; b < G; ++b)
        if (best_of_box[b] > 0)
          for (size_t a = 0; a < n_anchors; ++a)
            if (q[a * G + b] == best_of_box[b]) match[a] = int64_t(b);
      int64_t fg = 0;
      for (size_t li = 0; li < lv.size(); ++li) {
        const auto& L = lv[li];
        Tensor ct({L.h, L.w, a_num * k_num}), cw({L.h, L.w, a_num * k_num});
        Tensor bt({L.h, L.w, a_num * d_num}), bw({L.h, L.w, a_num * d_num});
        float *ctp = ct.f32(), *cwp = cw.f32(), *btp = bt.f32(), *bwp = bw.f32();
        std::fill(ctp, ctp + ct.numel(), 0.f);
        std::fill(cwp, cwp + cw.numel(), 1.f);
        std::fill(btp, btp + bt.numel(), 0.f);
        std::fill(bwp, bwp + bw.numel(), 0.f);
        for (int64_t p = 0; p < L.h * L.w; ++p)
          for (int64_t a = 0; a < a_num; ++a) {
            const size_t g = start[li] + size_t(p * a_num + a);
            const int64_t mb = match[g];
            const int64_t pa = p * a_num + a;
            if (mb == -2) {
              for (int64_t k = 0; k < k_num; ++k) cwp[pa * k_num + k] = 0.f;
            } else if (mb >= 0) {
              ++fg;
              const int64_t k = gt.cls[size_t(mb)];
              ctp[pa * k_num + k] = 1.f;
              if (!rect2_) encode_box(anchors1[g], gt.b1[size_t(mb)], btp + pa * 4);
              else {
                const Box2& b = gt.b2[size_t(mb)];
                encode_box(anchors2[g], no_orientation(k) ? nearest_form(b, anchors2[g].phi) : b, ignore_dir_,
                           btp + pa * d_num);
              }
              for (int64_t d = 0; d < d_num; ++d) bwp[pa * d_num + d] = 1.f;
            }
          }
        n[lname("class_target", L.l)] = std::move(ct);
        n[lname("class_weight", L.l)] = std::move(cw);
        n[lname("box_target", L.l)] = std::move(bt);
        n[lname("box_weight", L.l)] = std::move(bw);
      }
      n[kNumFg] = Tuple{double(fg)};
      out.push_back(std::move(n));
    }
    return out;
  }

  // ------------------------------------------------------------------ results

  std::vector<std::string> output_layers(const std::vector<std::string>& requested) const override {
    static const std::set<std::string> common = {"bbox_class_id", "bbox_class_name", "bbox_confidence"};
    static const std::set<std::string> k1 = {"bbox_row1", "bbox_col1", "bbox_row2", "bbox_col2"};
    static const std::set<std::string> k2 = {"bbox_row", "bbox_col", "bbox_phi", "bbox_length1", "bbox_length2"};
    for (auto& r : requested)
      if (!common.count(r) && !(rect2_ ? k2 : k1).count(r)) return {};
    std::vector<std::string> v;
    for (int64_t l = min_level_; l <= max_level_; ++l) {
      v.push_back(lname("class_scores", l));
      v.push_back(lname("box_deltas", l));
    }
    return v;
  }

  void make_results(const Model& m, std::vector<Result>& results,
                    const std::vector<std::string>& requested) const override {
    const Shape4 img = image_shape(m);
    const auto lv = levels(m);
    const int64_t a_num = num_anchors(), k_num = int64_t(class_ids_.size()), d_num = box_channels();
    const double logit_min = std::log(std::max(min_confidence_, 1e-12) / std::max(1.0 - min_confidence_, 1e-12));
    for (auto& r : results) {
      std::vector<Box1> boxes1;
      std::vector<Box2> boxes2;
      std::vector<double> scores;
      std::vector<int64_t> cls;
      for (auto& L : lv) {
        auto ci = r.find(lname("class_scores", L.l));
        auto bi = r.find(lname("box_deltas", L.l));
        if (ci == r.end() || bi == r.end()) continue;
        Tensor cs = std::get<Tensor>(ci->second), bd = std::get<Tensor>(bi->second);
        r.erase(ci);
        r.erase(bi);
        const float* c = cs.f32();
        const float* d = bd.f32();
        std::vector<std::pair<float, int64_t>> cand;  // (logit, p * A * K + a * K + k)
        for (int64_t q = 0; q < L.h * L.w * a_num * k_num; ++q)
          if (double(c[q]) >= logit_min) cand.push_back({c[q], q});
        if (cand.size() > kTopPerLevel) {
          std::partial_sort(cand.begin(), cand.begin() + kTopPerLevel, cand.end(), [](auto& x, auto& y) {
            return x.first > y.first || (x.first == y.first && x.second < y.second);
          });
          cand.resize(kTopPerLevel);
        }
        if (cand.empty()) continue;
        std::vector<Box1> anchors1;
        std::vector<Box2> anchors2;
        if (rect2_) anchors2 = level_anchors(L.l, L.h, L.w, img.h, img.w, subscales_, ratios_, angles_);
        else anchors1 = level_anchors(L.l, L.h, L.w, img.h, img.w, subscales_, ratios_);
        for (auto& [logit, q] : cand) {
          const int64_t pa = q / k_num, k = q % k_num;  // pa = p * A + a
          if (rect2_) {
            Box2 b = decode_box(anchors2[size_t(pa)], d + pa * d_num, ignore_dir_);
            if (!std::isfinite(b.r) || !std::isfinite(b.c) || !std::isfinite(b.phi) || !(b.l1 > 0) || !(b.l2 > 0))
              continue;
            if (no_orientation(k)) b = enclosing_axis_aligned(b);
            boxes2.push_back(b);
          } else {
            Box1 b = decode_box(anchors1[size_t(pa)], d + pa * 4);
            b.r1 = std::clamp(b.r1, -0.5, double(img.h) - 0.5);
            b.r2 = std::clamp(b.r2, -0.5, double(img.h) - 0.5);
            b.c1 = std::clamp(b.c1, -0.5, double(img.w) - 0.5);
            b.c2 = std::clamp(b.c2, -0.5, double(img.w) - 0.5);
            if (!(b.r2 > b.r1) || !(b.c2 > b.c1)) continue;
            boxes1.push_back(b);
          }
          scores.push_back(1.0 / (1.0 + std::exp(-double(logit))));
          cls.push_back(k);
        }
      }
      auto suppress = [&](const std::vector<size_t>& idx, double thr) {
        std::vector<double> s;
        for (size_t i : idx) s.push_back(scores[i]);
        std::vector<size_t> keep;
        if (rect2_) {
          std::vector<Box2> b;
          for (size_t i : idx) b.push_back(boxes2[i]);
          keep = nms(b, s, thr);
        } else {
          std::vector<Box1> b;
          for (size_t i : idx) b.push_back(boxes1[i]);
          keep = nms(b, s, thr);
        }
        for (auto& j : keep) j = idx[j];
        return keep;
      };
      // Per class suppression, then class-agnostic.
      std::vector<size_t> kept;
      for (int64_t k = 0; k < k_num; ++k) {
        std::vector<size_t> idx;
        for (size_t i = 0; i < scores.size(); ++i)
          if (cls[i] == k) idx.push_back(i);
        for (size_t j : suppress(idx, max_overlap_)) kept.push_back(j);
      }
      if (max_overlap_ca_ < 1.0) kept = suppress(kept, max_overlap_ca_);
      std::stable_sort(kept.begin(), kept.end(), [&](size_t a, size_t b) {
        return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
      });
      if (int64_t(kept.size()) > max_num_detections_) kept.resize(size_t(max_num_detections_));
      std::vector<std::pair<const char*, Tuple>> cols;
      if (rect2_) cols = {{"bbox_row", {}}, {"bbox_col", {}}, {"bbox_phi", {}}, {"bbox_length1", {}}, {"bbox_length2", {}}};
      else cols = {{"bbox_row1", {}}, {"bbox_col1", {}}, {"bbox_row2", {}}, {"bbox_col2", {}}};
      Tuple id, name, conf;
      for (size_t i : kept) {
        if (rect2_) {
          const Box2& b = boxes2[i];
          const double x[5] = {b.r, b.c, b.phi, b.l1, b.l2};
          for (size_t q = 0; q < 5; ++q) cols[q].second.push_back(x[q]);
        } else {
          const Box1& b = boxes1[i];
          const double x[4] = {b.r1, b.c1, b.r2, b.c2};
          for (size_t q = 0; q < 4; ++q) cols[q].second.push_back(x[q]);
        }
        id.push_back(class_ids_[size_t(cls[i])]);
        name.push_back(class_names_[size_t(cls[i])]);
        conf.push_back(scores[i]);
      }
      cols.push_back({"bbox_class_id", id});
      cols.push_back({"bbox_class_name", name});
      cols.push_back({"bbox_confidence", conf});
      std::set<std::string> want(requested.begin(), requested.end());
      for (auto& [k, t] : cols)
        if (want.empty() || want.count(k)) r[k] = std::move(t);
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
    if (name == "min_confidence") min_confidence_ = unit_of(v, name);
    else if (name == "max_overlap") max_overlap_ = unit_of(v, name);
    else if (name == "max_overlap_class_agnostic") max_overlap_ca_ = unit_of(v, name);
    else if (name == "max_num_detections") max_num_detections_ = integer_of(v, name, 1, 1 << 30);
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
      no_orient_ = ids;
    }
    else if (name == "class_weights") {
      std::vector<double> w;
      for (auto& e : v) {
        if (!is_number(e) || as_double(e) < 0 || as_double(e) > 1)
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
      if (d.name.rfind("class_target_", 0) == 0 || d.name.rfind("class_weight_", 0) == 0) {
        Tuple s = d.params.at("shape");
        s[2] = a * n;
        d.params["shape"] = s;
      }
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
  if (auto v = take("image_dimensions")) bb->set_param("image_dimensions", *v);
  for (const char* k : {"image_width", "image_height", "image_num_channels"})
    if (auto v = take(k)) bb->set_param(k, *v);
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
  const int64_t A = a.num_anchors(), K = num_classes, D = a.box_channels();
  L num_fg = CreateDlLayerInput(kNumFg, {int64_t(1), int64_t(1), int64_t(1)}, kNone, kNone);
  std::vector<LayerPtr> outputs;
  Tuple alpha;
  for (int64_t x = 0; x < A; ++x)
    for (int64_t k = 0; k < K; ++k) alpha.push_back(0.25);
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
    L cls = b.conv_bias(ch, lname("class_scores", l), 3, A * K, 1, "none", -std::log((1 - kPrior) / kPrior),
                        shared("class_scores"));
    L box = b.conv_bias(bh, lname("box_deltas", l), 3, A * D, 1, "none", 0.0, shared("box_deltas"));
    const Shape4 s = cls.ptr->shape();
    L ct = CreateDlLayerInput(lname("class_target", l), {s.w, s.h, A * K}, kNone, kNone);
    L cw = CreateDlLayerInput(lname("class_weight", l), {s.w, s.h, A * K}, kNone, kNone);
    L bt = CreateDlLayerInput(lname("box_target", l), {s.w, s.h, A * D}, kNone, kNone);
    L bw = CreateDlLayerInput(lname("box_weight", l), {s.w, s.h, A * D}, kNone, kNone);
    L lc = CreateDlLayer("loss_focal", {cls, ct, cw, num_fg}, lname("loss_class", l),
                         {{a.class_heads_weight_}, {kGamma}, alpha, {std::string("focal_binary")}}, kNone, kNone);
    L lb = CreateDlLayer("loss_huber", {box, bt, bw, num_fg}, lname("loss_box", l), {{a.bbox_heads_weight_}, {kBeta}},
                         kNone, kNone);
    outputs.push_back(lc.ptr);
    outputs.push_back(lb.ptr);
  }
  auto m = std::make_shared<Model>(outputs);
  m->load_weights_from(*bb);
  m->set_adapter(std::make_unique<DetectionAdapter>(a));
  m->set_param("image_range_min", range_min);
  m->set_param("image_range_max", range_max);
  // Settable keys last, through the adapter's own checks.
  for (const char* k : {"class_ids", "class_names", "class_weights", "min_confidence", "max_overlap",
                        "max_overlap_class_agnostic", "max_num_detections", "image_range_min", "image_range_max",
                        "class_ids_no_orientation", "freeze_backbone_level"})
    if (auto v = take(k)) m->set_param(k, *v);
  if (auto v = take("num_classes"))
    if (integer_of(*v, "num_classes", 1, 1 << 20) != num_classes)
      fail(err::kWrongValue3, "dlmodel_detection_param 'num_classes' differs from num_classes");
  auto meta = std::make_shared<Dict>();
  meta->set_tuple("architecture", {std::string("detection: RetinaNet-style feature pyramid on ") + backbone_name});
  meta->set_tuple("weights", {std::string("backbone layers from '") + backbone_name +
                              "', pyramid and heads seeded He initialisation"});
  m->set_meta_data(meta);
  return m;
}

std::unique_ptr<ModelAdapter> make_empty_detection_adapter() { return std::make_unique<DetectionAdapter>(); }

}  // namespace opendl
