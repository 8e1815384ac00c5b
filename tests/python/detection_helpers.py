"""Independent numpy references for the detection tests: generated scenes with boxes, IoU and average
precision (all-point interpolated precision-recall area, as PASCAL VOC 2010+ / COCO compute it per class)."""

import numpy as np

from opendl import demo

KEYS = ("bbox_row1", "bbox_col1", "bbox_row2", "bbox_col2")


def scene(rng, size=64):
    """A demo segmentation scene and the boxes of its parts (class ids 1..3): each part's box is the
    rectangle1 enclosing its pixels (pixel centres at integer coordinates, so the edges lie at +-0.5)."""
    img, lab = demo.make_segmentation_scene(rng, size)
    b = {"bbox_label_id": [], "bbox_row1": [], "bbox_col1": [], "bbox_row2": [], "bbox_col2": []}
    for k in (1, 2, 3):
        rr, cc = np.nonzero(lab == k)
        if rr.size == 0:
            continue
        b["bbox_label_id"].append(k)
        b["bbox_row1"].append(float(rr.min()) - 0.5)
        b["bbox_col1"].append(float(cc.min()) - 0.5)
        b["bbox_row2"].append(float(rr.max()) + 0.5)
        b["bbox_col2"].append(float(cc.max()) + 0.5)
    return img, b


def iou(a, b):
    """IoU of rectangle1 boxes a (4,) and b (M, 4)."""
    b = np.asarray(b, np.float64).reshape(-1, 4)
    h = np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0])
    w = np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1])
    inter = np.clip(h, 0, None) * np.clip(w, 0, None)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def average_precision(detections, truths, class_id, threshold):
    """detections / truths: per image dicts with the bbox keys (detections with bbox_confidence). Greedy
    matching by descending confidence, each true box matched at most once at IoU >= threshold."""
    dets, n_true = [], 0
    for i, (d, t) in enumerate(zip(detections, truths)):
        n_true += sum(1 for c in t["bbox_label_id"] if c == class_id)
        for k, c in enumerate(d["bbox_class_id"]):
            if c == class_id:
                dets.append((d["bbox_confidence"][k], i, [d[key][k] for key in KEYS]))
    if n_true == 0:
        return None
    dets.sort(key=lambda x: -x[0])
    used = {}
    tp = np.zeros(len(dets))
    for j, (_, i, box) in enumerate(dets):
        t = truths[i]
        idx = [k for k, c in enumerate(t["bbox_label_id"]) if c == class_id]
        if not idx:
            continue
        q = iou(np.asarray(box), [[t[key][k] for key in KEYS] for k in idx])
        best = int(np.argmax(q))
        if q[best] >= threshold and not used.get((i, idx[best])):
            used[(i, idx[best])] = True
            tp[j] = 1
    ctp = np.cumsum(tp)
    recall = ctp / n_true
    precision = ctp / np.arange(1, len(dets) + 1)
    # all-point interpolation: precision made monotone from the right, area under the recall steps
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    for k in range(len(mpre) - 2, -1, -1):
        mpre[k] = max(mpre[k], mpre[k + 1])
    steps = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def mean_ap(detections, truths, class_ids, thresholds=(0.5,)):
    aps = [average_precision(detections, truths, c, t) for t in thresholds for c in class_ids]
    aps = [a for a in aps if a is not None]
    return float(np.mean(aps)) if aps else 0.0
