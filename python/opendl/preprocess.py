"""HALCON's preprocessing procedures (spec C.5, D.3, E.8, E.10): the DLPreprocessParam dict
(create_dl_preprocess_param[_from_model], check_dl_preprocess_param), preprocess_dl_samples,
preprocess_dl_dataset and augment_dl_samples.

Decisions where the spec leaves the behaviour open or numpy images differ from HALCON's:
- The DLPreprocessParam checks: image sizes are 32-bit, the image range and the normalisation means finite,
  deviations finite and >= 1e-6. create_dl_preprocess_param reports a bad value with 1300 + the position of
  its parameter (1312 for a GenParam key), check_dl_preprocess_param with 1301. preprocess_dl_samples runs the
  checks even when 'check_params' is false (they cost microseconds; a bad value would otherwise fail deep in
  the resampling) and refuses a target size whose float64 image exceeds the machine's memory with 6001.
- Resizing (HALCON's zoom_image_size with 'constant' interpolation) is separable: along an axis that grows,
  bilinear interpolation between pixel centres (source coordinate (j + 0.5) * in / out - 0.5, clamped to the
  image); along an axis that shrinks, the mean over the input interval each output pixel covers (area
  averaging, partial pixels weighted by their overlap). As in HALCON, byte, int2 and uint2 images are zoomed
  in their own type (rounded to the nearest value and clipped) and then converted to real; int1, int4 and real
  images are converted first. Label images (segmentation_image, weight_image, anomaly_ground_truth) are zoomed
  with nearest neighbour (source index floor((j + 0.5) * in / out)) and stored as real (float32).
- numpy images have no domain, so 'crop_domain' and 'keep_domain' leave the image whole, like 'full_domain'.
- Normalisation follows E.8 in float64 and stores float32. With 'constant_values' and three mean/deviation
  values, a one-channel image is replicated to three channels first; one value applies to every channel.
  Channel adaptation comes last: 1 -> 3 replicates, 3 -> 1 is HALCON's rgb1_to_gray
  (0.299 R + 0.587 G + 0.114 B). A one-channel result is a (H, W) array, as HALCON's numpy interop gives.
- Boxes: rows and columns are pixel-centred, so a coordinate x becomes (x + 0.5) * factor - 0.5 (factor =
  new size / raw size along that axis). With unequal row and column factors a rectangle2 becomes a
  parallelogram; the box that replaces it keeps its area, its longer mapped half-axis exactly (the other
  length is the parallelogram's height over that axis) and its heading: phi points to the side the mapped
  length1 axis points to (rectangle2_of). A box with no area, a coordinate that is not a finite number, or
  box tuples of different lengths raise 1301; a missing coordinate key 2894.
- preprocess_dl_dataset writes every sample (not only 'train'); for segmentation it adds a weight_image to
  every sample. Class weights (when GenParam 'class_weights' is not given) are
  total / (number of classes * pixels of the class) over the samples of split 'train' (all samples when the
  dataset is not split), capped at 'max_weight' (default 1000); classes without pixels get 'max_weight',
  ignore classes 0. GenParam 'overwrite_files' true replaces an existing directory's dl_dataset.hdict and
  samples (stale *_dlsample.hdict files are removed); 'show_progress' is accepted and ignored.
- augment_dl_samples: 'mirror' 'rc' / 'cr' picks row, column or both uniformly per sample; 'rotate' rotates
  counter-clockwise; 'brightness_variation' adds one offset uniform in [-v, v] to all channels;
  'brightness_variation_spot' adds an offset uniform in [-v, v] that falls off as a Gaussian (sigma a quarter
  of the smaller side) around a uniformly drawn centre; 'contrast_variation' (0..1) scales the deviation from
  the image mean by a factor uniform in [1 - v, 1 + v]; 'saturation_variation' (0..1) scales each pixel's
  deviation from its channel mean (its grey value) by a factor uniform in [1 - v, 1 + v] (three-channel images;
  others stay as they are); 'crop_percentage' / 'crop_pixel' crop a random
  window (that percentage of each side, or that many pixels) and zoom it back to the original size;
  'rotate_range' rotates by a random integer angle in [-r, r] degrees about the centre (bilinear, uncovered
  pixels 0). Mirroring and rotating keep a rectangle2's phi in (-pi, pi], and in (-pi/2, pi/2] with
  'ignore_direction' true or for a class in 'class_ids_no_orientation'. Integer images are rounded and
  clipped to their type, real ones are not clipped. Random draws
  come from the procedures' random source (set_system('seed_rand', ...)).
Error codes: see opendl._proc.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile

import numpy as np

from ._convert import as_list
from ._handles import HHandle
from ._proc import (content, flag, gen_params, get, get1, is_int, is_number, new_dict, put, rng, samples_of)
from .datasets import gen_dl_samples, write_dl_samples
from .dicts import _is_utf8, _not_utf8, copy_dict, write_dict
from .errors import H_ERR_DICT_KEY, HOperatorError

__all__ = ["augment_dl_samples", "check_dl_preprocess_param", "create_dl_preprocess_param",
           "create_dl_preprocess_param_from_model", "preprocess_dl_dataset", "preprocess_dl_samples"]

MODEL_TYPES = ("anomaly_detection", "classification", "detection", "segmentation")
NORMALIZATION_TYPES = ("all_channels", "first_channel", "constant_values", "none")
REQUIRED_KEYS = ("model_type", "image_width", "image_height", "image_num_channels", "image_range_min",
                 "image_range_max", "normalization_type", "domain_handling")
OPTIONAL_KEYS = ("ignore_class_ids", "set_background_id", "class_ids_background", "instance_type",
                 "ignore_direction", "class_ids_no_orientation", "mean_values_normalization",
                 "deviation_values_normalization", "check_params")
DEFAULT_MEAN = [123.675, 116.28, 103.53]
DEFAULT_DEVIATION = [58.395, 57.12, 57.375]
_MAX_SIZE = 2 ** 31 - 1  # image width, height and channels are 32-bit signed, as HALCON's
_MIN_DEVIATION = 1e-6  # below it (x - mean) / deviation of 32-bit pixel values can leave the float32 range
_INT_RANGES = {np.dtype(np.uint8): (0, 255), np.dtype(np.uint16): (0, 65535), np.dtype(np.int16): (-32768, 32767),
               np.dtype(np.int8): (-128, 127), np.dtype(np.int32): (-2 ** 31, 2 ** 31 - 1)}


# ---------------------------------------------------------------- DLPreprocessParam


def _scalar(value, what: str, op: str, code: int):
    items = as_list(value)
    if len(items) != 1:
        raise HOperatorError(code, f"{what} takes one value, got {value!r}", op)
    return items[0]


def create_dl_preprocess_param(dlmodel_type, image_width, image_height, image_num_channels, image_range_min,
                               image_range_max, normalization_type, domain_handling, ignore_class_ids,
                               set_background_id, class_ids_background, gen_param):
    """Builds and validates a DLPreprocessParam dict (spec C.5). image_range_min/max [] mean -127/128;
    detection models get instance_type 'rectangle1' unless GenParam says otherwise; every GenParam key is
    copied into the result (unknown ones then fail validation)."""
    op = "create_dl_preprocess_param"
    rmin = as_list(image_range_min)
    rmax = as_list(image_range_max)
    d = {
        "model_type": _scalar(dlmodel_type, "dlmodel_type", op, 1401),
        "image_width": _scalar(image_width, "image_width", op, 1402),
        "image_height": _scalar(image_height, "image_height", op, 1403),
        "image_num_channels": _scalar(image_num_channels, "image_num_channels", op, 1404),
        "image_range_min": rmin[0] if len(rmin) == 1 else -127.0 if not rmin else rmin,
        "image_range_max": rmax[0] if len(rmax) == 1 else 128.0 if not rmax else rmax,
        "normalization_type": _scalar(normalization_type, "normalization_type", op, 1407),
        "domain_handling": _scalar(domain_handling, "domain_handling", op, 1408),
        "ignore_class_ids": as_list(ignore_class_ids),
        "set_background_id": as_list(set_background_id),
        "class_ids_background": as_list(class_ids_background),
    }
    if d["model_type"] == "detection":
        d["instance_type"] = "rectangle1"
    if gen_param is not None and not (isinstance(gen_param, (list, tuple)) and len(gen_param) == 0):
        extra = gen_params(gen_param, op, 12, _AnyKey())
        d.update(extra)
    param = new_dict(d)
    pd = content(param, op, "dlpreprocess_param")
    if "check_params" not in pd or flag(get(pd, "check_params"), op, 1312, "'check_params'"):
        _check_param(pd, op, lambda key: 1300 + _CREATE_POSITIONS.get(key, 12))
    return param


class _AnyKey:
    def __contains__(self, key):
        return True

    def __iter__(self):
        return iter(())


def create_dl_preprocess_param_from_model(dlmodel_handle, normalization_type, domain_handling, set_background_id,
                                          class_ids_background, gen_param):
    """create_dl_preprocess_param with model type, image size, channels and range (and a segmentation model's
    ignore_class_ids, a detection model's instance_type) read from the model."""
    from .model import get_dl_model_param

    def param(name, default=None):
        try:
            return get_dl_model_param(dlmodel_handle, name)
        except HOperatorError:
            if default is None:
                raise
            return default

    model_type = param("type")[0]
    ignore = param("ignore_class_ids", []) if model_type == "segmentation" else []
    extra = {}
    if gen_param is not None and not (isinstance(gen_param, (list, tuple)) and len(gen_param) == 0):
        extra = dict(gen_params(gen_param, "create_dl_preprocess_param_from_model", 6, _AnyKey()))
    if model_type == "detection" and "instance_type" not in extra:
        extra["instance_type"] = param("instance_type", ["rectangle1"])
    return create_dl_preprocess_param(model_type, param("image_width"), param("image_height"),
                                      param("image_num_channels"), param("image_range_min"),
                                      param("image_range_max"), normalization_type, domain_handling, ignore,
                                      set_background_id, class_ids_background, extra or [])


_CREATE_POSITIONS = {k: i for i, k in enumerate(
    ("model_type", "image_width", "image_height", "image_num_channels", "image_range_min", "image_range_max",
     "normalization_type", "domain_handling", "ignore_class_ids", "set_background_id", "class_ids_background"),
    start=1)}


def check_dl_preprocess_param(dlpreprocess_param):
    """Validates a DLPreprocessParam dict (spec C.5, F.4); raises naming the key and the valid values. With
    'check_params' false it checks nothing, as HALCON's does."""
    op = "check_dl_preprocess_param"
    d = content(dlpreprocess_param, op, "dlpreprocess_param")
    if "check_params" in d and not flag(get(d, "check_params"), op, 1301, "'check_params'"):
        return
    _check_param(d, op, lambda key: 1301)


def _check_param(d: dict, op: str, code) -> None:
    """The checks of check_dl_preprocess_param; ``code(key)`` gives the error code for a bad value under key
    (1301 for check_dl_preprocess_param; 1300 + the parameter's position, or 1312 for a GenParam key, for
    create_dl_preprocess_param)."""
    def fail(key: str, message: str):
        raise HOperatorError(code(key), message, op)

    for k in d:
        if k not in REQUIRED_KEYS + OPTIONAL_KEYS:
            fail(k, f"unknown key {k!r} for DLPreprocessParam (valid: {', '.join(REQUIRED_KEYS + OPTIONAL_KEYS)})")
    for k in REQUIRED_KEYS:
        if k not in d:
            raise HOperatorError(H_ERR_DICT_KEY, f"DLPreprocessParam lacks the required key {k!r}", op)

    def one(k):
        t = get(d, k)
        if isinstance(t, np.ndarray) or len(t) != 1:
            fail(k, f"DLPreprocessParam {k!r} must hold one value, got {t!r}")
        return t[0]

    model_type = one("model_type")
    if model_type not in MODEL_TYPES:
        fail("model_type", f"'model_type' {model_type!r} is not one of {', '.join(map(repr, MODEL_TYPES))}")
    for k in ("image_width", "image_height", "image_num_channels"):
        v = one(k)
        if not is_int(v) or not 1 <= v <= _MAX_SIZE:
            fail(k, f"{k!r} must be an integer in [1, {_MAX_SIZE}], got {v!r}")
    lo, hi = one("image_range_min"), one("image_range_max")
    for k, v in (("image_range_min", lo), ("image_range_max", hi)):
        if not is_number(v) or not math.isfinite(v):
            fail(k, f"{k!r} must be a finite number, got {v!r}")
    if not lo < hi:
        fail("image_range_max", f"'image_range_min' ({lo!r}) must be below 'image_range_max' ({hi!r})")
    norm = one("normalization_type")
    if norm not in NORMALIZATION_TYPES:
        fail("normalization_type", f"'normalization_type' {norm!r} is not one of "
                                   f"{', '.join(map(repr, NORMALIZATION_TYPES))}")
    # 'constant_values' does not use the range (preprocess_dl_dataset stores -2 .. 2 for it, spec C.1)
    if model_type in ("classification", "detection") and norm != "constant_values" and (lo != -127 or hi != 128):
        fail("image_range_min", f"{model_type} models need the image range -127 .. 128, got {lo} .. {hi}")
    domains = ("full_domain", "crop_domain") + (("keep_domain",) if model_type == "anomaly_detection" else ())
    dom = one("domain_handling")
    if dom not in domains:
        fail("domain_handling", f"'domain_handling' {dom!r} is not one of {', '.join(map(repr, domains))} for "
                                f"{model_type} models")

    def ints(k: str) -> list:
        values = get(d, k, [])
        if not all(is_int(v) and v >= 0 for v in values):
            fail(k, f"{k!r} must hold non-negative integers, got {values!r}")
        return [int(v) for v in values]

    ignore, background, backgrounds = (ints(k) for k in ("ignore_class_ids", "set_background_id",
                                                          "class_ids_background"))
    if model_type != "segmentation":
        for k, v in (("ignore_class_ids", ignore), ("set_background_id", background),
                     ("class_ids_background", backgrounds)):
            if v:
                fail(k, f"{k!r} is for segmentation models only; give [] for {model_type}")
    else:
        if len(background) > 1:
            fail("set_background_id", f"'set_background_id' takes at most one id, got {background}")
        if bool(background) != bool(backgrounds):
            fail("class_ids_background", "'set_background_id' and 'class_ids_background' must be given together")
        if set(background) & set(backgrounds):
            fail("class_ids_background", "'set_background_id' must not be one of 'class_ids_background'")
        if set(ignore) & (set(background) | set(backgrounds)):
            fail("ignore_class_ids", "'ignore_class_ids' must not overlap 'set_background_id' or "
                                     "'class_ids_background'")
    for k in ("instance_type", "ignore_direction", "class_ids_no_orientation"):
        if k in d and get(d, k) and model_type != "detection":
            fail(k, f"{k!r} is for detection models only")
    if "instance_type" in d and model_type == "detection" and one("instance_type") not in ("rectangle1",
                                                                                            "rectangle2"):
        fail("instance_type", f"'instance_type' must be 'rectangle1' or 'rectangle2', got {one('instance_type')!r}")
    if "ignore_direction" in d and get(d, "ignore_direction"):
        flag(get(d, "ignore_direction"), op, code("ignore_direction"), "'ignore_direction'")
    ints("class_ids_no_orientation")
    means, devs = get(d, "mean_values_normalization", []), get(d, "deviation_values_normalization", [])
    if not all(is_number(v) and math.isfinite(v) for v in means):
        fail("mean_values_normalization", f"'mean_values_normalization' must hold finite numbers, got {means!r}")
    if not all(is_number(v) and _MIN_DEVIATION <= v < math.inf for v in devs):
        fail("deviation_values_normalization", f"'deviation_values_normalization' must hold finite numbers >= "
                                               f"{_MIN_DEVIATION:g}, got {devs!r}")
    if means and devs and len(means) != len(devs):
        fail("deviation_values_normalization", f"'mean_values_normalization' holds {len(means)} values but "
                                               f"'deviation_values_normalization' {len(devs)}")


def _param_values(param: dict) -> dict:
    """The DLPreprocessParam as plain Python values for the sample code."""
    p = {k: (get(param, k) if k in param else []) for k in REQUIRED_KEYS + OPTIONAL_KEYS}
    out = {k: (v[0] if len(v) == 1 and k in REQUIRED_KEYS + ("instance_type",) else v) for k, v in p.items()}
    out["instance_type"] = out["instance_type"] or "rectangle1"
    return out


# ---------------------------------------------------------------- resizing


def _axis_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) interpolation matrix along one axis (module notes)."""
    w = np.zeros((n_out, n_in))
    if n_out == n_in:
        np.fill_diagonal(w, 1.0)
    elif n_out > n_in:
        src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        i0 = np.floor(src).astype(int)
        i1 = np.minimum(i0 + 1, n_in - 1)
        frac = src - i0
        rows = np.arange(n_out)
        np.add.at(w, (rows, i0), 1 - frac)
        np.add.at(w, (rows, i1), frac)
    else:
        scale = n_in / n_out
        for j in range(n_out):
            start, end = j * scale, (j + 1) * scale
            for i in range(int(math.floor(start)), min(int(math.ceil(end)), n_in)):
                w[j, i] = (min(end, i + 1) - max(start, i)) / scale
    return w


def zoom_linear(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """float64 (height, width[, C]) zoom of ``image`` (module notes: bilinear up, area mean down)."""
    img = image.astype(np.float64)
    h, w = img.shape[:2]
    if (h, w) == (height, width):
        return img
    out = np.tensordot(_axis_weights(h, height), img, axes=(1, 0))
    out = np.tensordot(_axis_weights(w, width), out, axes=(1, 1))  # (width, height[, C])
    return np.swapaxes(out, 0, 1)


def zoom_nearest(image: np.ndarray, width: int, height: int) -> np.ndarray:
    h, w = image.shape[:2]
    rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(int), h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * w / width).astype(int), w - 1)
    return image[rows][:, cols]


def _to_type(values: np.ndarray, dtype) -> np.ndarray:
    lo, hi = _INT_RANGES[np.dtype(dtype)]
    return np.clip(np.rint(values), lo, hi)


# ---------------------------------------------------------------- samples


def _preprocess_image(image, p: dict, op: str, where: str) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
        raise HOperatorError(1301, f"{where}: 'image' must be an image array, got {type(image).__name__}", op)
    if image.dtype not in (np.uint8, np.int8, np.int16, np.uint16, np.int32, np.float32, np.float64):
        raise HOperatorError(1301, f"{where}: image type {image.dtype} is not supported (byte, int1, int2, uint2, "
                                   "int4, real)", op)
    width, height, channels = p["image_width"], p["image_height"], p["image_num_channels"]
    img = image if image.ndim == 3 else image[:, :, None]
    c = img.shape[2]
    if c != channels and not (channels in (1, 3) and c in (1, 3)):
        raise HOperatorError(1301, f"{where}: the image has {c} channels, the model {channels} (only 1 and 3 "
                                   "convert into each other)", op)
    # zoom first for byte / int2 / uint2 (in their own type, as HALCON), convert first otherwise
    out = zoom_linear(img, width, height)
    if img.dtype in (np.uint8, np.int16, np.uint16) and img.shape[:2] != (height, width):
        out = _to_type(out, img.dtype)
    lo, hi = float(p["image_range_min"]), float(p["image_range_max"])
    norm = p["normalization_type"]
    if norm == "none":
        if image.dtype == np.uint8:
            out = out * (hi - lo) / 255.0 + lo
    elif norm in ("all_channels", "first_channel"):
        if norm == "first_channel":
            m = np.full(out.shape[2], out[:, :, 0].min())
            mx = np.full(out.shape[2], out[:, :, 0].max())
        else:
            m, mx = out.min(axis=(0, 1)), out.max(axis=(0, 1))
        scale = np.where(mx > m, (hi - lo) / np.where(mx > m, mx - m, 1.0), 1.0)
        out = (out - m) * scale + lo
    else:
        means = [float(v) for v in p["mean_values_normalization"]] or DEFAULT_MEAN
        devs = [float(v) for v in p["deviation_values_normalization"]] or DEFAULT_DEVIATION
        n = max(len(means), len(devs))
        if out.shape[2] == 1 and n == 3:
            out = np.repeat(out, 3, axis=2)
        if n not in (1, out.shape[2]):
            raise HOperatorError(1302, f"{where}: {n} normalisation values for a {out.shape[2]}-channel image", op)
        out = (out - np.array(means)) / np.array(devs)
    if out.shape[2] != channels:
        if channels == 3:
            out = np.repeat(out[:, :, :1], 3, axis=2)
        else:
            out = (0.299 * out[:, :, 0] + 0.587 * out[:, :, 1] + 0.114 * out[:, :, 2])[:, :, None]
    out = out.astype(np.float32)
    return out[:, :, 0] if channels == 1 else out


def _box_values(d: dict, keys: tuple, op: str, where: str) -> list:
    """The box tuples under ``keys`` as float64 arrays: every key present, one finite number per box in each
    (and in 'bbox_label_id' when the sample has it)."""
    values = []
    for k in keys:
        if k not in d:
            raise HOperatorError(H_ERR_DICT_KEY, f"{where} has {keys[0]!r} but no {k!r}", op)
        v = get(d, k)
        if isinstance(v, np.ndarray) or not all(is_number(x) and math.isfinite(x) for x in v):
            raise HOperatorError(1301, f"{where}: {k!r} must hold finite numbers, got {v!r}", op)
        values.append(np.array(v, np.float64))
    counts = {k: len(v) for k, v in zip(keys, values)}
    if "bbox_label_id" in d and not isinstance(d["bbox_label_id"], np.ndarray):
        counts["bbox_label_id"] = len(get(d, "bbox_label_id"))
    if len(set(counts.values())) > 1:
        raise HOperatorError(1301, f"{where}: the box tuples differ in length ({counts}); give one value per box "
                                   "under every key", op)
    return values


def _box_geometry(d: dict, op: str, where: str) -> tuple:
    """The rectangle1 values (row1, col1, row2, col2) or rectangle2 values (row, col, length1, length2, phi) of
    the boxes in ``d`` (whichever it has; empty when neither) as float64 arrays, checked by ``_box_values`` and
    for an area > 0."""
    if "bbox_row1" in d:
        r1, c1, r2, c2 = _box_values(d, ("bbox_row1", "bbox_col1", "bbox_row2", "bbox_col2"), op, where)
        if np.any(r2 <= r1) or np.any(c2 <= c1):
            raise HOperatorError(1301, f"{where}: a rectangle1 box has no area (row2 <= row1 or col2 <= col1)", op)
        return r1, c1, r2, c2
    if "bbox_row" in d:
        row, col, l1, l2, phi = _box_values(d, ("bbox_row", "bbox_col", "bbox_length1", "bbox_length2", "bbox_phi"),
                                            op, where)
        if np.any(l1 <= 0) or np.any(l2 <= 0):
            raise HOperatorError(1301, f"{where}: a rectangle2 box has no area (length1 or length2 <= 0)", op)
        return row, col, l1, l2, phi
    return ()


def rectangle2_of(a: np.ndarray, b: np.ndarray) -> tuple:
    """(phi, length1, length2) of the rectangle2 that stands for the parallelogram with the half-axes ``a`` (the
    mapped length1 axis) and ``b`` (the mapped length2 axis), each a (2, n) array of (x, y) = (column, row)
    vectors: it keeps the parallelogram's area and its longer half-axis exactly, and phi points to the side
    ``a`` points to (the heading). A map that keeps right angles gives the exact rectangle."""
    na, nb = np.hypot(a[0], a[1]), np.hypot(b[0], b[1])
    area = np.abs(a[0] * b[1] - a[1] * b[0])
    on_b = nb > na  # anchoring on the shorter axis would turn the long side away from the object
    side = np.where(a[0] * b[1] - a[1] * b[0] >= 0, 1.0, -1.0)  # the normal of b on a's side
    dx = np.where(on_b, side * b[1] / nb, a[0] / na)
    dy = np.where(on_b, -side * b[0] / nb, a[1] / na)
    return (np.arctan2(-dy, dx), np.where(on_b, area / nb, na), np.where(on_b, nb, area / na))


def _scale_boxes(d: dict, raw_hw, p: dict, op: str, where: str) -> None:
    fr = p["image_height"] / raw_hw[0]
    fc = p["image_width"] / raw_hw[1]
    values = _box_geometry(d, op, where)
    if "bbox_row1" in d:
        r1, c1, r2, c2 = values
        for k, v, f in (("bbox_row1", r1, fr), ("bbox_col1", c1, fc), ("bbox_row2", r2, fr), ("bbox_col2", c2, fc)):
            put(d, k, [float(x) for x in (v + 0.5) * f - 0.5])
    elif "bbox_row" in d:
        row, col, l1, l2, phi = values
        # half-axes as (x, y) = (column, row) vectors; phi counter-clockwise from the column axis, rows point down
        a1 = np.stack([np.cos(phi) * l1 * fc, -np.sin(phi) * l1 * fr])
        a2 = np.stack([-np.sin(phi) * l2 * fc, -np.cos(phi) * l2 * fr])
        new_phi, new_l1, new_l2 = rectangle2_of(a1, a2)
        put(d, "bbox_row", [float(x) for x in (row + 0.5) * fr - 0.5])
        put(d, "bbox_col", [float(x) for x in (col + 0.5) * fc - 0.5])
        put(d, "bbox_length1", [float(x) for x in new_l1])
        put(d, "bbox_length2", [float(x) for x in new_l2])
        put(d, "bbox_phi", [float(x) for x in new_phi])


def _batch(dlsample_batch, op: str) -> list:
    items = [dlsample_batch] if isinstance(dlsample_batch, (dict, HHandle)) else as_list(dlsample_batch)
    return [content(s, op, f"dlsample_batch[{i}]") for i, s in enumerate(items)]


def preprocess_dl_samples(dlsample_batch, dlpreprocess_param):
    """Preprocesses DLSamples in place for a model (spec E.8): image zoomed, normalised, channel-adapted and
    stored as float32; boxes scaled; label images zoomed (nearest) with background mapping."""
    op = "preprocess_dl_samples"
    pd = content(dlpreprocess_param, op, "dlpreprocess_param", 1202)
    # The dict is checked even with 'check_params' false: the checks cost microseconds, and a bad value would
    # otherwise end in a raw Python exception deep in the resampling.
    if "check_params" in pd:
        flag(get(pd, "check_params"), op, 1302, "'check_params'")
    _check_param(pd, op, lambda key: 1302)
    p = _param_values(pd)
    # the zoom works in float64: refuse up front what cannot fit into this machine's memory at all
    need = 8 * p["image_width"] * p["image_height"] * p["image_num_channels"]
    if need > _physical_memory():
        raise HOperatorError(6001, f"a preprocessed image of {p['image_width']} x {p['image_height']} x "
                                   f"{p['image_num_channels']} needs {need / 2 ** 30:.3g} GiB, more than this "
                                   "machine's memory", op)
    try:
        _preprocess_samples(dlsample_batch, p, op)
    except MemoryError:
        raise HOperatorError(6001, f"not enough memory to preprocess the samples to {p['image_width']} x "
                                   f"{p['image_height']} x {p['image_num_channels']}", op) from None


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2 ** 62  # unknown (not POSIX): only MemoryError itself stops it


def _preprocess_label(label: np.ndarray, p: dict, segmentation: bool) -> np.ndarray:
    """A label image (segmentation, weight or anomaly image) zoomed to the model's size by nearest neighbour, as
    float32; a segmentation image's class_ids_background become set_background_id."""
    lab = label if label.ndim == 2 else label[:, :, 0]
    lab = zoom_nearest(lab, p["image_width"], p["image_height"]).astype(np.float32)
    if segmentation and p["set_background_id"]:
        lab = np.where(np.isin(lab, p["class_ids_background"]), np.float32(p["set_background_id"][0]), lab)
    return np.ascontiguousarray(lab)


