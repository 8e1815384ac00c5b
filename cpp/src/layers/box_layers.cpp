// The generic layers for building anchor-based detectors (HALCON 25.05+): create_dl_layer_anchors,
// create_dl_layer_box_targets and create_dl_layer_box_proposals. The detection model (models/detection.cpp)
// is built from them. HALCON documents their purpose and operator signatures, and the proposal record layout
// (through create_dl_layer_roi_pooling); the tensor layouts, generic parameters and rules below are ours, and
// follow the detection model's documented anchors, assignment and box encoding (layers/boxes.h).
//
// Shapes are given as HALCON's (width, height, depth, batch).
//
// anchors (inputs: feature map, image): the anchors of one pyramid level as (W, H, A * P, 1), P = 4 box
// parameters (row1, col1, row2, col2) for 'rectangle1' or 5 (row, col, phi, length1, length2) for
// 'rectangle2'; anchor a of cell (i, j) at depth a * P + p. The level is the power of two 2^l with
// ceil(image size / 2^l) = feature size in both directions (the smallest such l), else the layer is refused.
// A = num_subscales * |aspect_ratios| * |angles|, ordered (subscale, ratio, angle). Cell (i, j) is centred at
// ((i + 0.5) * image height / H, (j + 0.5) * image width / W); subscale k has size scale * 2^l *
// 2^(k / num_subscales) ('scale', default 4); aspect ratio q gives height size * sqrt(q) and width size /
// sqrt(q) for rectangle1 (q = height / width), length1 = size * sqrt(q) / 2 and length2 = size / (2 sqrt(q))
// for rectangle2 (q = length1 / length2, as HALCON documents). Non-empty `angles` (radians) make the anchors
// rectangle2 (as does 'instance_type' 'rectangle2', with angles [0]); 'ignore_direction' 'true' takes the
// angles modulo pi and selects the 5-delta encoding in the layers that read these anchors. The anchors are
// the same for every image, hence batch 1.
//
// box_targets (inputs: box layers per level, ground truth; create_dl_layer_box_targets): the training targets
// of the boxes. The boxes are anchors (input_mode 'anchors') or the records of a box_proposals layer
// (input_mode 'box_proposals'; records with a negative class are unused). Ground truth: an input layer of
// shape (P + 1, G, 1): per image up to G records (box parameters as above, then the class index in
// [0, num_classes)); a record of zeros (as left by 'allow_smaller_tuple') or with a negative class is padding;
// any other record must have a positive area. Assignment per image over the boxes of all levels: a box whose
// best IoU with a ground-truth box is >= 'fg_iou_threshold' (0.5) is foreground for it, < 'bg_iou_threshold'
// (0.4) background, in between ignored; with 'low_quality_matches' 'true' (the default) each ground-truth
// box's best boxes (all boxes reaching its highest IoU > 0) are foreground for it as well. Outputs per level,
// for a box layer of A boxes per position (anchors) or M records (box_proposals; then H = W = 1, A = M):
// - 'cls_target' (W, H, A * K, N), K = num_classes: 1 at depth a * K + class for foreground boxes, else 0;
// - 'cls_weight' (W, H, A * K, N): 0 for ignored boxes (and unused records), else 1;
// - 'box_target' (W, H, A * D, N): the encoded ground-truth box of foreground boxes (layers/boxes.h; D = 4
//   for rectangle1, 5 or 6 for rectangle2 with or without ignore_direction), else 0;
// - 'box_weight' (W, H, A * D, N): 1 for foreground boxes, else 0;
// and for all levels together 'num_fg_instances' (1, 1, 1, N): the image's foreground boxes (the losses
// normalise by the sum over the batch) and 'assigned_idxs' (1, 1, T, N): per box of all levels (level by
// level, each in its own order) the index of its ground-truth record, -1 for background, -2 ignored or
// unused. 'class_ids_no_orientation' (rectangle2): ground-truth boxes of these classes are compared and
// encoded in the form nearest each anchor's angle (boxes.h nearest_form). 'mask_weight' (instance masks) is
// not offered. The assignment is computed once per batch by a layer of type 'box_assignment' named
// '<first layer name>_assignment'; the output layers (type 'box_targets') read it.
//
// box_proposals (inputs: class scores, box deltas (unless 'apply_box_deltas' is 'false') and boxes per level,
// then the image layer): the detections. Class scores (W, H, A * K, N) are logits turned into confidences by
// a sigmoid ('class_score_activation' 'sigmoid', the default) or confidences ('none'); box deltas (W, H, A *
// D, N). Per image and level the boxes and classes with confidence >= 'min_confidence' (0.5;
// 'min_confidence_train' while training) are kept, at most the 'max_num_pre_nms' (1000) most confident;
// decoded (rectangle1: clipped to the image, [-0.5, size - 0.5]; classes in 'class_ids_no_orientation'
// become their enclosing axis-aligned rectangle2); greedy NMS per class at IoU 'max_overlap' (0.5), then
// class-agnostic NMS at 'max_overlap_class_agnostic' (1.0: none); the 'max_num_detections' (100) most
// confident remain. Output (1, P + 2, max_num_detections, N): per record the P box parameters, the class
// index and the confidence, by descending confidence; unused records are zeros with class -1. Candidates are
// ranked by their raw score (descending; equal scores: the lower level, then the lower index (position * A +
// box) * K + class first), for the selection, both NMS passes and the output alike. All of it runs on the
// backend's device (Backend::box_select, box_nms), so nothing is copied to the host.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "backend/backend.h"
#include "backend/box_math.h"
#include "graph/layer.h"
#include "layers/boxes.h"

