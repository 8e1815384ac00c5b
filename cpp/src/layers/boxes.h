// Box geometry shared by the generic detection layers (anchors, box targets, box proposals; box_layers.cpp)
// and the detection model (models/detection.cpp): HALCON's rectangle1 and rectangle2 (Box1, Box2), IoU, anchors
// and the box encoding. IoU, angles, the encoding and its decoding are backend/box_math.h's, which the backends'
// box kernels use too; so is the proposals' non-maximum suppression.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "backend/box_math.h"

namespace opendl {

// At most this many aspect ratios and angles per anchors layer (and a detection model's anchor_aspect_ratios /
// anchor_angles).
constexpr size_t kMaxAnchorValues = 64;

double box_iou(const Box1& a, const Box1& b);
// The anchors of one feature map of a `level` (the image downsampled by 2^level), in the order map row, map
// column, subscale, aspect ratio. Cell (i, j) is centred at ((i + 0.5) * image_h / map_h, (j + 0.5) *
// image_w / map_w); subscale k has size scale * 2^level * 2^(k / num_subscales), and aspect ratio q
// (height / width) height size * sqrt(q), width size / sqrt(q).
std::vector<Box1> level_anchors(int64_t level, int64_t map_h, int64_t map_w, int64_t image_h, int64_t image_w,
                                int64_t num_subscales, const std::vector<double>& ratios, double scale = 4.0);
// Encoding relative to an anchor of centre (ra, ca), height ha and width wa (Girshick 2015): ((r - ra) / ha,
// (c - ca) / wa, log(h / ha), log(w / wa)). Decoding limits the log sizes to log(1000 / 16).
// The level l of a feature map of an image: the smallest l with ceil(image size / 2^l) = feature size in both
// directions, -1 if there is none.
int64_t anchor_level(int64_t feature_h, int64_t feature_w, int64_t image_h, int64_t image_w);
void encode_box(const Box1& anchor, const Box1& box, float out[4]);

// Exact area IoU of two oriented rectangles (convex polygon clipping).
double box_iou(const Box2& a, const Box2& b);
// x - period * k for the integer k that puts it into (-period / 2, period / 2].
double wrap_angle(double x, double period);
// The smallest axis-aligned rectangle2 (phi = 0) holding b.
Box2 enclosing_axis_aligned(const Box2& b);
// The equivalent form of an unoriented box (l1, l2, phi + j pi / 2, lengths swapped for odd j) whose angle
// lies nearest `anchor_phi`.
Box2 nearest_form(Box2 b, double anchor_phi);
// The oriented anchors of one level (order: map row, map column, subscale, aspect ratio, angle): the
// rectangle1 anchor's height and width become 2 l2 and 2 l1, turned by the angle.
std::vector<Box2> level_anchors(int64_t level, int64_t map_h, int64_t map_w, int64_t image_h, int64_t image_w,
                                int64_t num_subscales, const std::vector<double>& ratios,
                                const std::vector<double>& angles, double scale = 4.0);
// Number of box deltas per oriented anchor: 5 with ignore_direction, else 6 (see boxes.cpp).
inline int box2_deltas(bool ignore_direction) { return ignore_direction ? 5 : 6; }
void encode_box(const Box2& anchor, const Box2& box, bool ignore_direction, float* out);

}  // namespace opendl