def _preprocess_samples(dlsample_batch, p: dict, op: str) -> None:
    # Every sample is preprocessed into a copy of its entries; the samples change only when all succeeded.
    done = []
    for i, d in enumerate(_batch(dlsample_batch, op)):
        where = f"dlsample_batch[{i}]"
        original, d = d, dict(d)
        done.append((original, d))
        if "image" not in d:
            raise HOperatorError(H_ERR_DICT_KEY, f"{where} has no 'image'", op)
        raw = d["image"]
        raw = raw if isinstance(raw, np.ndarray) else as_list(raw)[0] if as_list(raw) else None
        image = _preprocess_image(raw, p, op, where)
        _scale_boxes(d, raw.shape[:2], p, op, where)
        put(d, "image", image)
        for key in ("segmentation_image", "weight_image", "anomaly_ground_truth"):
            if key not in d or not isinstance(d[key], np.ndarray):
                continue
            if d[key].ndim not in (2, 3) or min(d[key].shape) < 1:
                raise HOperatorError(1301, f"{where}: '{key}' must be an image (height, width[, 1]), got shape "
                                           f"{d[key].shape}", op)
            if d[key].shape[:2] != raw.shape[:2]:  # zooming it would move its labels off their pixels
                raise HOperatorError(1301, f"{where}: '{key}' has the size {d[key].shape[:2]} (height, width), the "
                                           f"image {raw.shape[:2]}; they must be equal", op)
            put(d, key, _preprocess_label(d[key], p, key == "segmentation_image"))
    for original, d in done:
        original.update(d)


