"""Independent numpy references for the detection tests: generated scenes with boxes, IoU and average
precision (all-point interpolated precision-recall area, as PASCAL VOC 2010+ / COCO compute it per class)."""

import numpy as np

import opendl as ha
from opendl import demo

KEYS = ("bbox_row1", "bbox_col1", "bbox_row2", "bbox_col2")


def scene(rng, size=64):
    """A demo segmentation scene and the boxes of its parts (class ids 1..3): each part's box is the
    rectangle1 enclosing its pixels (pixel centres at integer coordinates, so the edges lie at +-0.5)."""
    img, lab = demo.make_segmentation_scene(rng, size)
    boxes = demo.detection_boxes(lab)
    return img, {k: [b[j] for b in boxes] for j, k in enumerate(("bbox_label_id",) + KEYS)}


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


KEYS2 = ("bbox_row", "bbox_col", "bbox_phi", "bbox_length1", "bbox_length2")


def corners2(box):
    """Corners (x = column, y = row) of a rectangle2 (row, col, phi, length1, length2), in cyclic order."""
    r, c, phi, l1, l2 = box
    u = np.array([np.cos(phi), -np.sin(phi)]) * l1    # along phi: +column, -row for phi > 0
    v = np.array([np.sin(phi), np.cos(phi)]) * l2
    p = np.array([c, r])
    return np.array([p + u + v, p - u + v, p - u - v, p + u - v])


def polygon_area(p):
    return 0.5 * abs(np.dot(p[:, 0], np.roll(p[:, 1], -1)) - np.dot(p[:, 1], np.roll(p[:, 0], -1)))


def _cross(a, b):
    return a[0] * b[1] - a[1] * b[0]


def iou2(a, b):
    """IoU of two rectangle2 boxes by clipping one convex polygon with the half planes of the other."""
    pa, pb = corners2(a), corners2(b)
    sign = np.sign(_cross(pb[1] - pb[0], pb[2] - pb[1])) or 1.0
    poly = list(pa)
    for e in range(4):
        e0, e1 = pb[e], pb[(e + 1) % 4]
        side = [sign * _cross(e1 - e0, q - e0) for q in poly]
        out = []
        for j in range(len(poly)):
            cur, prev, sc, sp = poly[j], poly[j - 1], side[j], side[j - 1]
            if (sc >= 0) != (sp >= 0):
                out.append(prev + sp / (sp - sc) * (cur - prev))
            if sc >= 0:
                out.append(cur)
        poly = out
        if not poly:
            return 0.0
    inter = polygon_area(np.array(poly))
    union = 4 * a[3] * a[4] + 4 * b[3] * b[4] - inter
    return inter / union if union > 0 else 0.0


def oriented_scene(rng, size=64, max_objects=3):
    """Bars on a noisy background, each a rectangle2 whose head half (towards +length1, the heading phi) is
    brighter than its tail, so the heading can be seen. Class 1: long thin bars; class 2: short thick ones."""
    img = rng.normal(40, 8, (size, size))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    b = {"bbox_label_id": [], **{k: [] for k in KEYS2}}
    centres = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        k = int(rng.integers(1, 3))
        l1, l2 = (rng.uniform(10, 15), rng.uniform(2.5, 4)) if k == 1 else (rng.uniform(8, 11), rng.uniform(5.5, 7.5))
        for _ in range(50):
            r, c = rng.uniform(12, size - 12, 2)
            if all(np.hypot(r - r0, c - c0) > l1 + m1 + 2 for r0, c0, m1 in centres):
                break
        else:
            continue
        centres.append((r, c, l1))
        phi = rng.uniform(-np.pi, np.pi)
        u = -(yy - r) * np.sin(phi) + (xx - c) * np.cos(phi)
        v = (yy - r) * np.cos(phi) + (xx - c) * np.sin(phi)
        inside = (np.abs(u) <= l1) & (np.abs(v) <= l2)
        img[inside & (u > 0)] = 230
        img[inside & (u <= 0)] = 130
        b["bbox_label_id"].append(k)
        for key, x in zip(KEYS2, (r, c, phi, l1, l2)):
            b[key].append(float(x))
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), b


def oriented_ap(detections, truths, class_id, threshold=0.5):
    """Average precision of rectangle2 detections (as average_precision) and the headings' absolute errors
    (radians, modulo 2 pi) of the true positives."""
    dets, n_true = [], 0
    for i, (d, t) in enumerate(zip(detections, truths)):
        n_true += sum(1 for c in t["bbox_label_id"] if c == class_id)
        for k, c in enumerate(d["bbox_class_id"]):
            if c == class_id:
                dets.append((d["bbox_confidence"][k], i, [d[key][k] for key in KEYS2]))
    if n_true == 0:
        return None, []
    dets.sort(key=lambda x: -x[0])
    used, errors = set(), []
    tp = np.zeros(len(dets))
    for j, (_, i, box) in enumerate(dets):
        t = truths[i]
        idx = [k for k, c in enumerate(t["bbox_label_id"]) if c == class_id]
        q = [iou2(box, [t[key][k] for key in KEYS2]) for k in idx]
        if not q:
            continue
        best = int(np.argmax(q))
        if q[best] >= threshold and (i, idx[best]) not in used:
            used.add((i, idx[best]))
            tp[j] = 1
            errors.append(abs(np.angle(np.exp(1j * (box[2] - t["bbox_phi"][idx[best]])))))
    ctp = np.cumsum(tp)
    recall = np.concatenate([[0.0], ctp / n_true, [1.0]])
    precision = np.concatenate([[0.0], ctp / np.arange(1, len(dets) + 1), [0.0]])
    for k in range(len(precision) - 2, -1, -1):
        precision[k] = max(precision[k], precision[k + 1])
    steps = np.nonzero(recall[1:] != recall[:-1])[0]
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1])), errors


def samples(chunk):
    """DLSamples of (image, boxes) pairs: the image centred as the compact backbone expects, with its boxes."""
    return [dict({"image": img.astype(np.float32) - 127.0}, **b) for img, b in chunk]


def detections(model, data, keys, batch=8):
    """The result keys of apply_dl_model for each (image, boxes) pair of data."""
    out = []
    for i in range(0, len(data), batch):
        for r in ha.apply_dl_model(model, samples(data[i:i + batch]), []):
            out.append({k: ha.get_dict_tuple(r, k) for k in keys})
    return out


def train_detector(model, train, passes=9, batch=8, shuffle_seed=0):
    """Adam at 0.001 for the passes over train (shuffled per pass with seed = pass + shuffle_seed), 0.0001 for
    the last two."""
    ha.set_dl_model_param(model, "batch_size", batch)
    ha.set_dl_model_param(model, "solver_type", "adam")
    ha.set_dl_model_param(model, "learning_rate", 0.001)
    for ep in range(passes):
        if ep == passes - 2:
            ha.set_dl_model_param(model, "learning_rate", 0.0001)
        order = np.random.default_rng(ep + shuffle_seed).permutation(len(train))
        for i in range(0, len(train), batch):
            ha.train_dl_model_batch(model, samples([train[j] for j in order[i:i + batch]]))
    return model