namespace opendl {
namespace {

using K = ParamSpec::Kind;

std::string shape_str(const Shape4& s) { return s.str(); }

// Layers whose output holds boxes: their box type.
class BoxProducer : public Layer {
 public:
  virtual bool rect2() const = 0;
  virtual bool ignore_direction() const = 0;
  int64_t nbp() const { return rect2() ? 5 : 4; }
  int64_t deltas() const { return rect2() ? box2_deltas(ignore_direction()) : 4; }
};

// ------------------------------------------------------------------------------------------------ anchors

class Anchors : public BoxProducer {
 public:
  void configure() override {
    ratios_.clear();
    angles_.clear();
    for (auto& v : param("aspect_ratios")) ratios_.push_back(as_double(v));
    for (double q : ratios_)
      if (!(q > 0)) fail(err::kWrongValue3, "layer '" + name() + "': aspect_ratios must be positive");
    rect2_ = str_param("instance_type") == "rectangle2" || !param("angles").empty();
    const bool ign = bool_param("ignore_direction");
    if (ign && !rect2_)
      fail(err::kWrongValue3, "layer '" + name() + "': ignore_direction applies to rectangle2 anchors (non-empty "
                                                   "angles or instance_type 'rectangle2')");
    for (auto& v : param("angles")) angles_.push_back(wrap_angle(as_double(v), ign ? M_PI : 2 * M_PI));
    if (rect2_ && angles_.empty()) angles_ = {0.0};
  }
  bool rect2() const override { return rect2_; }
  bool ignore_direction() const override { return bool_param("ignore_direction"); }
  bool input_needs_grad(size_t) const override { return false; }
  int64_t per_position() const {
    return int64_t(ratios_.size()) * int_param("num_subscales") * (rect2_ ? int64_t(angles_.size()) : 1);
  }
  static int64_t level_of(const Shape4& f, const Shape4& img) { return anchor_level(f.h, f.w, img.h, img.w); }
  Shape4 infer(const std::vector<Shape4>& in) const override {
    if (level_of(in[0], in[1]) < 0)
      fail(err::kInvalidShape, "layer '" + name() + "': the feature map " + std::to_string(in[0].w) + " x " +
                                   std::to_string(in[0].h) + " is not the image " + std::to_string(in[1].w) +
                                   " x " + std::to_string(in[1].h) + " downsampled by a power of two");
    return Shape4{1, per_position() * nbp(), in[0].h, in[0].w};
  }
  // The anchors depend on the shapes only: computed once per allocation, copied by every call.
  std::vector<std::vector<float>> constants(const std::vector<Shape4>& in, const Shape4&) const override {
    const Shape4 &f = in[0], &img = in[1];
    const int64_t l = level_of(f, img), A = per_position(), P = nbp(), HW = f.h * f.w;
    const double scale = real_param("scale");
    std::vector<float> out(size_t(A * P * HW));
    if (!rect2_) {
      auto a = level_anchors(l, f.h, f.w, img.h, img.w, int_param("num_subscales"), ratios_, scale);
      for (int64_t p = 0; p < HW; ++p)
        for (int64_t k = 0; k < A; ++k) {
          const Box1& b = a[size_t(p * A + k)];
          const double v[4] = {b.r1, b.c1, b.r2, b.c2};
          for (int64_t q = 0; q < 4; ++q) out[size_t((k * 4 + q) * HW + p)] = float(v[q]);
        }
    } else {
      // level_anchors takes height / width ratios, which are length2 / length1 of the turned anchor.
      std::vector<double> inv;
      for (double q : ratios_) inv.push_back(1.0 / q);
      auto a = level_anchors(l, f.h, f.w, img.h, img.w, int_param("num_subscales"), inv, angles_, scale);
      for (int64_t p = 0; p < HW; ++p)
        for (int64_t k = 0; k < A; ++k) {
          const Box2& b = a[size_t(p * A + k)];
          const double v[5] = {b.r, b.c, b.phi, b.l1, b.l2};
          for (int64_t q = 0; q < 5; ++q) out[size_t((k * 5 + q) * HW + p)] = float(v[q]);
        }
    }
    return {out};
  }
  void forward(LayerIO& io) override { io.be->copy(io.y, io.constants[0], size_t(io.ys.numel())); }
  void backward(LayerIO&) override {}