# ---------------------------------------------------------------- dataset


def _segmentation_class_weights(ds: dict, samples: list, class_ids: list, p: dict, max_weight: float) -> dict:
    """The class weights of the training samples' (all samples' without a split) labels as the model will see
    them: zoomed to the model's size, with class_ids_background mapped to set_background_id."""
    from .images import read_image
    seg_dir = get1(ds, "segmentation_dir", "")
    chosen = [s for s in samples if get1(s, "split") == "train"] or samples
    counts = {c: 0 for c in class_ids}
    for s in chosen:
        lab = read_image(os.path.join(seg_dir, get1(s, "segmentation_file_name")) if seg_dir else
                         get1(s, "segmentation_file_name"))
        values, n = np.unique(_preprocess_label(lab, p, True), return_counts=True)
        for v, k in zip(values, n):
            if int(v) in counts:
                counts[int(v)] += int(k)
    return inverse_frequency_class_weights(counts, class_ids, [int(c) for c in p["ignore_class_ids"]], max_weight)


def inverse_frequency_class_weights(counts: dict, class_ids: list, ignore: list, max_weight: float) -> dict:
    """HALCON's class weights from pixel counts {class id: n}: w_c = min(max_weight, N / (K n_c)) over the K
    counted (not ignored) classes and their N pixels; a class without pixels gets max_weight, an ignored one 0."""
    counted = {c: n for c, n in counts.items() if c not in ignore}
    total = sum(counted.values())
    weights = {}
    for c in class_ids:
        if c in ignore:
            weights[c] = 0.0
        elif counted[c] == 0:
            weights[c] = max_weight
        else:
            weights[c] = min(max_weight, total / (len(counted) * counted[c]))
    return weights


