// Detection ('detection' model type, detection.cpp): box geometry shared by the adapter and its tests, and
// the model creation behind create_dl_model_detection.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "models/model.h"

namespace opendl {

// HALCON's rectangle1: (row1, col1, row2, col2), the continuous rectangle [row1, row2] x [col1, col2].
struct Box1 {
  double r1, c1, r2, c2;
};

double box_iou(const Box1& a, const Box1& b);
// The anchors of one pyramid level (order: map row, map column, subscale, aspect ratio).
std::vector<Box1> level_anchors(int64_t level, int64_t map_h, int64_t map_w, int64_t image_h, int64_t image_w,
                                int64_t num_subscales, const std::vector<double>& ratios);
void encode_box(const Box1& anchor, const Box1& box, float out[4]);
Box1 decode_box(const Box1& anchor, const float d[4]);
// Greedy non-maximum suppression: indices of the kept boxes by descending score (ties: lower index first);
// a box is dropped when its IoU with a kept, higher-scored box exceeds max_overlap.
std::vector<size_t> nms(const std::vector<Box1>& boxes, const std::vector<double>& scores, double max_overlap);

// HALCON's rectangle2: centre (r, c), orientation phi (radians, counter-clockwise from the column axis), half
// length l1 along phi and half length l2 across it; the region is the closed rectangle of area 4 l1 l2.
struct Box2 {
  double r, c, phi, l1, l2;
};

// Exact area IoU of two oriented rectangles (convex polygon clipping).
double box_iou(const Box2& a, const Box2& b);
// x - period * k for the integer k that puts it into (-period / 2, period / 2].
double wrap_angle(double x, double period);
// The smallest axis-aligned rectangle2 (phi = 0) holding b.
Box2 enclosing_axis_aligned(const Box2& b);
// The oriented anchors of one level (order: map row, map column, subscale, aspect ratio, angle): the
// rectangle1 anchor's height and width become 2 l2 and 2 l1, turned by the angle.
std::vector<Box2> level_anchors(int64_t level, int64_t map_h, int64_t map_w, int64_t image_h, int64_t image_w,
                                int64_t num_subscales, const std::vector<double>& ratios,
                                const std::vector<double>& angles);
// Number of box deltas per oriented anchor: 5 with ignore_direction, else 6 (see detection.cpp).
inline int box2_deltas(bool ignore_direction) { return ignore_direction ? 5 : 6; }
void encode_box(const Box2& anchor, const Box2& box, bool ignore_direction, float* out);
Box2 decode_box(const Box2& anchor, const float* d, bool ignore_direction);
std::vector<size_t> nms(const std::vector<Box2>& boxes, const std::vector<double>& scores, double max_overlap);

// create_dl_model_detection: `read` reads the backbone (a built-in name or a model file).
std::shared_ptr<Model> create_detection_model(const std::string& backbone, int64_t num_classes,
                                              const std::map<std::string, Tuple>& param,
                                              const std::function<std::shared_ptr<Model>(const std::string&)>& read);
std::unique_ptr<ModelAdapter> make_empty_detection_adapter();

}  // namespace opendl
