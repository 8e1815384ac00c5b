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
#include <numeric>

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

}  // namespace

std::vector<size_t> nms(const std::vector<Box1>& boxes, const std::vector<double>& scores, double max_overlap) {
  return greedy_nms(boxes, scores, max_overlap);
}
std::vector<size_t> nms(const std::vector<Box2>& boxes, const std::vector<double>& scores, double max_overlap) {
  return greedy_nms(boxes, scores, max_overlap);
}

double box_iou(const Box2& a, const Box2& b) { return bm::box_iou(a, b); }

double wrap_angle(double x, double period) { return bm::wrap_angle(x, period); }

Box2 nearest_form(Box2 b, double anchor_phi) { return bm::nearest_form(b, anchor_phi); }

Box2 enclosing_axis_aligned(const Box2& b) {
  const double s = std::abs(std::sin(b.phi)), c = std::abs(std::cos(b.phi));
  return {b.r, b.c, 0.0, b.l1 * c + b.l2 * s, b.l1 * s + b.l2 * c};
}

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

}  // namespace opendl