def preprocess_dl_dataset(dldataset, data_directory, dlpreprocess_param, gen_param):
    """Preprocesses every sample of the dataset and writes it to <data_directory>/samples/<image_id>_dlsample.hdict
    (gen_dl_samples -> preprocess_dl_samples -> write_dl_samples), stores 'preprocess_param' and 'dlsample_dir'
    in the dataset, writes the dataset to <data_directory>/dl_dataset.hdict and returns that file name."""
    op = "preprocess_dl_dataset"
    ds = content(dldataset, op, "dldataset")
    items = as_list(data_directory)
    if len(items) != 1 or not isinstance(items[0], (str, os.PathLike)) or not os.fspath(items[0]):
        raise HOperatorError(1202, f"data_directory must be one directory name, got {data_directory!r}", op)
    directory = os.fspath(items[0])
    if isinstance(directory, str) and not _is_utf8(directory):  # refused before anything is created on disk
        raise _not_utf8("data_directory", directory, op, 1302)
    pd = content(dlpreprocess_param, op, "dlpreprocess_param", 1203)
    check_dl_preprocess_param(dlpreprocess_param)
    p = _param_values(pd)
    params = gen_params(gen_param, op, 4, ("overwrite_files", "show_progress", "max_weight", "class_weights"))
    overwrite = flag(params.get("overwrite_files", 0), op, 1304, "'overwrite_files'")
    flag(params.get("show_progress", 1), op, 1304, "'show_progress'")
    model_type = p["model_type"]
    if model_type != "segmentation" and ("max_weight" in params or "class_weights" in params):
        raise HOperatorError(1304, "GenParam 'max_weight' and 'class_weights' are for segmentation only", op)
    samples = samples_of(ds, op)
    if not samples:
        raise HOperatorError(1301, "dldataset holds no samples", op)
    raw_ids = get(ds, "class_ids", [])
    if not all(is_int(c) for c in raw_ids):
        raise HOperatorError(1301, f"dldataset 'class_ids' must be integers, got {raw_ids!r}", op)
    class_ids = [int(c) for c in raw_ids]
    if model_type == "segmentation" and p["set_background_id"] and p["set_background_id"][0] not in class_ids:
        raise HOperatorError(1303, f"'set_background_id' {p['set_background_id'][0]} is not one of the dataset's "
                                   f"class_ids {class_ids}", op)
    dataset_file = os.path.join(directory, "dl_dataset.hdict")
    sample_dir = os.path.join(directory, "samples")
    if os.path.exists(directory) and not overwrite:
        raise HOperatorError(1302, f"data_directory {directory!r} exists; set GenParam 'overwrite_files' to true "
                                   "to replace it", op)
    if os.path.exists(directory) and not os.path.isdir(directory) or \
            os.path.exists(sample_dir) and not os.path.isdir(sample_dir):
        raise HOperatorError(1302, f"data_directory {directory!r} (or its 'samples') is a file, not a directory", op)
    weights = None
    if model_type == "segmentation":
        given = params.get("class_weights")
        if given:
            if not all(is_number(w) and math.isfinite(w) and w >= 0 for w in given) or \
                    len(given) not in (1, len(class_ids)):
                raise HOperatorError(1304, f"'class_weights' must be one finite number >= 0 or one per class, got "
                                           f"{given!r}", op)
            ignore = [int(c) for c in p["ignore_class_ids"]]  # their pixels weigh nothing, as computed weights
            weights = {c: 0.0 if c in ignore else float(given[0] if len(given) == 1 else given[k])
                       for k, c in enumerate(class_ids)}
        else:
            mw = params.get("max_weight", [1000])
            if len(mw) != 1 or not is_number(mw[0]) or not 0 < mw[0] < math.inf:
                raise HOperatorError(1304, f"'max_weight' must be a finite number > 0, got {mw!r}", op)
            weights = _segmentation_class_weights(ds, samples, class_ids, p, float(mw[0]))
    stored = {k: (get(pd, k)) for k in pd if k != "check_params"}
    if p["normalization_type"] == "constant_values":
        stored["image_range_min"], stored["image_range_max"] = [-2.0], [2.0]
    gen = {"instance_type": p["instance_type"]} if model_type == "detection" else []

    # Nothing on disk or in the dataset changes before every sample is preprocessed: the samples go to a staging
    # folder, which replaces the old samples at the end; on an error the dataset gets its old entries back.
    created = not os.path.exists(directory)
    try:
        os.makedirs(directory, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".samples_", dir=directory)
    except OSError as e:
        raise HOperatorError(1302, f"cannot create data_directory {directory!r}: {e.strerror or e}", op) from None
    before = ({k: ds[k] for k in ("dlsample_dir", "preprocess_param") if k in ds},
              [s.get("dlsample_file_name") for s in samples])
    try:
        put(ds, "dlsample_dir", staging)
        for start in range(0, len(samples), 16):
            idx = list(range(start, min(start + 16, len(samples))))
            batch = gen_dl_samples(dldataset, idx, model_type, gen)
            preprocess_dl_samples(batch, dlpreprocess_param)
            if weights is not None:
                for s in batch:
                    sd = content(s, op, "dlsample")
                    if "segmentation_image" in sd:
                        values, where = np.unique(sd["segmentation_image"], return_inverse=True)
                        w = np.array([weights.get(int(v), 0.0) for v in values], np.float32)
                        put(sd, "weight_image", w[where].reshape(sd["segmentation_image"].shape))
            write_dl_samples(dldataset, idx, batch, [], [])
        # The dataset file is written (to the staging folder) before the old samples are replaced, so a dataset
        # that cannot be written leaves the directory as it was.
        put(ds, "dlsample_dir", sample_dir)
        ds["preprocess_param"] = [new_dict(stored)]
        staged_dataset = os.path.join(staging, ".dl_dataset.hdict")
        write_dict(dldataset if isinstance(dldataset, HHandle) else new_dict(dldataset), staged_dataset, [], [])
        os.makedirs(sample_dir, exist_ok=True)
        for f in os.listdir(sample_dir):
            if f.endswith("_dlsample.hdict"):
                os.remove(os.path.join(sample_dir, f))
        for f in os.listdir(staging):
            if f.endswith("_dlsample.hdict"):
                os.replace(os.path.join(staging, f), os.path.join(sample_dir, f))
        os.replace(staged_dataset, dataset_file)
    except BaseException:
        for k in ("dlsample_dir", "preprocess_param"):
            ds.pop(k, None)
        ds.update(before[0])
        for sd, name in zip(samples, before[1]):
            if name is None:
                sd.pop("dlsample_file_name", None)
            else:
                sd["dlsample_file_name"] = name
        shutil.rmtree(directory if created else staging, ignore_errors=True)
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return dataset_file


