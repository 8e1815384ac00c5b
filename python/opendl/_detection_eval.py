"""Detection measures of evaluate_dl_model (spec C.9, C.10): average precision per class, IoU threshold,
max_num_detections and area range, the score of orientation (SoAP) of rectangle2 models, and the detailed
evaluation.

The algorithm (COCO's, which HALCON's description follows):
- Per image, class and IoU threshold t, the detections of that class (at most max_num_detections of them, the
  most confident ones, per image and class as COCO's maxDets and HALCON's procedure count; -1 = all) are
  matched greedily by descending confidence, each to the not yet matched ground-truth box of its class with
  the highest IoU >= t (among equal IoUs the last box, as COCO); ground truth inside the area range is
  preferred to ground truth outside it.
- Area ranges: ground truth whose area lies outside [min, max] is ignored: it counts as no positive, and a
  detection matched to it counts as neither true nor false positive; an unmatched detection outside the range
  is ignored too. Areas: (row2 - row1) (col2 - col1) for rectangle1, 4 length1 length2 for rectangle2.
- AP: the detections of a class over all images sorted by descending confidence (ties: image order, then
  detection order) give precision and recall after each detection; with interpolate_pr_curves the precision
  is made monotone (the maximum at any higher recall); AP is the mean precision at the 101 recall points 0,
  0.01, ..., 1 (precision 0 where the recall is never reached). A class without (non-ignored) ground truth has
  AP -1 and is left out of the means.
- SoAP (rectangle2): 1 - mean |angle difference| / pi over the true positives of a class (the difference of
  the headings taken into (-pi, pi]); -1 where a class has no true positive.
- detailed_evaluation_iou_<t> (inside each max_num_detections_<N|all> / area_<name> dict, spec C.10): the
  counts of that max_num_detections, area range and IoU threshold, taken from the very matching the AP uses:
  a detection matched to non-ignored ground truth is a true positive, one the AP ignores (matched to ignored
  ground truth, or unmatched and outside the area range) counts nowhere, every other one is a false positive;
  the false negatives are the non-ignored ground-truth boxes left unmatched. The false positives are split by
  cause (checked in this order, against every ground-truth box of the image, ignored ones included):
  'duplicate' (IoU >= t with a box of its class that another detection already matched), 'class' (IoU >= t
  with a box of another class only), 'localization' (0.1 <= IoU < t with a box of its class), 'multiple'
  (0.1 <= IoU < t with a box of another class only), 'background' (IoU < 0.1 with every box). Each false
  positive but a background one has a reference box: the box of the highest IoU among those that decided
  its cause (its own class for duplicate and localization, the other classes for class and multiple).
- detection_confusion_matrix (per IoU threshold, (n + 1) x (n + 4) as spec C.10), in opendl's layout: int32,
  rows = predicted class in class_ids order plus a last row 'not detected', columns = ground-truth class in
  class_ids order plus 'background', 'duplicate', 'localization' and 'multiple'. [p, p] counts the true
  positives of class p, [p, g] (g != p) its class-confusion false positives by the class of the reference
  box, [p, n + k] its false positives of the other causes, and [n, g] the missed ground-truth boxes of class
  g. Row p sums to num_tp + num_fp of class p; row n to num_fn.
- SoAP of the detailed evaluation (rectangle2 with 'soap'): soap_tp, soap_fp_class, soap_fp_duplicate,
  soap_fp_localization and soap_fp_multiple are 1 - mean |angle difference| / pi over the true positives
  (against their matched box) or the false positives of that cause (against their reference box), and
  mean_soap_all the same over all of these detections together; -1 where there is none. Background false
  positives have no box to compare with and count nowhere. Per class and in total.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

RECT1 = ("bbox_row1", "bbox_col1", "bbox_row2", "bbox_col2")
RECT2 = ("bbox_row", "bbox_col", "bbox_phi", "bbox_length1", "bbox_length2")
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def threshold_key(t: float) -> str:
    """HALCON's key form of an IoU threshold: the decimal string without its dot (0.5 -> '05', 0.75 -> '075')."""
    return f"{t:.10g}".replace(".", "")