 private:
  std::vector<double> ratios_, angles_;
  bool rect2_ = false;
};

std::vector<ParamSpec> anchor_params() {
  ParamSpec ratios = pos_real("aspect_ratios", 0.0);
  ratios.max_len = kMaxAnchorValues;
  ParamSpec sub = pos_int("num_subscales", 1, 1, 1, 64);
  ParamSpec angles = pos_real("angles");
  angles.min_len = 0;
  angles.max_len = kMaxAnchorValues;
  return {ratios, sub, angles,
          gen("instance_type", K::kString, {std::string("rectangle1")}, {"rectangle1", "rectangle2"}),
          gen("ignore_direction", K::kString, {std::string("false")}, {"true", "false"}),
          gen("scale", K::kReal, {4.0}, {}, 1e-3, 1e6)};
}

LayerRegistrar reg_anchors{{"anchors", 2, 2, anchor_params(), [] { return std::make_shared<Anchors>(); }}};

// ------------------------------------------------------------------------------------------------ box sources

// A box input of the box-targets and box-proposals layers.
struct BoxSource {
  const BoxProducer* producer = nullptr;
  bool proposals = false;  // records of a box_proposals layer, per image
  int64_t A = 0;           // boxes per position (anchors) or records per image (proposals)
  int64_t H = 1, W = 1;
  int64_t count() const { return A * H * W; }
};

BoxSource box_source(const Layer& self, const LayerPtr& in, const Shape4& s) {
  BoxSource b;
  b.producer = dynamic_cast<const BoxProducer*>(in.get());
  if (!b.producer)
    fail(err::kInvalidShape, "layer '" + self.name() + "': the box input '" + in->name() + "' (type '" + in->type() +
                                 "') is neither an anchors nor a box_proposals layer");
  b.proposals = in->type() == "box_proposals";
  const int64_t P = b.producer->nbp();
  if (b.proposals) {
    b.A = s.c;
  } else {
    b.A = s.c / P;
    b.H = s.h;
    b.W = s.w;
  }
  return b;
}

// ------------------------------------------------------------------------------------------------ box targets

class BoxAssignment : public Layer {
 public:
  bool input_needs_grad(size_t) const override { return false; }
  size_t levels() const { return inputs().size() - 1; }
  const BoxProducer& producer() const { return *dynamic_cast<const BoxProducer*>(inputs()[0].get()); }
  BoxSource source(size_t l) const { return box_source(*this, inputs()[l], inputs()[l]->shape()); }
  int64_t total() const {
    int64_t t = 0;
    for (size_t l = 0; l < levels(); ++l) t += source(l).count();
    return t;
  }
  int64_t deltas() const { return producer().deltas(); }