# ---------------------------------------------------------------- augmentation

_AUG_KEYS = ("augmentation_percentage", "rotate", "mirror", "brightness_variation", "brightness_variation_spot",
             "contrast_variation", "saturation_variation", "crop_percentage", "crop_pixel", "rotate_range",
             "ignore_direction", "class_ids_no_orientation")
_GEOMETRY_KEYS = ("bbox_row1", "bbox_row", "segmentation_image", "weight_image", "anomaly_ground_truth")


def _aug_params(gen_param, op: str) -> dict:
    raw = gen_params(gen_param, op, 2, _AUG_KEYS)

    def one(k, default):
        v = raw.get(k, [default])
        if len(v) != 1:
            raise HOperatorError(1302, f"GenParam {k!r} takes one value, got {v!r}", op)
        return v[0]

    def number(k, default, lo, hi, integer=False):
        v = one(k, default)
        if not is_number(v) or not lo <= v <= hi or (integer and v != int(v)):
            raise HOperatorError(1302, f"GenParam {k!r} must be a{'n integer' if integer else ' number'} in "
                                       f"[{lo}, {hi}], got {v!r}", op)
        return v

    def off_or(k, lo, hi, integer=False):
        v = one(k, "off")
        if v == "off":
            return None
        if not is_number(v) or not lo <= v <= hi or (integer and v != int(v)):
            raise HOperatorError(1302, f"GenParam {k!r} must be 'off' or a{'n integer' if integer else ' number'} "
                                       f"in [{lo}, {hi}], got {v!r}", op)
        return v

    p = {"percentage": number("augmentation_percentage", 50, 0, 100),
         "brightness": number("brightness_variation", 0, 0, 255),
         "spot": number("brightness_variation_spot", 0, 0, 255),
         "contrast": number("contrast_variation", 0, 0, 1),
         "saturation": number("saturation_variation", 0, 0, 1),
         "rotate_range": number("rotate_range", 0, 0, 180, integer=True),
         "crop_percentage": off_or("crop_percentage", 1, 100),
         "crop_pixel": off_or("crop_pixel", 1, 2 ** 31 - 1, integer=True)}
    rot = one("rotate", 0)
    if rot not in (0, 90, 180):
        raise HOperatorError(1302, f"GenParam 'rotate' must be 0, 90 or 180, got {rot!r}", op)
    p["rotate"] = int(rot)
    mirror = one("mirror", "off")
    if mirror not in ("off", "r", "c", "rc", "cr"):
        raise HOperatorError(1302, f"GenParam 'mirror' must be 'off', 'r', 'c', 'rc' or 'cr', got {mirror!r}", op)
    p["mirror"] = mirror
    p["ignore_direction"] = flag(one("ignore_direction", "false"), op, 1302, "GenParam 'ignore_direction'")
    no_orientation = raw.get("class_ids_no_orientation", [])
    if not all(is_int(c) for c in no_orientation):
        raise HOperatorError(1302, f"GenParam 'class_ids_no_orientation' must be class ids (integers), got "
                                   f"{no_orientation!r}", op)
    p["no_orientation"] = [int(c) for c in no_orientation]
    return p