def iou_matrix(a: np.ndarray, b: np.ndarray, instance_type: str) -> np.ndarray:
    """IoU of every box of a (N, 4 or 5) with every box of b (M, 4 or 5)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    if instance_type == "rectangle1":
        h = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
        w = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
        inter = np.clip(h, 0, None) * np.clip(w, 0, None)
        union = area(a, instance_type)[:, None] + area(b, instance_type)[None, :] - inter
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
    from . import _core
    return np.array([[_core._box_iou_rectangle2(x.tolist(), y.tolist()) for y in b] for x in a]).reshape(len(a), len(b))


def area(boxes: np.ndarray, instance_type: str) -> np.ndarray:
    if len(boxes) == 0:
        return np.zeros(0)
    if instance_type == "rectangle1":
        return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return 4 * boxes[:, 3] * boxes[:, 4]


class Image:
    """One image's ground truth and detections (class ids, boxes as rows of RECT1 or RECT2 order, scores)."""

    def __init__(self, gt_classes, gt_boxes, det_classes, det_boxes, det_scores, instance_type):
        width = 4 if instance_type == "rectangle1" else 5
        self.gc = np.asarray(gt_classes, np.int64)
        self.gb = np.asarray(gt_boxes, np.float64).reshape(-1, width)
        order = np.argsort(-np.asarray(det_scores, np.float64), kind="stable")
        self.dc = np.asarray(det_classes, np.int64)[order]
        self.db = np.asarray(det_boxes, np.float64).reshape(-1, width)[order]
        self.ds = np.asarray(det_scores, np.float64)[order]
        self.iou = iou_matrix(self.db, self.gb, instance_type)
        self.garea, self.darea = area(self.gb, instance_type), area(self.db, instance_type)


def _angle_error(a: float, b: float) -> float:
    """|a - b| taken into [0, pi]."""
    return abs(float(np.angle(np.exp(1j * (a - b)))))


def _soap(errors) -> float:
    return 1 - float(np.mean(errors)) / np.pi if errors else -1.0


class Matching(NamedTuple):
    """The matching of one image's detections of one class at one IoU threshold, max_num_detections and area
    range. Per kept detection (indices into the image's confidence-sorted detections): score, kind (1 true
    positive, 0 false positive, -1 ignored) and the matched ground-truth box (-1 none); errors: the angle
    errors of the true positives; gts: the class's ground-truth boxes, ignored: those outside the area range."""
    scores: list
    kinds: list
    errors: list
    n_gt: int
    dets: list
    matched: list
    gts: list
    ignored: set


def _match(img: Image, cls: int, t: float, max_num: int, lo: float, hi: float) -> Matching:
    dets = [d for d in range(len(img.ds)) if img.dc[d] == cls]
    if max_num >= 0:
        dets = dets[:max_num]  # the most confident ones of this image and class (COCO's maxDets)
    gts = [g for g in range(len(img.gc)) if img.gc[g] == cls]
    g_ign = {g: not (lo <= img.garea[g] <= hi) for g in gts}
    gts.sort(key=lambda g: g_ign[g])  # ground truth inside the range first
    used = set()
    scores, kinds, errors, matched = [], [], [], []
    for d in dets:
        best, best_iou = -1, min(t, 1 - 1e-10)
        for g in gts:
            if g in used:
                continue
            if best >= 0 and not g_ign[best] and g_ign[g]:
                break
            if img.iou[d, g] >= best_iou:  # '>=': among equal IoUs the last box wins, as in COCO
                best, best_iou = g, img.iou[d, g]
        scores.append(img.ds[d])
        matched.append(best)
        if best >= 0:
            used.add(best)
            kinds.append(-1 if g_ign[best] else 1)
            if not g_ign[best] and img.db.shape[1] == 5:
                errors.append(_angle_error(img.db[d, 2], img.gb[best, 2]))
        else:
            kinds.append(-1 if not (lo <= img.darea[d] <= hi) else 0)
    return Matching(scores, kinds, errors, sum(1 for g in gts if not g_ign[g]), dets, matched, gts,
                    {g for g in gts if g_ign[g]})