  void configure() override {
    no_orient_.clear();
    for (auto& v : param("class_ids_no_orientation")) no_orient_.push_back(int64_t(as_double(v)));
    if (real_param("bg_iou_threshold") > real_param("fg_iou_threshold"))
      fail(err::kWrongValue3, "layer '" + name() + "': bg_iou_threshold must not exceed fg_iou_threshold");
  }
  Shape4 infer(const std::vector<Shape4>& in) const override {
    const bool anchors_mode = str_param("input_mode") == "anchors";
    std::vector<BoxSource> src;
    for (size_t l = 0; l + 1 < in.size(); ++l) {
      src.push_back(box_source(*this, inputs()[l], in[l]));
      if (src.back().proposals == anchors_mode)
        fail(err::kWrongValue3, "layer '" + name() + "': input_mode '" + str_param("input_mode") + "' but the box "
                                    "input '" + inputs()[l]->name() + "' is of type '" + inputs()[l]->type() + "'");
      if (src.back().producer->rect2() != src[0].producer->rect2() ||
          src.back().producer->ignore_direction() != src[0].producer->ignore_direction())
        fail(err::kInvalidShape, "layer '" + name() + "': the box inputs differ in instance type or ignore_direction");
    }
    const Shape4& g = in.back();
    const int64_t P = src[0].producer->nbp();
    if (g.w != P + 1 || g.c != 1)
      fail(err::kInvalidShape, "layer '" + name() + "': the ground-truth input must have width " +
                                   std::to_string(P + 1) + " (the " + std::to_string(P) +
                                   " box parameters and the class index), height = the most boxes per image and depth "
                                   "1, got width " + std::to_string(g.w) + ", height " + std::to_string(g.h) +
                                   ", depth " + std::to_string(g.c));
    if (!no_orient_.empty() && !src[0].producer->rect2())
      fail(err::kWrongValue3, "layer '" + name() + "': class_ids_no_orientation applies to rectangle2 boxes only");
    int64_t t = 0;
    for (auto& s : src) t += s.count();
    return Shape4{g.n, t * (1 + src[0].producer->deltas()), 1, 1};
  }

  // Checks the ground-truth records of image n (host values): padding (all zeros or a negative class) is
  // skipped; a box must have a class index in [0, num_classes) and a positive area.
  void check_truth(const float* g, const Shape4& gs, int64_t n) const {
    const int64_t P = gs.w - 1, K = int_param("num_classes");
    for (int64_t r = 0; r < gs.h; ++r) {
      const float* v = g + n * gs.per_sample() + r * gs.w;
      if (!bm::truth_used(v, P)) continue;
      const double cls = v[P];
      const std::string at = "layer '" + name() + "': image " + std::to_string(n) + ", ground-truth record " +
                             std::to_string(r);
      if (cls != std::floor(cls) || cls >= double(K))
        fail(err::kInputWrongValues, at + " has class " + std::to_string(cls) + ", not an index in [0, " +
                                         std::to_string(K) + ")");
      if (P == 5 && !(v[3] > 0 && v[4] > 0))
        fail(err::kInputWrongValues, at + ": zero or negative area (length1 and length2 must be > 0)");
      if (P == 4 && !(v[2] > v[0] && v[3] > v[1]))
        fail(err::kInputWrongValues, at + ": zero or negative area (row2 must exceed row1, col2 col1)");
    }
  }
  void check_inputs(const std::vector<const float*>& host, const std::vector<Shape4>& xs) const override {
    const size_t gi = xs.size() - 1;
    if (host[gi])
      for (int64_t n = 0; n < xs[gi].n; ++n) check_truth(host[gi], xs[gi], n);
  }