def _finish(values: np.ndarray, dtype) -> np.ndarray:
    if np.dtype(dtype) in _INT_RANGES:
        return _to_type(values, dtype).astype(dtype)
    return values.astype(dtype)


def _geometry(d: dict, fn_image, fn_points, fn_phi, new_hw) -> None:
    """Applies a pixel-exact geometric transform to the image, label images and boxes of a sample."""
    for key in ("image", "segmentation_image", "weight_image", "anomaly_ground_truth"):
        if key in d and isinstance(d[key], np.ndarray):
            put(d, key, np.ascontiguousarray(fn_image(d[key])))
    if "bbox_row1" in d:
        r1, c1, r2, c2 = (np.array(get(d, k, []), np.float64) for k in
                          ("bbox_row1", "bbox_col1", "bbox_row2", "bbox_col2"))
        ra, ca = fn_points(r1, c1)
        rb, cb = fn_points(r2, c2)
        put(d, "bbox_row1", [float(x) for x in np.minimum(ra, rb)])
        put(d, "bbox_row2", [float(x) for x in np.maximum(ra, rb)])
        put(d, "bbox_col1", [float(x) for x in np.minimum(ca, cb)])
        put(d, "bbox_col2", [float(x) for x in np.maximum(ca, cb)])
    if "bbox_row" in d:
        r, c = fn_points(np.array(get(d, "bbox_row", []), np.float64), np.array(get(d, "bbox_col", []), np.float64))
        put(d, "bbox_row", [float(x) for x in r])
        put(d, "bbox_col", [float(x) for x in c])
        phi = fn_phi(np.array(get(d, "bbox_phi", []), np.float64))
        put(d, "bbox_phi", [float(x) for x in math.pi - np.mod(math.pi - phi, 2 * math.pi)])  # in (-pi, pi]