def average_precision(scores, kinds, n_gt: int, interpolate: bool) -> float:
    if n_gt == 0:
        return -1.0
    scores, kinds = np.asarray(scores, np.float64), np.asarray(kinds, np.int64)
    keep = kinds >= 0
    order = np.argsort(-scores[keep], kind="stable")
    tp = (kinds[keep][order] == 1).astype(np.float64)
    if tp.size == 0:
        return 0.0
    ctp, cfp = np.cumsum(tp), np.cumsum(1 - tp)
    recall = ctp / n_gt
    precision = ctp / (ctp + cfp)
    if interpolate:
        precision = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, RECALL_POINTS, side="left")
    return float(np.mean(np.where(idx < len(precision), precision[np.minimum(idx, len(precision) - 1)], 0.0)))


def _mean(values) -> float:
    v = [x for x in values if x != -1.0]
    return float(np.mean(v)) if v else -1.0


def evaluate(images, class_ids, thresholds, max_nums, area_ranges, interpolate: bool, soap: bool,
             detailed: bool = False, image_ids=None) -> dict:
    """The EvaluationResult of spec C.10 for detection; with detailed, every max_num_detections_<N|all> /
    area_<name> dict also holds detailed_evaluation_iou_<t> (image_ids name the images in its lists)."""
    if image_ids is None:
        image_ids = list(range(len(images)))
    out = {}
    for max_num in max_nums:
        per_area = {}
        for name, lo, hi in area_ranges:
            res, ap, so, details = {}, {}, {}, {}
            for t in thresholds:
                matchings = {c: [_match(img, c, t, max_num, lo, hi) for img in images] for c in class_ids}
                for c in class_ids:
                    scores, kinds, errors, n_gt = [], [], [], 0
                    for m in matchings[c]:
                        scores += m.scores
                        kinds += m.kinds
                        errors += m.errors
                        n_gt += m.n_gt
                    ap[t, c] = average_precision(scores, kinds, n_gt, interpolate)
                    so[t, c] = _soap(errors)
                if detailed:
                    details[t] = _detailed_counts(images, image_ids, class_ids, t, matchings, soap)
            per_class = {c: _mean(ap[t, c] for t in thresholds) for c in class_ids}
            res["mean_ap"] = _mean(per_class.values())
            for t in thresholds:
                d = {f"class_{c}": ap[t, c] for c in class_ids}
                d["mean_class_ap"] = _mean(ap[t, c] for c in class_ids)
                res[f"ap_iou_{threshold_key(t)}"] = d
            res["mean_iou_ap"] = {f"class_{c}": per_class[c] for c in class_ids}
            if soap:
                per_class_soap = {c: _mean(so[t, c] for t in thresholds) for c in class_ids}
                res["mean_soap_tp"] = _mean(per_class_soap.values())
                for t in thresholds:
                    d = {f"class_{c}": so[t, c] for c in class_ids}
                    d["mean_class_soap_tp"] = _mean(so[t, c] for c in class_ids)
                    res[f"soap_tp_iou_{threshold_key(t)}"] = d
                res["mean_iou_soap_tp"] = {f"class_{c}": per_class_soap[c] for c in class_ids}
            for t in details:
                res[f"detailed_evaluation_iou_{threshold_key(t)}"] = details[t]
            per_area[f"area_{name}"] = res
        out[f"max_num_detections_{'all' if max_num < 0 else max_num}"] = per_area
    return out


FP_CAUSES = ("background", "duplicate", "localization", "multiple")


def detailed(images, class_ids, thresholds, image_ids, soap: bool = False, max_num: int = -1,
             area_range=(0.0, float("inf"))) -> dict:
    """detailed_evaluation_iou_<t> of one max_num_detections and area range (lo, hi): counts of true and false
    positives by cause, per class and in total, the detection confusion matrix, and with soap the SoAP of the
    true and false positives by cause."""
    lo, hi = area_range
    return {f"detailed_evaluation_iou_{threshold_key(t)}": _detailed_counts(
        images, image_ids, class_ids, t, {c: [_match(img, c, t, max_num, lo, hi) for img in images]
                                          for c in class_ids}, soap) for t in thresholds}


