"""HALCON's procedure determine_dl_model_detection_param: anchor and level settings for
create_dl_model_detection from the boxes of a detection DLDataset.

HALCON does not publish its rule; opendl's is the following, derived from how the detector assigns anchors
(an anchor is foreground for a box at IoU >= 0.5; see detection.cpp):
- Every box of the selected samples is scaled to the target image size the way preprocessing scales it (the
  image's size is read from its file). Box height h and width w: row2 - row1 and col2 - col1 (rectangle1), or
  2 length2 and 2 length1 (rectangle2, in the box's own axes).
- Levels: an anchor at level l has the base size 4 * 2^l. min_level is the level whose base size lies nearest
  below the smallest box size sqrt(h w) (at least 1), max_level the level whose base size lies nearest (in
  log scale) to the largest box size (at most the deepest level whose map is still 1 pixel or more, and at most
  8, create_dl_model_detection's deepest level), and max_level >= min_level.
- anchor_aspect_ratios (h / w) and anchor_num_subscales: the smallest set, by number of anchors per map cell,
  for which 99 % of the boxes find an anchor of IoU >= 0.6 when centred on them (margin above the 0.5 of the
  assignment, since centres fall on a grid). Candidate ratio sets are 1-D k-means centres of log(h / w)
  (k = 1..5, quantile-initialised); subscales 1..6. When no candidate covers 99 %, the best coverage wins.
- rectangle2 (oriented boxes): 'instance_type' 'rectangle2', 'ignore_direction' 'false', and 'anchor_angles'
  evenly spaced over pi (the IoU does not depend on the heading, which the box head regresses): the smallest
  number n of 1, 2, 4, 6, 8, 12 for which 95 % of the boxes lie within 15 degrees (modulo pi) of an angle,
  starting at the most frequent orientation bin.
GenParam: 'split' (only the samples of that split, e.g. 'train'; default all samples), 'coverage' (the
share of boxes to cover, default 0.99), 'min_iou' (default 0.6). image_width_target and image_height_target are
integers in [8, 2^31 - 1] (HALCON's image sizes are 32-bit, as in create_dl_preprocess_param). A box value that is
not a finite number, or a box key holding another number of values than 'bbox_label_id', raises 1301 naming the
sample (its index in the dataset's 'samples') and the key. The result holds only keys of
create_dl_model_detection's dlmodel_detection_param (it is passed on as it is): image_width, image_height,
min_level, max_level, anchor_num_subscales, anchor_aspect_ratios, instance_type (+ anchor_angles,
ignore_direction for rectangle2).
"""

from __future__ import annotations

import math

import numpy as np

from ._convert import as_list
from ._proc import content, gen_params, get, get1, is_int, is_number, new_dict, samples_of
from .errors import HOperatorError
from .images import read_image

_RECT1 = ("bbox_row1", "bbox_col1", "bbox_row2", "bbox_col2")
_RECT2 = ("bbox_row", "bbox_col", "bbox_length1", "bbox_length2", "bbox_phi")
_MAX_LEVEL = 8  # create_dl_model_detection's range of min_level and max_level is [1, 8]
_MAX_SIZE = 2 ** 31 - 1


def _finite(x) -> bool:
    try:
        return is_number(x) and math.isfinite(x)
    except OverflowError:  # an int beyond the range of a float (a plain Python dict may hold one)
        return False


def _kmeans_1d(x: np.ndarray, k: int) -> np.ndarray:
    centres = np.quantile(x, (np.arange(k) + 0.5) / k)
    for _ in range(50):
        assign = np.argmin(np.abs(x[:, None] - centres[None, :]), axis=1)
        new = np.array([x[assign == j].mean() if np.any(assign == j) else centres[j] for j in range(k)])
        if np.allclose(new, centres):
            break
        centres = new
    return np.unique(np.round(centres, 6))


def _coverage(h: np.ndarray, w: np.ndarray, ratios, subscales: int, min_level: int, max_level: int,
              min_iou: float) -> float:
    """Share of boxes whose best centred anchor IoU reaches min_iou."""
    best = np.zeros(h.size)
    for lv in range(min_level, max_level + 1):
        for k in range(subscales):
            size = 4.0 * 2 ** lv * 2 ** (k / subscales)
            for q in ratios:
                ha, wa = size * math.sqrt(q), size / math.sqrt(q)
                inter = np.minimum(h, ha) * np.minimum(w, wa)
                best = np.maximum(best, inter / (h * w + ha * wa - inter))
    return float(np.mean(best >= min_iou))