  // Images in the box inputs: 1 for anchors (the same boxes for all images), the batch for proposals.
  static int64_t box_images(const std::vector<Shape4>& in) { return in[0].n; }
  // The gathered boxes of all levels; the best IoU of each ground-truth record (doubles) and the used records
  // (int32, Backend::box_assign).
  std::vector<int64_t> scratch_sizes(const std::vector<Shape4>& in, const Shape4&) const override {
    const Shape4& g = in.back();
    return {box_images(in) * total() * g.w, 2 * g.n * g.h + g.n * (g.h + 1)};
  }
  // Per class: whether it is compared and encoded unoriented (class_ids_no_orientation).
  std::vector<std::vector<float>> constants(const std::vector<Shape4>&, const Shape4&) const override {
    if (no_orient_.empty()) return {};
    std::vector<float> f(size_t(int_param("num_classes")), 0.f);
    for (int64_t k : no_orient_)
      if (k >= 0 && k < int64_t(f.size())) f[size_t(k)] = 1.f;
    return {f};
  }

  void forward(LayerIO& io) override {
    const size_t L = levels();
    const Shape4& gs = io.xs[L];
    const int64_t P = gs.w - 1, bn = box_images(io.xs);
    int64_t off = 0;
    for (size_t l = 0; l < L; ++l) {
      const BoxSource s = source(l);
      BoxGatherArgs g;
      g.box_n = bn;
      g.t = total();
      g.off = off;
      g.proposals = s.proposals;
      g.a = s.A;
      g.hw = s.H * s.W;
      g.p = P;
      io.be->box_gather(g, io.x[l], io.scratch[0]);
      off += s.count();
    }
    BoxAssignArgs a;
    a.n = gs.n;
    a.t = total();
    a.box_n = bn;
    a.g = gs.h;
    a.d = deltas();
    a.k = int_param("num_classes");
    a.rect2 = producer().rect2();
    a.ignore_direction = producer().ignore_direction();
    a.low_quality = bool_param("low_quality_matches");
    a.fg = real_param("fg_iou_threshold");
    a.bg = real_param("bg_iou_threshold");
    a.no_orientation = io.constants.empty() ? nullptr : io.constants[0];
    io.be->box_assign(a, io.scratch[0], io.x[L], reinterpret_cast<double*>(io.scratch[1]), io.y);
  }
  void backward(LayerIO&) override {}