def _fp_cause(img: Image, d: int, c: int, t: float):
    """(cause, reference box) of a false positive d of class c (the order of the module docstring)."""
    q = img.iou[d]
    same = img.gc == c
    best_same = int(np.flatnonzero(same)[np.argmax(q[same])]) if same.any() else -1
    best_other = int(np.flatnonzero(~same)[np.argmax(q[~same])]) if (~same).any() else -1
    if best_same >= 0 and q[best_same] >= t:
        return "fp_duplicate", best_same
    if best_other >= 0 and q[best_other] >= t:
        return "fp_class", best_other
    if best_same >= 0 and q[best_same] >= 0.1:
        return "fp_localization", best_same
    if best_other >= 0 and q[best_other] >= 0.1:
        return "fp_multiple", best_other
    return "fp_background", -1


def _detailed_counts(images, image_ids, class_ids, t: float, matchings: dict, soap: bool) -> dict:
    """One detailed_evaluation_iou_<t> from the AP's matchings (class -> one Matching per image)."""
    n = len(class_ids)
    col = {c: i for i, c in enumerate(class_ids)}
    kinds = ("tp",) + tuple(f"fp_{k}" for k in ("class",) + FP_CAUSES[1:])
    zero = {k: 0 for k in ("num_tp", "num_fn", "num_fp", "num_fp_class", "num_fp_background",
                           "num_fp_duplicate", "num_fp_localization", "num_fp_multiple")}
    per_class = {c: dict(zero) for c in class_ids}
    errors = {c: {k: [] for k in kinds} for c in class_ids}
    matrix = np.zeros((n + 1, n + 4), np.int32)
    with_fn, with_fp = [], []
    thr = min(t, 1 - 1e-10)  # the matching's threshold, so that 'duplicate' means what the matching saw
    for i, (img, image_id) in enumerate(zip(images, image_ids)):
        fn = fp = 0
        for c in class_ids:
            m, k = matchings[c][i], per_class[c]
            for d, kind, g in zip(m.dets, m.kinds, m.matched):
                if kind < 0:
                    continue  # ignored by the AP: no true, no false positive
                if kind == 1:
                    k["num_tp"] += 1
                    matrix[col[c], col[c]] += 1
                    cause, ref = "tp", g
                else:
                    fp += 1
                    k["num_fp"] += 1
                    cause, ref = _fp_cause(img, d, c, thr)
                    k["num_" + cause] += 1
                    # ground truth of classes outside class_ids cannot reach here (evaluate_dl_model refuses it)
                    j = col[int(img.gc[ref])] if cause == "fp_class" else n + FP_CAUSES.index(cause[3:])
                    matrix[col[c], j] += 1
                if soap and ref >= 0 and img.db.shape[1] == 5:
                    errors[c][cause].append(_angle_error(img.db[d, 2], img.gb[ref, 2]))
            hit = {g for kind, g in zip(m.kinds, m.matched) if kind == 1}
            missed = sum(1 for g in m.gts if g not in m.ignored and g not in hit)
            k["num_fn"] += missed
            matrix[n, col[c]] += missed
            fn += missed
        if fn:
            with_fn.append(image_id)
        if fp:
            with_fp.append(image_id)
    total = {k: sum(per_class[c][k] for c in class_ids) for k in zero}
    if soap:
        for c in class_ids:
            per_class[c].update({f"soap_{k}": _soap(errors[c][k]) for k in kinds})
            per_class[c]["mean_soap_all"] = _soap(sum(errors[c].values(), []))
        total.update({f"soap_{k}": _soap(sum((errors[c][k] for c in class_ids), [])) for k in kinds})
        total["mean_soap_all"] = _soap(sum((sum(errors[c].values(), []) for c in class_ids), []))
    total.update({f"class_{c}": per_class[c] for c in class_ids})
    total["detection_confusion_matrix"] = matrix
    total["image_ids_with_false_negatives"] = with_fn
    total["image_ids_with_false_positives"] = with_fp
    return total
