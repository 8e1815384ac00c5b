// Box geometry and the per-box steps of the detection layers' anchor assignment and training targets, shared by
// the CPU backend and the CUDA plugin (like element_math.h: host and device code, C math library only). The
// rules are documented in layers/box_layers.cpp (assignment, targets) and layers/boxes.cpp (encoding).
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "backend/element_math.h"

// A function the compiler must not inline: the assignment compares IoUs computed in two passes for equality,
// which holds only when both passes run the same machine code (inlined copies may contract multiply-adds
// differently).
#if defined(__CUDACC__)
#define OPENDL_HD_NOINLINE __host__ __device__ __noinline__
#else
#define OPENDL_HD_NOINLINE __attribute__((noinline))
#endif

namespace opendl {

// HALCON's rectangle1: (row1, col1, row2, col2), the continuous rectangle [row1, row2] x [col1, col2].
struct Box1 {
  double r1, c1, r2, c2;
};

// HALCON's rectangle2: centre (r, c), orientation phi (radians, counter-clockwise from the column axis), half
// length l1 along phi and half length l2 across it; the region is the closed rectangle of area 4 l1 l2.
struct Box2 {
  double r, c, phi, l1, l2;
};

namespace bm {

constexpr double kPi = 3.14159265358979323846;

OPENDL_HD double box_iou(const Box1& a, const Box1& b) {
  const double h = em::dmin(a.r2, b.r2) - em::dmax(a.r1, b.r1);
  const double w = em::dmin(a.c2, b.c2) - em::dmax(a.c1, b.c1);
  if (h <= 0 || w <= 0) return 0.0;
  const double inter = h * w;
  const double u = (a.r2 - a.r1) * (a.c2 - a.c1) + (b.r2 - b.r1) * (b.c2 - b.c1) - inter;
  return u > 0 ? inter / u : 0.0;
}

struct Pt {
  double x, y;  // x = column, y = row
};
OPENDL_HD double cross(const Pt& o, const Pt& a, const Pt& b) {
  return (a.x - o.x) * (b.y - o.y) - (a.y - o.y) * (b.x - o.x);
}
OPENDL_HD void corners(const Box2& b, Pt out[4]) {
  // length1 runs along (row, col) = (-sin phi, cos phi), length2 along (cos phi, sin phi)
  const double s = sin(b.phi), c = cos(b.phi);
  const double ux = c * b.l1, uy = -s * b.l1, vx = s * b.l2, vy = c * b.l2;
  out[0] = {b.c + ux + vx, b.r + uy + vy};
  out[1] = {b.c - ux + vx, b.r - uy + vy};
  out[2] = {b.c - ux - vx, b.r - uy - vy};
  out[3] = {b.c + ux - vx, b.r + uy - vy};
}

// Exact area IoU of two oriented rectangles: Sutherland-Hodgman clipping of a's polygon by each edge of b
// (both convex; clipping a quadrilateral by four half-planes leaves at most 8 vertices).
OPENDL_HD double box_iou(const Box2& a, const Box2& b) {
  if (!(a.l1 > 0) || !(a.l2 > 0) || !(b.l1 > 0) || !(b.l2 > 0)) return 0.0;
  if (hypot(a.r - b.r, a.c - b.c) >= hypot(a.l1, a.l2) + hypot(b.l1, b.l2)) return 0.0;
  Pt pa[4], pb[4];
  corners(a, pa);
  corners(b, pb);
  const double orient = cross(pb[0], pb[1], pb[2]) > 0 ? 1.0 : -1.0;
  Pt poly[8], next[8];
  int np = 4;
  for (int j = 0; j < 4; ++j) poly[j] = pa[j];
  for (int e = 0; e < 4 && np > 0; ++e) {
    const Pt &e0 = pb[e], &e1 = pb[(e + 1) % 4];
    int nn = 0;
    for (int j = 0; j < np; ++j) {
      const Pt& cur = poly[j];
      const Pt& prev = poly[(j + np - 1) % np];
      const double sc = orient * cross(e0, e1, cur), sp = orient * cross(e0, e1, prev);
      if (sc >= 0) {
        if (sp < 0 && nn < 8) {
          const double t = sp / (sp - sc);
          next[nn++] = {prev.x + t * (cur.x - prev.x), prev.y + t * (cur.y - prev.y)};
        }
        if (nn < 8) next[nn++] = cur;
      } else if (sp >= 0 && nn < 8) {
        const double t = sp / (sp - sc);
        next[nn++] = {prev.x + t * (cur.x - prev.x), prev.y + t * (cur.y - prev.y)};
      }
    }
    for (int j = 0; j < nn; ++j) poly[j] = next[j];
    np = nn;
  }
  double inter = 0;
  for (int j = 0; j < np; ++j) {
    const Pt &p = poly[j], &q = poly[(j + 1) % np];
    inter += p.x * q.y - q.x * p.y;
  }
  inter = fabs(inter) / 2;
  const double u = 4 * a.l1 * a.l2 + 4 * b.l1 * b.l2 - inter;
  return u > 0 ? em::dmin(em::dmax(inter / u, 0.0), 1.0) : 0.0;
}

// x - period * k for the integer k that puts it into (-period / 2, period / 2].
OPENDL_HD double wrap_angle(double x, double period) { return x - period * ceil(x / period - 0.5); }

OPENDL_HD void swap_lengths(Box2& b) {
  const double t = b.l1;
  b.l1 = b.l2;
  b.l2 = t;
}

// The equivalent form of an unoriented box (l1, l2, phi + j pi / 2, lengths swapped for odd j) whose angle lies
// nearest `anchor_phi`.
OPENDL_HD Box2 nearest_form(Box2 b, double anchor_phi) {
  double d = wrap_angle(b.phi - anchor_phi, kPi);
  if (d > kPi / 4) swap_lengths(b), d -= kPi / 2;
  else if (d <= -kPi / 4) swap_lengths(b), d += kPi / 2;
  b.phi = anchor_phi + d;
  return b;
}

// The box encodings (layers/boxes.h, boxes.cpp).
OPENDL_HD void encode_box(const Box1& anchor, const Box1& box, float out[4]) {
  const double ha = anchor.r2 - anchor.r1, wa = anchor.c2 - anchor.c1;
  const double h = box.r2 - box.r1, w = box.c2 - box.c1;
  out[0] = float(((box.r1 + box.r2) / 2 - (anchor.r1 + anchor.r2) / 2) / ha);
  out[1] = float(((box.c1 + box.c2) / 2 - (anchor.c1 + anchor.c2) / 2) / wa);
  out[2] = float(log(h / ha));
  out[3] = float(log(w / wa));
}

OPENDL_HD void encode_box(const Box2& anchor, const Box2& box, bool ignore_direction, float* out) {
  Box2 b = box;
  double dphi;
  if (ignore_direction) {
    // (l1, l2, phi) and (l2, l1, phi +- pi / 2) are the same region: take the form nearest the anchor
    dphi = wrap_angle(b.phi - anchor.phi, kPi);
    if (dphi > kPi / 4) swap_lengths(b), dphi -= kPi / 2;
    else if (dphi <= -kPi / 4) swap_lengths(b), dphi += kPi / 2;
  } else {
    dphi = wrap_angle(b.phi - anchor.phi, 2 * kPi);
  }
  const double s = sin(anchor.phi), c = cos(anchor.phi);
  const double dr = b.r - anchor.r, dc = b.c - anchor.c;
  out[0] = float((-s * dr + c * dc) / (2 * anchor.l1));
  out[1] = float((c * dr + s * dc) / (2 * anchor.l2));
  out[2] = float(log(b.l1 / anchor.l1));
  out[3] = float(log(b.l2 / anchor.l2));
  if (ignore_direction) {
    out[4] = float(dphi);
  } else {
    out[4] = float(sin(dphi));
    out[5] = float(cos(dphi));
  }
}

// Decoding (the inverse of encode_box). The log sizes are limited to log(1000 / 16), so that an untrained head
// cannot make infinite boxes.
constexpr double kLogSizeLimit = 4.135166556742356;  // log(1000 / 16)
OPENDL_HD Box1 decode_box(const Box1& anchor, const float d[4]) {
  const double ha = anchor.r2 - anchor.r1, wa = anchor.c2 - anchor.c1;
  const double r = (anchor.r1 + anchor.r2) / 2 + double(d[0]) * ha;
  const double c = (anchor.c1 + anchor.c2) / 2 + double(d[1]) * wa;
  const double h = ha * exp(em::dmin(double(d[2]), kLogSizeLimit));
  const double w = wa * exp(em::dmin(double(d[3]), kLogSizeLimit));
  return {r - h / 2, c - w / 2, r + h / 2, c + w / 2};
}

OPENDL_HD Box2 decode_box(const Box2& anchor, const float* d, bool ignore_direction) {
  const double s = sin(anchor.phi), c = cos(anchor.phi);
  const double u = double(d[0]) * 2 * anchor.l1, v = double(d[1]) * 2 * anchor.l2;
  Box2 b;
  b.r = anchor.r - s * u + c * v;
  b.c = anchor.c + c * u + s * v;
  b.l1 = anchor.l1 * exp(em::dmin(double(d[2]), kLogSizeLimit));
  b.l2 = anchor.l2 * exp(em::dmin(double(d[3]), kLogSizeLimit));
  const double dphi = ignore_direction ? double(d[4]) : atan2(double(d[4]), double(d[5]));
  b.phi = wrap_angle(anchor.phi + dphi, ignore_direction ? kPi : 2 * kPi);
  return b;
}

// The smallest axis-aligned rectangle2 (phi = 0) holding b.
OPENDL_HD Box2 enclosing_axis_aligned(const Box2& b) {
  const double s = fabs(sin(b.phi)), c = fabs(cos(b.phi));
  return {b.r, b.c, 0.0, b.l1 * c + b.l2 * s, b.l1 * s + b.l2 * c};
}

// --- anchor assignment (Backend::box_gather, Backend::box_assign) -------------------------------------------------

// Box e of the gathered array (BoxGatherArgs): one box of one level of one image, as P parameters and a used flag.
OPENDL_HD void box_gather_one(const BoxGatherArgs& a, const float* src, float* dst, int64_t e) {
  const int64_t per = a.proposals ? a.a : a.a * a.hw;  // boxes per image of this level
  const int64_t b = e / per, i = e % per, p = a.p;
  float* d = dst + (b * a.t + a.off + i) * (p + 1);
  if (a.proposals) {
    const float* s = src + b * a.a * (p + 2) + i * (p + 2);
    for (int64_t q = 0; q < p; ++q) d[q] = s[q];
    d[p] = s[p] >= 0 ? 1.f : 0.f;  // unused records have class -1
  } else {
    const int64_t pos = i / a.a, k = i % a.a;  // position-major, as the anchors' order
    const float* s = src + b * a.a * p * a.hw;
    for (int64_t q = 0; q < p; ++q) d[q] = s[(k * p + q) * a.hw + pos];
    d[p] = 1.f;
  }
}

// Whether ground-truth record `rec` (P + 1 values) is a box: not all zeros (padding) and a class >= 0.
OPENDL_HD bool truth_used(const float* rec, int64_t p) {
  bool zero = true;
  for (int64_t q = 0; q <= p; ++q) zero = zero && rec[q] == 0.f;
  return !zero && rec[p] >= 0.f;
}

// The used records of image n in ascending order, compacted (the ground-truth input has room for many more
// records than an image holds): list[n * (g + 1)] = their number, then their indices.
OPENDL_HD void truth_list(const BoxAssignArgs& a, const float* gt, int32_t* list, int64_t n) {
  const int64_t p = a.rect2 ? 5 : 4;
  int32_t* l = list + n * (a.g + 1);
  int32_t c = 0;
  for (int64_t r = 0; r < a.g; ++r)
    if (truth_used(gt + (n * a.g + r) * (p + 1), p)) l[1 + c++] = int32_t(r);
  l[0] = c;
}

OPENDL_HD Box1 read_box1(const float* v) { return {v[0], v[1], v[2], v[3]}; }
OPENDL_HD Box2 read_box2(const float* v) { return {v[0], v[1], v[2], v[3], v[4]}; }

// The ground-truth box of record `rec` as compared with and encoded for the rectangle2 box `anchor`: the angle
// taken modulo pi with ignore_direction, and the form nearest the anchor's angle for classes without orientation.
OPENDL_HD Box2 truth_box2(const BoxAssignArgs& a, const float* rec, const Box2& anchor) {
  Box2 g = read_box2(rec);
  g.phi = wrap_angle(g.phi, a.ignore_direction ? kPi : 2 * kPi);
  const float cls = rec[5];
  if (a.no_orientation && cls >= 0 && int64_t(cls) < a.k && a.no_orientation[int64_t(cls)] != 0.f)
    g = nearest_form(g, anchor.phi);
  return g;
}

// IoU of gathered box `box` (P + 1 values) and ground-truth record `rec`.
OPENDL_HD_NOINLINE inline double assign_iou(const BoxAssignArgs& a, const float* box, const float* rec) {
  if (!a.rect2) return box_iou(read_box1(box), read_box1(rec));
  const Box2 anchor = read_box2(box);
  return box_iou(anchor, truth_box2(a, rec, anchor));
}

// Pass 1 for box i of image n (after truth_list): its best ground-truth record by IoU (the lowest index among equals), thresholded
// into the record index (foreground), -1 (background) or -2 (ignored; also unused boxes), written to
// out[n * t * (1 + d) + i]. `seen(r, q)` is called with every IoU q > 0 (the caller keeps each record's best).
#if defined(__CUDACC__)
#pragma nv_exec_check_disable  // instantiated with a device-only `seen` in device code only
#endif
template <class Seen>
OPENDL_HD void assign_pass1(const BoxAssignArgs& a, const float* boxes, const float* gt, const int32_t* list,
                            float* out, int64_t n, int64_t i, Seen&& seen) {
  const int64_t p = a.rect2 ? 5 : 4;
  const float* box = boxes + ((a.box_n > 1 ? n : 0) * a.t + i) * (p + 1);
  float* m = out + n * a.t * (1 + a.d) + i;
  if (box[p] == 0.f) {
    *m = -2.f;
    return;
  }
  double best = 0;
  int64_t arg = -1;
  const int32_t* l = list + n * (a.g + 1);
  for (int32_t u = 0; u < l[0]; ++u) {
    const int64_t r = l[1 + u];
    const double q = assign_iou(a, box, gt + (n * a.g + r) * (p + 1));
    if (q > best) best = q, arg = r;
    if (q > 0) seen(r, q);
  }
  *m = float(best >= a.fg ? arg : best >= a.bg ? -2 : -1);
}

// Pass 2 for box i of image n, after pass 1 for all boxes: with low-quality matches, the box becomes foreground
// for every record whose best IoU over the image's boxes (best[n * g + r], > 0) it reaches (the last such record
// wins); then the encoded record of foreground boxes (zeros for the others) at out[n * t * (1 + d) + t + i * d].
OPENDL_HD void assign_pass2(const BoxAssignArgs& a, const float* boxes, const float* gt, const int32_t* list,
                            const double* best, float* out, int64_t n, int64_t i) {
  const int64_t p = a.rect2 ? 5 : 4;
  const float* box = boxes + ((a.box_n > 1 ? n : 0) * a.t + i) * (p + 1);
  float* row = out + n * a.t * (1 + a.d);
  float* enc = row + a.t + i * a.d;
  int64_t m = int64_t(row[i]);
  const int32_t* l = list + n * (a.g + 1);
  if (a.low_quality && box[p] != 0.f)
    for (int32_t u = 0; u < l[0]; ++u) {
      const int64_t r = l[1 + u];
      const double b = best[n * a.g + r];
      if (b > 0 && assign_iou(a, box, gt + (n * a.g + r) * (p + 1)) == b) m = r;
    }
  row[i] = float(m);
  for (int64_t j = 0; j < a.d; ++j) enc[j] = 0.f;
  if (m < 0) return;
  const float* rec = gt + (n * a.g + m) * (p + 1);
  if (a.rect2) {
    const Box2 anchor = read_box2(box);
    encode_box(anchor, truth_box2(a, rec, anchor), a.ignore_direction, enc);
  } else {
    encode_box(read_box1(box), read_box1(rec), enc);
  }
}

// --- training targets (Backend::box_targets) -----------------------------------------------------------------------

// Element e of a per-level target output (n, A * per, H, W): depth k * per + j at position pos is box i = off +
// pos * A + k of the assignment (row of t record indices, then t * d encodings).
OPENDL_HD float box_target_value(const BoxTargetArgs& a, const float* assign, const float* gt, int64_t n, int64_t k,
                                 int64_t j, int64_t pos) {
  const int64_t i = a.off + pos * a.a + k;
  const float* row = assign + n * a.t * (1 + a.d);
  const float m = row[i];
  switch (a.kind) {
    case BoxTargetKind::kClsWeight: return m != -2.f ? 1.f : 0.f;
    case BoxTargetKind::kBoxWeight: return m >= 0 ? 1.f : 0.f;
    case BoxTargetKind::kBoxTarget: return m >= 0 ? row[a.t + i * a.d + j] : 0.f;
    case BoxTargetKind::kClsTarget:
      return m >= 0 && int64_t(gt[(n * a.g + int64_t(m)) * a.gw + a.gw - 1]) == j ? 1.f : 0.f;
    case BoxTargetKind::kNumFg: break;  // a count per image, not per element
  }
  return 0.f;
}
OPENDL_HD float box_target_value(const BoxTargetArgs& a, const float* assign, const float* gt, int64_t e) {
  const int64_t pos = e % a.hw, dep = (e / a.hw) % (a.a * a.per), n = e / (a.hw * a.a * a.per);
  return box_target_value(a, assign, gt, n, dep / a.per, dep % a.per, pos);
}

// --- box proposals (Backend::box_select, Backend::box_nms) ----------------------------------------------------------

// Sort keys: ascending keys put the candidates in the order the proposals take them. An empty key sorts last.
constexpr uint64_t kNoCandidate = ~uint64_t(0);
// A key for descending float values (-0 and +0 alike): the IEEE bits mapped to an ascending unsigned order, then
// inverted.
OPENDL_HD uint32_t descending_key(float x) {
  x = x + 0.0f;  // -0 -> +0
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return ~u;
}

// The class scores of one image of the level.
OPENDL_HD int64_t select_elements(const ProposalSelectArgs& a) { return a.a * a.k * a.hw; }
// Class score element e = (position * a + box) * k + class of image n, and its gathered box.
OPENDL_HD float select_score(const ProposalSelectArgs& a, const float* scores, int64_t n, int64_t e) {
  const int64_t i = e / a.k, cls = e % a.k;
  return scores[n * select_elements(a) + ((i % a.a) * a.k + cls) * a.hw + i / a.a];
}
OPENDL_HD const float* select_box(const ProposalSelectArgs& a, const float* boxes, int64_t n, int64_t e) {
  return boxes + ((a.box_n > 1 ? n : 0) * a.box_t + a.box_off + e / a.k) * (a.p + 1);
}

// The selection key of element e of image n: descending score, then ascending e; kNoCandidate below raw_min
// (NaN included) or at an unused box.
OPENDL_HD uint64_t select_key(const ProposalSelectArgs& a, const float* scores, const float* boxes, int64_t n,
                              int64_t e) {
  const float x = select_score(a, scores, n, e);
  if (!(double(x) >= a.raw_min) || select_box(a, boxes, n, e)[a.p] == 0.f) return kNoCandidate;
  return (uint64_t(descending_key(x)) << 32) | uint64_t(e);
}

// Candidate r of the level for image n from its selection key (kNoCandidate: no candidate): the record in slot
// off + r (ProposalSelectArgs).
OPENDL_HD void select_decode(const ProposalSelectArgs& a, const float* scores, const float* deltas,
                             const float* boxes, int64_t n, int64_t r, uint64_t key, double* cand) {
  double* c = cand + (n * a.slots + a.off + r) * (a.p + kProposalExtra);
  for (int64_t q = 0; q < a.p + kProposalExtra; ++q) c[q] = 0.0;
  if (key == kNoCandidate) return;
  const int64_t e = int64_t(key & 0xffffffffu), i = e / a.k, cls = e % a.k;
  const float x = select_score(a, scores, n, e);
  const float* box = select_box(a, boxes, n, e);
  float d[6] = {0, 0, 0, 0, 0, 0};
  if (deltas)
    for (int64_t j = 0; j < a.d && j < 6; ++j)
      d[j] = deltas[(n * a.a * a.d + (i % a.a) * a.d + j) * a.hw + i / a.a];
  if (a.rect2) {
    Box2 b = read_box2(box);
    if (deltas) b = decode_box(b, d, a.ignore_direction);
    if (!isfinite(b.r) || !isfinite(b.c) || !isfinite(b.phi) || !(b.l1 > 0) || !(b.l2 > 0)) return;
    if (a.no_orientation && a.no_orientation[cls] != 0.f) b = enclosing_axis_aligned(b);
    c[0] = b.r, c[1] = b.c, c[2] = b.phi, c[3] = b.l1, c[4] = b.l2;
  } else {
    Box1 b = read_box1(box);
    if (deltas) b = decode_box(b, d);
    b.r1 = em::dmin(em::dmax(b.r1, -0.5), a.img_h - 0.5);
    b.r2 = em::dmin(em::dmax(b.r2, -0.5), a.img_h - 0.5);
    b.c1 = em::dmin(em::dmax(b.c1, -0.5), a.img_w - 0.5);
    b.c2 = em::dmin(em::dmax(b.c2, -0.5), a.img_w - 0.5);
    if (!(b.r2 > b.r1) || !(b.c2 > b.c1)) return;
    c[0] = b.r1, c[1] = b.c1, c[2] = b.r2, c[3] = b.c2;
  }
  c[a.p] = double(x);
  c[a.p + 1] = double(cls);
  c[a.p + 2] = a.sigmoid ? em::sigmoid(double(x)) : double(x);
  c[a.p + 3] = 1.0;
}

OPENDL_HD const double* candidate(const ProposalNmsArgs& a, const double* cand, int64_t n, int64_t s) {
  return cand + (n * a.slots + s) * (a.p + kProposalExtra);
}
// The NMS order key of slot s of image n: descending raw score, then ascending slot.
OPENDL_HD uint64_t nms_key(const ProposalNmsArgs& a, const double* cand, int64_t n, int64_t s) {
  const double* c = candidate(a, cand, n, s);
  if (c[a.p + 3] == 0.0) return kNoCandidate;
  return (uint64_t(descending_key(float(c[a.p]))) << 32) | uint64_t(s);
}
// Whether candidate ci, ahead of cj in the order, suppresses it: bit 0 in the per-class NMS (same class, IoU >
// max_overlap), bit 1 in the class-agnostic one (IoU > max_overlap_ca < 1).
OPENDL_HD unsigned suppression(const ProposalNmsArgs& a, const double* ci, const double* cj) {
  const bool same = ci[a.p + 1] == cj[a.p + 1], agnostic = a.max_overlap_ca < 1.0;
  if (!same && !agnostic) return 0u;
  const double q = a.p == 5 ? box_iou(Box2{ci[0], ci[1], ci[2], ci[3], ci[4]}, Box2{cj[0], cj[1], cj[2], cj[3], cj[4]})
                            : box_iou(Box1{ci[0], ci[1], ci[2], ci[3]}, Box1{cj[0], cj[1], cj[2], cj[3]});
  return (same && q > a.max_overlap ? 1u : 0u) | (agnostic && q > a.max_overlap_ca ? 2u : 0u);
}
// Output record m of image n: candidate c, or an unused record (class -1) when c is null.
OPENDL_HD void write_proposal(const ProposalNmsArgs& a, const double* c, float* y, int64_t n, int64_t m) {
  float* rec = y + (n * a.mnr + m) * (a.p + 2);
  for (int64_t q = 0; q < a.p + 2; ++q) rec[q] = 0.f;
  if (!c) {
    rec[a.p] = -1.f;
    return;
  }
  for (int64_t q = 0; q < a.p; ++q) rec[q] = float(c[q]);
  rec[a.p] = float(c[a.p + 1]);
  rec[a.p + 1] = float(c[a.p + 2]);
}

}  // namespace bm
}  // namespace opendl