 private:
  std::vector<int64_t> no_orient_;
};

std::vector<ParamSpec> assignment_params() {
  ParamSpec no = gen("class_ids_no_orientation", K::kInt, {}, {}, 0, 1e9, 0, 1 << 20);
  return {pos_str("input_mode", {"anchors", "box_proposals"}),
          pos_int("num_classes", 1, 1, 1, 1 << 20),
          gen("fg_iou_threshold", K::kReal, {0.5}, {}, 0.0, 1.0),
          gen("bg_iou_threshold", K::kReal, {0.4}, {}, 0.0, 1.0),
          gen("low_quality_matches", K::kString, {std::string("true")}, {"true", "false"}),
          no};
}

LayerRegistrar reg_assign{{"box_assignment", 2, 1 << 10, assignment_params(),
                           [] { return std::make_shared<BoxAssignment>(); }}};

class BoxTargets : public Layer {
 public:
  bool input_needs_grad(size_t) const override { return false; }
  const BoxAssignment& assignment() const {
    auto* a = dynamic_cast<const BoxAssignment*>(inputs()[0].get());
    if (!a) fail(err::kInvalidShape, "layer '" + name() + "': the first input must be a box_assignment layer");
    return *a;
  }
  std::string output() const { return str_param("output"); }
  Shape4 infer(const std::vector<Shape4>& in) const override {
    const auto& a = assignment();
    const int64_t n = in[0].n, l = int_param("level");
    const std::string o = output();
    if (o == "num_fg_instances") return Shape4{n, 1, 1, 1};
    if (o == "assigned_idxs") return Shape4{n, a.total(), 1, 1};
    if (l >= int64_t(a.levels()))
      fail(err::kWrongValue3, "layer '" + name() + "': level " + std::to_string(l) + " of " +
                                  std::to_string(a.levels()) + " box inputs");
    const BoxSource s = a.source(size_t(l));
    const int64_t per = o.rfind("cls_", 0) == 0 ? a.int_param("num_classes") : a.deltas();
    return Shape4{n, s.A * per, s.H, s.W};
  }
  void forward(LayerIO& io) override {
    const auto& a = assignment();
    const std::string o = output();
    const int64_t T = a.total(), D = a.deltas(), N = io.ys.n;
    if (o == "assigned_idxs") {  // the first T values of each image's assignment row
      io.be->copy2d(io.y, T, 0, io.x[0], io.xs[0].per_sample(), 0, N, T, 1.f, false);
      return;
    }
    BoxTargetArgs t;
    t.kind = o == "cls_target"   ? BoxTargetKind::kClsTarget
             : o == "cls_weight" ? BoxTargetKind::kClsWeight
             : o == "box_target" ? BoxTargetKind::kBoxTarget
             : o == "box_weight" ? BoxTargetKind::kBoxWeight
                                 : BoxTargetKind::kNumFg;
    t.n = N;
    t.t = T;
    t.d = D;
    t.g = io.xs[1].h;
    t.gw = io.xs[1].w;
    if (t.kind != BoxTargetKind::kNumFg) {
      const int64_t lv = int_param("level");
      for (int64_t l = 0; l < lv; ++l) t.off += a.source(size_t(l)).count();
      const BoxSource s = a.source(size_t(lv));
      t.a = s.A;
      t.hw = s.H * s.W;
      t.per = o.rfind("cls_", 0) == 0 ? a.int_param("num_classes") : D;
    }
    io.be->box_targets(t, io.x[0], io.x[1], io.y);
  }
  void backward(LayerIO&) override {}
};

LayerRegistrar reg_targets{
    {"box_targets", 2, 2,
     {gen("output", K::kString, {std::string("cls_target")},
          {"cls_target", "cls_weight", "box_target", "box_weight", "num_fg_instances", "assigned_idxs"}),
      gen("level", K::kInt, {int64_t(0)}, {}, 0, 1 << 10)},
     [] { return std::make_shared<BoxTargets>(); }}};

// ------------------------------------------------------------------------------------------------ box proposals

class BoxProposals : public BoxProducer {
 public:
  bool input_needs_grad(size_t) const override { return false; }
  bool with_deltas() const { return bool_param("apply_box_deltas"); }
  size_t levels() const { return (inputs().size() - 1) / (with_deltas() ? 3 : 2); }
  const LayerPtr& box_input(size_t l) const { return inputs()[(with_deltas() ? 2 : 1) * levels() + l]; }
  const BoxProducer& producer() const { return *dynamic_cast<const BoxProducer*>(box_input(0).get()); }
  bool rect2() const override { return producer().rect2(); }
  bool ignore_direction() const override { return producer().ignore_direction(); }