def determine_dl_model_detection_param(dldataset, image_width_target, image_height_target, gen_param):
    """Anchor and level settings for create_dl_model_detection from the dataset's boxes (see the module)."""
    op = "determine_dl_model_detection_param"
    ds = content(dldataset, op, "dldataset")
    for value, what, pos in ((image_width_target, "image_width_target", 2), (image_height_target,
                                                                             "image_height_target", 3)):
        v = as_list(value)
        if len(v) != 1 or not is_int(v[0]):
            raise HOperatorError(1200 + pos, f"{what} must be one integer, got {value!r}", op)
        if not 8 <= v[0] <= _MAX_SIZE:
            raise HOperatorError(1300 + pos, f"{what} must lie in [8, {_MAX_SIZE}], got {v[0]!r}", op)
    tw, th = int(as_list(image_width_target)[0]), int(as_list(image_height_target)[0])
    params = gen_params(gen_param, op, 4, ("split", "coverage", "min_iou"))
    share = params.get("coverage", [0.99])
    min_iou = params.get("min_iou", [0.6])
    for v, what in ((share, "coverage"), (min_iou, "min_iou")):
        if len(v) != 1 or not is_number(v[0]) or not 0 < v[0] <= 1:
            raise HOperatorError(1304, f"GenParam {what!r} must be a number in (0, 1], got {v!r}", op)
    share, min_iou = float(share[0]), float(min_iou[0])
    samples = list(enumerate(samples_of(ds, op)))  # with their index in 'samples', for the messages
    if "split" in params:
        wanted = set(params["split"])
        samples = [(i, s) for i, s in samples if get1(s, "split") in wanted]
        if not samples:
            raise HOperatorError(1304, f"no sample has split in {sorted(wanted)!r} (run split_dl_dataset)", op)
    with_boxes = [(i, s) for i, s in samples if "bbox_label_id" in s]
    if not with_boxes:
        raise HOperatorError(1301, "dldataset holds no detection samples (no 'bbox_label_id')", op)
    rect2 = "bbox_row" in with_boxes[0][1]
    keys = _RECT2 if rect2 else _RECT1
    image_dir = get1(ds, "image_dir", "") or ""
    hs, ws, phis = [], [], []
    for i, s in with_boxes:
        ids = get(s, "bbox_label_id", [])
        if not ids:
            continue
        missing = [k for k in keys if k not in s]
        if missing:
            raise HOperatorError(2894, f"sample {i} has boxes but no {missing[0]!r}", op)
        name = get1(s, "image_file_name")
        if name is None:
            raise HOperatorError(2894, f"sample {i} has no 'image_file_name'", op)
        v = {}
        for k in keys:
            t = get(s, k)
            if isinstance(t, np.ndarray) or len(t) != len(ids) or not all(map(_finite, t)):
                raise HOperatorError(1301, f"sample {i}: {k!r} must hold finite numbers, one per box ({len(ids)} "
                                           f"in 'bbox_label_id'), got {t!r:.200}", op)
            v[k] = np.asarray(t, np.float64)
        img = read_image(f"{image_dir}/{name}" if image_dir else name)
        fr, fc = th / img.shape[0], tw / img.shape[1]
        # Finite values can still overflow in the scaled sizes, their products and ratios (1e300-pixel boxes):
        # computed without warnings, then refused.
        with np.errstate(all="ignore"):
            if rect2:
                # the box axes scaled like preprocessing scales them (see preprocess._scale_boxes)
                phi = v["bbox_phi"]
                a1 = np.stack([-np.sin(phi) * v["bbox_length1"] * fr, np.cos(phi) * v["bbox_length1"] * fc])
                a2 = np.stack([-np.cos(phi) * v["bbox_length2"] * fr, -np.sin(phi) * v["bbox_length2"] * fc])
                n1 = np.hypot(a1[0], a1[1])
                hh, ww = 2 * np.abs(a1[0] * a2[1] - a1[1] * a2[0]) / n1, 2 * n1
                phis.append(np.arctan2(-a1[0], a1[1]))
            else:
                hh, ww = (v["bbox_row2"] - v["bbox_row1"]) * fr, (v["bbox_col2"] - v["bbox_col1"]) * fc
            if np.any(hh <= 0) or np.any(ww <= 0):
                raise HOperatorError(1301, f"sample {i}: a box has no area (row2 <= row1, col2 <= col1 or a length "
                                           "<= 0)", op)
            finite = np.isfinite(hh) & np.isfinite(ww) & np.isfinite(hh * ww) & np.isfinite(hh / ww) & \
                np.isfinite(ww / hh)
        if not np.all(finite):
            raise HOperatorError(1301, f"sample {i}: a box's size at the target image size is out of range", op)
        hs.append(hh)
        ws.append(ww)
    if not hs:
        raise HOperatorError(1301, "the selected samples hold no boxes", op)
    h, w = np.concatenate(hs), np.concatenate(ws)
    size = np.sqrt(h * w)
    deepest = min(_MAX_LEVEL, max(1, int(math.floor(math.log2(min(tw, th))))))
    min_level = int(min(max(1, math.floor(math.log2(size.min() / 4.0))), deepest))
    max_level = int(min(max(min_level, math.ceil(math.log2(size.max() / 4.0) - 0.5)), deepest))
    logr = np.log(h / w)
    best = None
    for k in range(1, 6):
        ratios = [float(math.exp(c)) for c in _kmeans_1d(logr, k)]
        for sub in range(1, 7):
            cov = _coverage(h, w, ratios, sub, min_level, max_level, min_iou)
            cost = len(ratios) * sub
            key = (cov < share, cost if cov >= share else -cov, cost)
            if best is None or key < best[0]:
                best = (key, ratios, sub, cov)
    _, ratios, sub, _ = best
    out = {"image_width": tw, "image_height": th, "min_level": min_level, "max_level": max_level,
           # 4 significant digits: rounding to decimals made the ratios of very flat boxes 0.0
           "anchor_aspect_ratios": [float(f"{r:.4g}") for r in ratios], "anchor_num_subscales": sub,
           "instance_type": "rectangle2" if rect2 else "rectangle1"}
    if rect2:
        phi = np.mod(np.concatenate(phis), math.pi)
        for n in (1, 2, 4, 6, 8, 12):
            step = math.pi / n
            # start at the most frequent orientation (5-degree bins), so that n = 1 fits one dominant angle
            hist = np.bincount(np.floor(phi / math.radians(5)).astype(np.int64) % 36, minlength=36)
            start = (np.argmax(hist) + 0.5) * math.radians(5)
            d = np.abs(np.mod(phi - start + step / 2, step) - step / 2)
            if n == 12 or np.mean(d <= math.radians(15)) >= 0.95:
                angles = [float(np.angle(np.exp(1j * (start + j * step)))) for j in range(n)]
                break
        out.update({"anchor_angles": [round(a, 4) for a in angles], "ignore_direction": "false"})
    return new_dict(out)