def _mirror(d: dict, rows: bool, cols: bool) -> None:
    h, w = d["image"].shape[:2]

    def img(a):
        return a[::-1 if rows else 1, ::-1 if cols else 1]

    def pts(r, c):
        return (h - 1 - r if rows else r), (w - 1 - c if cols else c)

    def phi(p):
        if rows:
            p = -p
        if cols:
            p = math.pi - p
        return p

    _geometry(d, img, pts, phi, (h, w))


def _rotate90(d: dict, k: int) -> None:
    """Counter-clockwise rotation by k * 90 degrees (np.rot90): pixel (r, c) -> (w - 1 - c, r) for k = 1."""
    h, w = d["image"].shape[:2]

    def pts(r, c):
        hh, ww = h, w
        for _ in range(k):
            r, c = ww - 1 - c, r
            hh, ww = ww, hh
        return r, c

    _geometry(d, lambda a: np.rot90(a, k), pts, lambda p: p + k * math.pi / 2, None)


def _rotate_free(image: np.ndarray, degrees: float) -> np.ndarray:
    h, w = image.shape[:2]
    a = math.radians(degrees)
    cr, cc = (h - 1) / 2, (w - 1) / 2
    rr, cc_ = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    # inverse map: output pixel -> source pixel (rotation counter-clockwise on screen, rows pointing down)
    dr, dc = rr - cr, cc_ - cc
    sr = cr + math.cos(a) * dr + math.sin(a) * dc
    sc = cc - math.sin(a) * dr + math.cos(a) * dc
    img = image.astype(np.float64) if image.ndim == 3 else image.astype(np.float64)[:, :, None]
    r0, c0 = np.floor(sr).astype(int), np.floor(sc).astype(int)
    fr, fc = (sr - r0)[..., None], (sc - c0)[..., None]
    out = np.zeros_like(img)
    inside = (sr >= -0.5) & (sr <= h - 0.5) & (sc >= -0.5) & (sc <= w - 0.5)

    def at(r, c):
        return img[np.clip(r, 0, h - 1), np.clip(c, 0, w - 1)]

    val = (at(r0, c0) * (1 - fr) * (1 - fc) + at(r0 + 1, c0) * fr * (1 - fc) + at(r0, c0 + 1) * (1 - fr) * fc
           + at(r0 + 1, c0 + 1) * fr * fc)
    out[inside] = val[inside]
    return out if image.ndim == 3 else out[:, :, 0]