  void configure() override {
    no_orient_.clear();
    for (auto& v : param("class_ids_no_orientation")) no_orient_.push_back(int64_t(as_double(v)));
    const size_t per = with_deltas() ? 3 : 2;
    if (inputs().size() < per + 1 || (inputs().size() - 1) % per != 0)
      fail(err::kWrongNumValues1, "layer '" + name() + "': class score, " +
                                      std::string(with_deltas() ? "box delta " : "") +
                                      "and box layers must be given for each level, then the image layer; got " +
                                      std::to_string(inputs().size()) + " inputs");
  }
  Shape4 infer(const std::vector<Shape4>& in) const override {
    const size_t L = levels();
    int64_t K = -1;
    for (size_t l = 0; l < L; ++l) {
      const LayerPtr& bl = box_input(l);
      const BoxSource s = box_source(*this, bl, in[(with_deltas() ? 2 : 1) * L + l]);
      if (s.producer->rect2() != producer().rect2() || s.producer->ignore_direction() != producer().ignore_direction())
        fail(err::kInvalidShape, "layer '" + name() + "': the box inputs differ in instance type or ignore_direction");
      const Shape4& c = in[l];
      if (c.h != s.H || c.w != s.W || s.A == 0 || c.c % s.A != 0)
        fail(err::kInvalidShape, "layer '" + name() + "': class scores " + shape_str(c) + " do not fit the " +
                                     std::to_string(s.A) + " boxes per position of '" + bl->name() + "' " +
                                     shape_str(bl->shape()));
      if (K >= 0 && c.c / s.A != K)
        fail(err::kInvalidShape, "layer '" + name() + "': the levels' class scores differ in the number of classes");
      K = c.c / s.A;
      if (with_deltas()) {
        const Shape4& d = in[L + l];
        if (d.h != s.H || d.w != s.W || d.c != s.A * deltas() || d.n != c.n)
          fail(err::kInvalidShape, "layer '" + name() + "': box deltas " + shape_str(d) + " must have " +
                                       std::to_string(s.A * deltas()) + " channels (" + std::to_string(deltas()) +
                                       " per box) at the class scores' size " + shape_str(c));
      }
    }
    for (size_t l = 0; l < L; ++l) {
      const Shape4& bs = in[(with_deltas() ? 2 : 1) * L + l];
      if (bs.n != in[(with_deltas() ? 2 : 1) * L].n || (bs.n != 1 && bs.n != in[0].n))
        fail(err::kInvalidShape, "layer '" + name() + "': the box inputs must all hold one set of boxes or one per "
                                     "image (" + std::to_string(in[0].n) + "), got " + shape_str(bs));
      if (in[l].c * in[l].h * in[l].w >= (int64_t(1) << 32) - 1)
        fail(err::kInvalidShape, "layer '" + name() + "': class scores " + shape_str(in[l]) + " exceed 2^32 values");
    }
    if (slots(in) >= (int64_t(1) << 32) - 1)  // NMS keys hold the slot in 32 bits
      fail(err::kInvalidShape, "layer '" + name() + "': " + std::to_string(slots(in)) + " candidates per image "
                                   "exceed 2^32; lower max_num_pre_nms");
    for (int64_t k : no_orient_)
      if (k >= K)
        fail(err::kWrongValue3, "layer '" + name() + "': class_ids_no_orientation holds " + std::to_string(k) +
                                    ", not a class index below " + std::to_string(K));
    if (!no_orient_.empty() && !producer().rect2())
      fail(err::kWrongValue3, "layer '" + name() + "': class_ids_no_orientation applies to rectangle2 boxes only");
    return Shape4{in[0].n, int_param("max_num_detections"), nbp() + 2, 1};
  }

  // Per level: its candidates (at most max_num_pre_nms) and their first slot per image.
  std::vector<std::pair<int64_t, int64_t>> selections(const std::vector<Shape4>& in) const {
    std::vector<std::pair<int64_t, int64_t>> out;
    int64_t off = 0;
    for (size_t l = 0; l < levels(); ++l) {
      const int64_t sel = std::min(int_param("max_num_pre_nms"), in[l].c * in[l].h * in[l].w);
      out.push_back({sel, off});
      off += sel;
    }
    return out;
  }
  int64_t slots(const std::vector<Shape4>& in) const {
    const auto s = selections(in);
    return s.back().first + s.back().second;
  }
  int64_t gathered_boxes(const std::vector<Shape4>& in) const {
    int64_t t = 0;
    for (size_t l = 0; l < levels(); ++l)
      t += box_source(*this, box_input(l), in[(with_deltas() ? 2 : 1) * levels() + l]).count();
    return t;
  }
  // The gathered boxes of all levels (floats), the candidate records (doubles).
  std::vector<int64_t> scratch_sizes(const std::vector<Shape4>& in, const Shape4&) const override {
    const Shape4& b = in[(with_deltas() ? 2 : 1) * levels()];
    return {b.n * gathered_boxes(in) * (nbp() + 1), 2 * in[0].n * slots(in) * (nbp() + kProposalExtra)};
  }
  // Per class: whether it gets the enclosing axis-aligned box (class_ids_no_orientation).
  std::vector<std::vector<float>> constants(const std::vector<Shape4>& in, const Shape4&) const override {
    if (no_orient_.empty()) return {};
    const BoxSource s = box_source(*this, box_input(0), in[(with_deltas() ? 2 : 1) * levels()]);
    std::vector<float> f(size_t(in[0].c / s.A), 0.f);
    for (int64_t k : no_orient_)
      if (k >= 0 && k < int64_t(f.size())) f[size_t(k)] = 1.f;
    return {f};
  }

