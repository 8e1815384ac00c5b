// Box geometry (see boxes.h); IoU, angles and the encoding are backend/box_math.h's.
//
// rectangle2 encoding relative to an anchor of centre (ra, ca), angle pa and half lengths la1, la2: the centre
// offset in the anchor's own axes, ((d . e1) / (2 la1), (d . e2) / (2 la2)) with d = (r - ra, c - ca), e1 =
// (-sin pa, cos pa) and e2 = (cos pa, sin pa) in (row, col); log(l1 / la1), log(l2 / la2); then the angle
// difference dphi = phi - pa:
// - ignore_direction false: phi is a heading in (-pi, pi] and the box has 6 deltas, the last two sin(dphi) and
//   cos(dphi), so that the target is continuous all around the circle (decoded with atan2);
// - ignore_direction true: phi is taken modulo pi, results lie in (-pi/2, pi/2], and since (l1, l2, phi) and
//   (l2, l1, phi +- pi/2) are the same rectangle the box is encoded in the form whose dphi is nearest 0,
//   |dphi| <= pi/4, as one fifth delta.
#include "layers/boxes.h"

#include <algorithm>
#include <cmath>

namespace opendl {

double box_iou(const Box1& a, const Box1& b) { return bm::box_iou(a, b); }

std::vector<Box1> level_anchors(int64_t level, int64_t map_h, int64_t map_w, int64_t image_h, int64_t image_w,
                                int64_t num_subscales, const std::vector<double>& ratios, double scale) {
  std::vector<Box1> out;
  out.reserve(size_t(map_h * map_w) * size_t(num_subscales) * ratios.size());
  const double sr = double(image_h) / double(map_h), sc = double(image_w) / double(map_w);
  for (int64_t i = 0; i < map_h; ++i)
    for (int64_t j = 0; j < map_w; ++j) {
      const double r = (double(i) + 0.5) * sr, c = (double(j) + 0.5) * sc;
      for (int64_t k = 0; k < num_subscales; ++k) {
        const double size = scale * std::ldexp(1.0, int(level)) * std::pow(2.0, double(k) / double(num_subscales));
        for (double q : ratios) {
          const double h = size * std::sqrt(q), w = size / std::sqrt(q);
          out.push_back({r - h / 2, c - w / 2, r + h / 2, c + w / 2});
        }
      }
    }
  return out;
}

int64_t anchor_level(int64_t feature_h, int64_t feature_w, int64_t image_h, int64_t image_w) {
  for (int64_t l = 0; l < 31; ++l) {
    const int64_t p = int64_t(1) << l;
    if ((image_h + p - 1) / p == feature_h && (image_w + p - 1) / p == feature_w) return l;
  }
  return -1;
}

void encode_box(const Box1& anchor, const Box1& box, float out[4]) { bm::encode_box(anchor, box, out); }

double box_iou(const Box2& a, const Box2& b) { return bm::box_iou(a, b); }

double wrap_angle(double x, double period) { return bm::wrap_angle(x, period); }

Box2 nearest_form(Box2 b, double anchor_phi) { return bm::nearest_form(b, anchor_phi); }

Box2 enclosing_axis_aligned(const Box2& b) { return bm::enclosing_axis_aligned(b); }

std::vector<Box2> level_anchors(int64_t level, int64_t map_h, int64_t map_w, int64_t image_h, int64_t image_w,
                                int64_t num_subscales, const std::vector<double>& ratios,
                                const std::vector<double>& angles, double scale) {
  std::vector<Box2> out;
  out.reserve(size_t(map_h * map_w) * size_t(num_subscales) * ratios.size() * angles.size());
  for (const Box1& a : level_anchors(level, map_h, map_w, image_h, image_w, num_subscales, ratios, scale))
    for (double phi : angles)
      out.push_back({(a.r1 + a.r2) / 2, (a.c1 + a.c2) / 2, phi, (a.c2 - a.c1) / 2, (a.r2 - a.r1) / 2});
  return out;
}

void encode_box(const Box2& anchor, const Box2& box, bool ignore_direction, float* out) {
  bm::encode_box(anchor, box, ignore_direction, out);
}

}  // namespace opendl