def augment_dl_samples(dlsample_batch, gen_param):
    """Augments DLSamples in place (spec E.10): each sample is picked with probability
    augmentation_percentage / 100 and gets exactly one of the enabled distortions, chosen uniformly."""
    _augment_batch(dlsample_batch, gen_param, None, "augment_dl_samples")


def _augment_batch(dlsample_batch, gen_param, gen, op: str) -> None:
    """augment_dl_samples drawing from ``gen`` (None: the procedures' random source). train_dl_model's
    background loader gives every batch its own generator, so results do not depend on thread timing."""
    batch = _batch(dlsample_batch, op)
    if not batch:
        raise HOperatorError(1401, "dlsample_batch is empty", op)
    if gen_param is None or (isinstance(gen_param, (list, tuple)) and len(gen_param) == 0):
        return
    p = _aug_params(gen_param, op)
    classification_only = [k for k, v in (("crop_percentage", p["crop_percentage"]), ("crop_pixel", p["crop_pixel"]),
                                          ("rotate_range", p["rotate_range"] or None)) if v is not None]
    if classification_only:
        for i, d in enumerate(batch):
            if any(k in d for k in _GEOMETRY_KEYS):
                raise HOperatorError(1302, f"GenParam {classification_only[0]!r} is for classification samples only; "
                                           f"dlsample_batch[{i}] has boxes or label images", op)
    enabled = []
    if p["mirror"] != "off":
        enabled.append("mirror")
    if p["rotate"]:
        enabled.append("rotate")
    for k in ("brightness", "spot", "contrast", "saturation", "rotate_range"):
        if p[k]:
            enabled.append(k)
    if p["crop_percentage"] is not None:
        enabled.append("crop_percentage")
    if p["crop_pixel"] is not None:
        enabled.append("crop_pixel")
    if not enabled or p["percentage"] == 0:
        return
    gen = rng() if gen is None else gen
    for i, d in enumerate(batch):
        if "image" not in d or not isinstance(d["image"], np.ndarray):
            raise HOperatorError(H_ERR_DICT_KEY, f"dlsample_batch[{i}] has no 'image'", op)
        if d["image"].ndim not in (2, 3) or min(d["image"].shape[:2]) < 1:
            raise HOperatorError(1301, f"dlsample_batch[{i}]: 'image' must be (height, width[, channels]), got "
                                       f"shape {d['image'].shape}", op)
    # Every sample is augmented in a copy of its entries; the samples change only when all succeeded.
    done = []
    for i, d in enumerate(batch):
        original, d = d, dict(d)
        done.append((original, d))
        if gen.random() >= p["percentage"] / 100:
            continue
        try:
            _augment_one(d, p, enabled, gen)
        except (ValueError, TypeError, IndexError) as e:
            raise HOperatorError(1301, f"dlsample_batch[{i}]: its boxes or label images do not fit the image "
                                       f"({e})", op) from None
    for original, d in done:
        original.update(d)


def _fold_headings(d: dict, p: dict) -> None:
    """Boxes without a heading ('ignore_direction', or a class in 'class_ids_no_orientation') keep phi in
    (-pi/2, pi/2], the range HALCON gives them: such a box turned by pi is the same box."""
    if "bbox_phi" not in d:
        return
    phi = np.array(get(d, "bbox_phi", []), np.float64)
    labels = np.array(get(d, "bbox_label_id", []), np.float64)
    fold = np.full(phi.shape, bool(p["ignore_direction"]))
    if p["no_orientation"] and labels.shape == phi.shape:
        fold |= np.isin(labels, p["no_orientation"])
    if fold.any():
        put(d, "bbox_phi", [float(x) for x in np.where(fold, math.pi / 2 - np.mod(math.pi / 2 - phi, math.pi), phi)])


def _augment_one(d: dict, p: dict, enabled: list, gen) -> None:
    """One distortion, chosen uniformly from the enabled ones, applied to the sample entries ``d``."""
    kind = enabled[int(gen.integers(len(enabled)))]
    image = d["image"]
    h, w = image.shape[:2]
    if kind == "mirror":
        choice = p["mirror"] if p["mirror"] in ("r", "c") else ("r", "c", "rc")[int(gen.integers(3))]
        _mirror(d, "r" in choice, "c" in choice)
        _fold_headings(d, p)
    elif kind == "rotate":
        step = p["rotate"] // 90
        ks = [k for k in range(step, 4, step) if h == w or k % 2 == 0]
        if ks:
            _rotate90(d, ks[int(gen.integers(len(ks)))])
            _fold_headings(d, p)
    elif kind == "brightness":
        offset = gen.uniform(-p["brightness"], p["brightness"])
        put(d, "image", _finish(image.astype(np.float64) + offset, image.dtype))
    elif kind == "spot":
        offset = gen.uniform(-p["spot"], p["spot"])
        r0, c0 = gen.uniform(0, h - 1), gen.uniform(0, w - 1)
        sigma = min(h, w) / 4
        rr, cc = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        spot = offset * np.exp(-((rr - r0) ** 2 + (cc - c0) ** 2) / (2 * sigma ** 2))
        if image.ndim == 3:
            spot = spot[:, :, None]
        put(d, "image", _finish(image.astype(np.float64) + spot, image.dtype))
    elif kind == "contrast":
        f = gen.uniform(1 - p["contrast"], 1 + p["contrast"])
        v = image.astype(np.float64)
        put(d, "image", _finish((v - v.mean()) * f + v.mean(), image.dtype))
    elif kind == "saturation":
        f = gen.uniform(1 - p["saturation"], 1 + p["saturation"])
        if image.ndim == 3 and image.shape[2] == 3:
            v = image.astype(np.float64)
            grey = v.mean(axis=2, keepdims=True)
            put(d, "image", _finish(grey + (v - grey) * f, image.dtype))
    elif kind == "rotate_range":
        angle = int(gen.integers(-int(p["rotate_range"]), int(p["rotate_range"]) + 1))
        put(d, "image", _finish(_rotate_free(image, angle), image.dtype))
    else:
        if kind == "crop_percentage":
            ch = max(1, int(round(h * p["crop_percentage"] / 100)))
            cw = max(1, int(round(w * p["crop_percentage"] / 100)))
        else:
            ch, cw = min(h, int(p["crop_pixel"])), min(w, int(p["crop_pixel"]))
        r0 = int(gen.integers(0, h - ch + 1))
        c0 = int(gen.integers(0, w - cw + 1))
        crop = image[r0:r0 + ch, c0:c0 + cw]
        put(d, "image", _finish(zoom_linear(crop, w, h), image.dtype))