  // Gathers the levels' boxes, selects and decodes each level's best-scored candidates, then runs the NMS
  // (Backend::box_gather, box_select, box_nms; all on the backend's device).
  void forward(LayerIO& io) override {
    const size_t L = levels(), b0 = (with_deltas() ? 2 : 1) * L;
    const bool sig = str_param("class_score_activation") == "sigmoid";
    const double thr = real_param(io.training ? "min_confidence_train" : "min_confidence");
    const int64_t P = nbp(), t = gathered_boxes(io.xs), S = slots(io.xs);
    const auto sel = selections(io.xs);
    double* cand = reinterpret_cast<double*>(io.scratch[1]);
    int64_t off = 0;
    for (size_t l = 0; l < L; ++l) {
      const BoxSource s = box_source(*this, box_input(l), io.xs[b0 + l]);
      BoxGatherArgs g;
      g.box_n = io.xs[b0 + l].n;
      g.t = t;
      g.off = off;
      g.proposals = s.proposals;
      g.a = s.A;
      g.hw = s.H * s.W;
      g.p = P;
      io.be->box_gather(g, io.x[b0 + l], io.scratch[0]);

      ProposalSelectArgs a;
      a.n = io.xs[l].n;
      a.a = s.A;
      a.k = io.xs[l].c / s.A;
      a.hw = s.H * s.W;
      a.d = with_deltas() ? deltas() : 0;
      a.p = P;
      a.sel = sel[l].first;
      a.off = sel[l].second;
      a.slots = S;
      a.box_n = g.box_n;
      a.box_t = t;
      a.box_off = off;
      // the confidence threshold as a raw score (a logit for sigmoid scores)
      a.raw_min = sig ? std::log(std::max(thr, 1e-12) / std::max(1.0 - thr, 1e-12)) : thr;
      a.img_h = double(io.xs.back().h);
      a.img_w = double(io.xs.back().w);
      a.rect2 = rect2();
      a.ignore_direction = ignore_direction();
      a.sigmoid = sig;
      a.no_orientation = io.constants.empty() ? nullptr : io.constants[0];
      io.be->box_select(a, io.x[l], with_deltas() ? io.x[L + l] : nullptr, io.scratch[0], cand);
      off += s.count();
    }
    ProposalNmsArgs a;
    a.n = io.ys.n;
    a.slots = S;
    a.p = P;
    a.mnr = io.ys.c;
    a.max_overlap = real_param("max_overlap");
    a.max_overlap_ca = real_param("max_overlap_class_agnostic");
    io.be->box_nms(a, cand, io.y);
  }
  void backward(LayerIO&) override {}

 private:
  std::vector<int64_t> no_orient_;
};

std::vector<ParamSpec> proposal_params() {
  return {gen("min_confidence", K::kReal, {0.5}, {}, 0.0, 1e30),
          gen("min_confidence_train", K::kReal, {0.5}, {}, 0.0, 1e30),
          gen("max_num_pre_nms", K::kInt, {int64_t(1000)}, {}, 1, 1e9),
          gen("max_overlap", K::kReal, {0.5}, {}, 0.0, 1.0),
          gen("max_overlap_class_agnostic", K::kReal, {1.0}, {}, 0.0, 1.0),
          gen("max_num_detections", K::kInt, {int64_t(100)}, {}, 1, 1 << 24),
          gen("apply_box_deltas", K::kString, {std::string("true")}, {"true", "false"}),
          gen("class_score_activation", K::kString, {std::string("sigmoid")}, {"sigmoid", "none"}),
          gen("class_ids_no_orientation", K::kInt, {}, {}, 0, 1e9, 0, 1 << 20)};
}

LayerRegistrar reg_proposals{{"box_proposals", 3, 1 << 12, proposal_params(),
                              [] { return std::make_shared<BoxProposals>(); }}};

}  // namespace

}  // namespace opendl
