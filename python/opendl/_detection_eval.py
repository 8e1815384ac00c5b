"""Detection measures of evaluate_dl_model (spec C.9, C.10): average precision per class, IoU threshold,
max_num_detections and area range, and the score of orientation (SoAP) of rectangle2 models.

The algorithm (COCO's, which HALCON's description follows):
- Per image, class and IoU threshold t, the detections (at most max_num_detections per image over all its
  classes, the most confident ones; -1 = all) are matched greedily by descending confidence, each to the
  not yet matched ground-truth box of its class with the highest IoU >= t; ground truth inside the area range
  is preferred to ground truth outside it.
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
- detailed_evaluation: per IoU threshold, with all detections and the whole area range, the counts of true
  positives, false negatives and false positives, the false positives split by cause (checked in this order):
  'duplicate' (IoU >= t with a box of its class that another detection already matched), 'class' (IoU >= t
  with a box of another class only), 'localization' (0.1 <= IoU < t with a box of its class), 'multiple'
  (0.1 <= IoU < t with a box of another class only), 'background' (IoU < 0.1 with every box). Each false
  positive but a background one has a reference box: the box of the highest IoU among those that decided
  its cause (its own class for duplicate and localization, the other classes for class and multiple).
- detection_confusion_matrix (per IoU threshold; HALCON's (n + 1) x (n + 4) shape, our layout, since
  HALCON's is unpublished): int32, rows = predicted class in class_ids order plus a last row 'not detected',
  columns = ground-truth class in class_ids order plus 'background', 'duplicate', 'localization' and
  'multiple'. [p, p] counts the true positives of class p, [p, g] (g != p) its class-confusion false
  positives by the class of the reference box, [p, n + k] its false positives of the other causes, and
  [n, g] the missed ground-truth boxes of class g. Row p sums to num_tp + num_fp of class p; row n to num_fn.
- SoAP of the detailed evaluation (rectangle2 with 'soap'): soap_tp, soap_fp_class, soap_fp_duplicate,
  soap_fp_localization and soap_fp_multiple are 1 - mean |angle difference| / pi over the true positives
  (against their matched box) or the false positives of that cause (against their reference box), and
  mean_soap_all the same over all of these detections together; -1 where there is none. Background false
  positives have no box to compare with and count nowhere. Per class and in total.
"""

from __future__ import annotations

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


def _match(img: Image, cls: int, t: float, max_num: int, lo: float, hi: float):
    """(scores, kinds, angle errors of the true positives, number of non-ignored ground-truth boxes) of one
    image and class; kinds: 1 true positive, 0 false positive, -1 ignored."""
    n_det = len(img.ds) if max_num < 0 else min(max_num, len(img.ds))
    dets = [d for d in range(n_det) if img.dc[d] == cls]
    gts = [g for g in range(len(img.gc)) if img.gc[g] == cls]
    g_ign = {g: not (lo <= img.garea[g] <= hi) for g in gts}
    gts.sort(key=lambda g: g_ign[g])  # ground truth inside the range first
    used = set()
    scores, kinds, errors = [], [], []
    for d in dets:
        best, best_iou = -1, min(t, 1 - 1e-10)
        for g in gts:
            if g in used:
                continue
            if best >= 0 and not g_ign[best] and g_ign[g]:
                break
            if img.iou[d, g] >= best_iou:
                best, best_iou = g, img.iou[d, g]
        scores.append(img.ds[d])
        if best >= 0:
            used.add(best)
            kinds.append(-1 if g_ign[best] else 1)
            if not g_ign[best] and img.db.shape[1] == 5:
                errors.append(_angle_error(img.db[d, 2], img.gb[best, 2]))
        else:
            kinds.append(-1 if not (lo <= img.darea[d] <= hi) else 0)
    return scores, kinds, errors, sum(1 for g in gts if not g_ign[g])


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


def evaluate(images, class_ids, thresholds, max_nums, area_ranges, interpolate: bool, soap: bool) -> dict:
    """The EvaluationResult of spec C.10 for detection (without the detailed part)."""
    out = {}
    for max_num in max_nums:
        per_area = {}
        for name, lo, hi in area_ranges:
            res, ap, so = {}, {}, {}
            for t in thresholds:
                for c in class_ids:
                    scores, kinds, errors, n_gt = [], [], [], 0
                    for img in images:
                        s, k, e, n = _match(img, c, t, max_num, lo, hi)
                        scores += s
                        kinds += k
                        errors += e
                        n_gt += n
                    ap[t, c] = average_precision(scores, kinds, n_gt, interpolate)
                    so[t, c] = _soap(errors)
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
            per_area[f"area_{name}"] = res
        out[f"max_num_detections_{'all' if max_num < 0 else max_num}"] = per_area
    return out


FP_CAUSES = ("background", "duplicate", "localization", "multiple")


def detailed(images, class_ids, thresholds, image_ids, soap: bool = False) -> dict:
    """detailed_evaluation_iou_<t>: counts of true and false positives by cause, per class and in total, the
    detection confusion matrix, and with soap the SoAP of the true and false positives by cause."""
    out = {}
    n = len(class_ids)
    col = {c: i for i, c in enumerate(class_ids)}
    kinds = ("tp",) + tuple(f"fp_{k}" for k in ("class",) + FP_CAUSES[1:])
    for t in thresholds:
        zero = {k: 0 for k in ("num_tp", "num_fn", "num_fp", "num_fp_class", "num_fp_background",
                               "num_fp_duplicate", "num_fp_localization", "num_fp_multiple")}
        per_class = {c: dict(zero) for c in class_ids}
        errors = {c: {k: [] for k in kinds} for c in class_ids}
        matrix = np.zeros((n + 1, n + 4), np.int32)
        with_fn, with_fp = [], []
        for img, image_id in zip(images, image_ids):
            matched = set()
            fn_before = sum(per_class[c]["num_fn"] for c in class_ids)
            fp_before = sum(per_class[c]["num_fp"] for c in class_ids)
            for d in range(len(img.ds)):
                c = int(img.dc[d])
                if c not in per_class:
                    continue
                q = img.iou[d]
                same = img.gc == c
                free = np.array([same[g] and g not in matched for g in range(len(img.gc))], bool)
                k = per_class[c]
                if free.any() and q[free].max() >= t:
                    g = int(np.flatnonzero(free)[np.argmax(q[free])])
                    matched.add(g)
                    k["num_tp"] += 1
                    matrix[col[c], col[c]] += 1
                    kind, ref = "tp", g
                else:
                    k["num_fp"] += 1
                    best_same = int(np.flatnonzero(same)[np.argmax(q[same])]) if same.any() else -1
                    best_other = int(np.flatnonzero(~same)[np.argmax(q[~same])]) if (~same).any() else -1
                    if best_same >= 0 and q[best_same] >= t:
                        kind, ref = "fp_duplicate", best_same
                    elif best_other >= 0 and q[best_other] >= t:
                        kind, ref = "fp_class", best_other
                    elif best_same >= 0 and q[best_same] >= 0.1:
                        kind, ref = "fp_localization", best_same
                    elif best_other >= 0 and q[best_other] >= 0.1:
                        kind, ref = "fp_multiple", best_other
                    else:
                        kind, ref = "fp_background", -1
                    k["num_" + kind] += 1
                    # ground truth of classes outside class_ids cannot reach here (evaluate_dl_model refuses it)
                    j = col[int(img.gc[ref])] if kind == "fp_class" else n + FP_CAUSES.index(kind[3:])
                    matrix[col[c], j] += 1
                if soap and ref >= 0 and img.db.shape[1] == 5:
                    errors[c][kind].append(_angle_error(img.db[d, 2], img.gb[ref, 2]))
            for g in range(len(img.gc)):
                c = int(img.gc[g])
                if g not in matched and c in per_class:
                    per_class[c]["num_fn"] += 1
                    matrix[n, col[c]] += 1
            if sum(per_class[c]["num_fn"] for c in class_ids) > fn_before:
                with_fn.append(image_id)
            if sum(per_class[c]["num_fp"] for c in class_ids) > fp_before:
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
        out[f"detailed_evaluation_iou_{threshold_key(t)}"] = total
    return out
