"""DataAugmentation: per-sample random geometric and intensity changes of preprocessed training images.

Every range is symmetric around "no change" and every draw is uniform within it, from a generator the tool
seeds per sample (seed, iteration, position in the pass), so augmentation is reproducible and independent of
threads. Images are the preprocessed float arrays (H, W, C). A byte image's values lie in [lo, hi] (the model's
image_range_min / image_range_max); other images keep their own values (normalization 'none'), so the range
used below is [lo, hi] widened to the image's own minimum and maximum: a 16-bit or real image is never cut to
the byte range, and an augmentation without intensity changes leaves every value as it was.

Geometry: one affine map about the image centre, composed of (in this order, from output to input) shift,
rotation, shear along x and isotropic scale, plus flips; pixels are sampled bilinearly and positions outside
the image take the nearest border pixel (no black corners that a classifier could learn from).
- flip_horizontal / flip_vertical: flip with probability 0.5.
- rotation r (degrees): angle in [-r, r].   scale (lo, hi): factor in [lo, hi] (> 1 zooms in).
- shift s: translation in [-s, s] times the image width / height.   shear h (degrees): shear angle in [-h, h].
Intensity, with [lo, hi] the range above and R = hi - lo:
- brightness b: offset in [-b, b] * R.   contrast c: deviation from the image mean scaled by [1 - c, 1 + c].
- hue h (degrees): RGB rotated about the grey axis by [-h, h] (3-channel images only).
- saturation s: deviation from the per-pixel grey value scaled by [1 - s, 1 + s] (3-channel images only).
- gaussian_noise g: additive noise of standard deviation in [0, g] * R.
- speckle_noise k: multiplicative noise, (x - lo) * (1 + n) with n of standard deviation in [0, k].
- salt_and_pepper p: a fraction in [0, p] of the pixels set to lo or hi (equally likely).
Results are clipped to [lo, hi].

Boxes (detection) move with the geometric map: a rectangle1 box becomes the axis-aligned box enclosing its
four mapped corners, clipped to the image, and is dropped when less than half of it stays inside; a rectangle2
box keeps its centre mapped and becomes the rectangle that stands for its mapped parallelogram (exact without
shear): the area and the longer mapped half-axis are kept, and phi points to the side the mapped length1 axis
points to, so flips turn the heading too (opendl.preprocess.rectangle2_of). It is dropped when its centre
leaves the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from .. import _proc
from ..errors import HOperatorError
from ..preprocess import rectangle2_of


@dataclass
class DataAugmentation:
    flip_horizontal: bool = False
    flip_vertical: bool = False
    rotation: float = 0.0
    scale: tuple = (1.0, 1.0)
    shift: float = 0.0
    shear: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    hue: float = 0.0
    saturation: float = 0.0
    gaussian_noise: float = 0.0
    speckle_noise: float = 0.0
    salt_and_pepper: float = 0.0

    _LIMITS = {"rotation": 180.0, "shift": 0.5, "shear": 45.0, "brightness": 1.0, "contrast": 1.0, "hue": 180.0,
               "saturation": 1.0, "gaussian_noise": 1.0, "speckle_noise": 1.0, "salt_and_pepper": 1.0}

    def __post_init__(self):
        op = "DataAugmentation"
        for f in ("flip_horizontal", "flip_vertical"):
            if not isinstance(getattr(self, f), (bool, np.bool_)):
                raise HOperatorError(1302, f"{f} must be True or False, got {getattr(self, f)!r}", op)
        for f, hi in self._LIMITS.items():
            v = getattr(self, f)
            if not _proc.is_number(v) or not 0.0 <= v <= hi:
                raise HOperatorError(1302, f"{f} must be a number in [0, {hi:g}], got {v!r}", op)
        s = self.scale
        if _proc.is_number(s):
            s = (float(s), float(s))
        if (not isinstance(s, (tuple, list)) or len(s) != 2 or not all(_proc.is_number(v) for v in s)
                or not 0.1 <= s[0] <= s[1] <= 10.0):
            raise HOperatorError(1302, f"scale must be (min, max) with 0.1 <= min <= max <= 10, got {self.scale!r}",
                                 op)
        self.scale = (float(s[0]), float(s[1]))

    def as_dict(self) -> dict:
        return {f.name: (list(getattr(self, f.name)) if f.name == "scale" else getattr(self, f.name))
                for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "DataAugmentation":
        """The augmentation of ``as_dict``'s keys (any subset; the others keep their defaults)."""
        op = "DataAugmentation.from_dict"
        if not isinstance(d, dict):
            raise HOperatorError(1201, f"d must be a dict of augmentation settings, got {type(d).__name__}", op)
        known = [f.name for f in fields(cls)]
        unknown = [k for k in d if k not in known]
        if unknown:
            raise HOperatorError(1301, f"unknown augmentation key {unknown[0]!r}; the keys are {known}", op)
        d = dict(d)
        if isinstance(d.get("scale"), list):
            d["scale"] = tuple(d["scale"])
        return cls(**d)

    @property
    def geometric(self) -> bool:
        return (self.flip_horizontal or self.flip_vertical or self.rotation > 0 or self.scale != (1.0, 1.0)
                or self.shift > 0 or self.shear > 0)

    def apply(self, image: np.ndarray, gen: np.random.Generator, lo: float, hi: float, label=None, boxes=None):
        """The augmented copy of one preprocessed image (H, W) or (H, W, C), float32. With ``label`` (an (H, W)
        label image of class ids) returns (image, label): the label image moved by the same geometric map, sampled
        at the nearest pixel (class ids are never blended); intensity changes leave it alone. With ``boxes`` (a
        dict of bbox_label_id and the rectangle1 or rectangle2 keys, in the image's pixel coordinates) returns
        (image, boxes) with the boxes moved by the map (see the module)."""
        x = np.asarray(image, dtype=np.float32)
        squeeze = x.ndim == 2
        if squeeze:
            x = x[:, :, None]
        if label is not None and np.shape(label)[:2] != x.shape[:2]:
            raise HOperatorError(1302, f"label image shape {np.shape(label)} differs from the image's {x.shape[:2]}",
                                 "DataAugmentation.apply")
        # Draw every value in a fixed order, whether used or not, so that one setting does not shift another's
        # random numbers.
        u = gen.random(16)
        if x.size:
            lo, hi = min(float(lo), float(x.min())), max(float(hi), float(x.max()))
        rng = float(hi - lo)
        if self.geometric:
            sx, sy = self._source_coordinates(x.shape[0], x.shape[1], u)
            x = self._bilinear(x, sx, sy)
            if label is not None:
                label = np.asarray(label)[np.rint(sy).astype(np.int64), np.rint(sx).astype(np.int64)]
            if boxes is not None:
                boxes = self._moved_boxes(boxes, x.shape[0], x.shape[1], u)
        if self.brightness > 0:
            x = x + np.float32((2 * u[7] - 1) * self.brightness * rng)
        if self.contrast > 0:
            m = x.mean(axis=(0, 1), keepdims=True)
            x = m + (x - m) * np.float32(1 + (2 * u[8] - 1) * self.contrast)
        if x.shape[2] == 3 and (self.hue > 0 or self.saturation > 0):
            x = self._color(x, u)
        if self.gaussian_noise > 0:
            x = x + gen.standard_normal(x.shape, dtype=np.float32) * np.float32(u[11] * self.gaussian_noise * rng)
        if self.speckle_noise > 0:
            n = gen.standard_normal(x.shape, dtype=np.float32) * np.float32(u[12] * self.speckle_noise)
            x = x + (x - np.float32(lo)) * n
        if self.salt_and_pepper > 0:
            hit = gen.random(x.shape[:2]) < u[13] * self.salt_and_pepper
            salt = gen.random(x.shape[:2]) < 0.5
            x = x.copy()
            x[hit & salt] = hi
            x[hit & ~salt] = lo
        x = np.clip(x, lo, hi).astype(np.float32, copy=False)
        x = x[:, :, 0] if squeeze else x
        if boxes is not None:
            return x, boxes
        return x if label is None else (x, label)

    def _forward(self, h: int, w: int, u):
        """The forward map (input -> output) p' = fwd (p - c) + c + t in (x, y) = (column, row) pixel
        coordinates: (fwd, c, t)."""
        fx = -1.0 if self.flip_horizontal and u[0] < 0.5 else 1.0
        fy = -1.0 if self.flip_vertical and u[1] < 0.5 else 1.0
        a = math.radians((2 * u[2] - 1) * self.rotation)
        s = self.scale[0] + u[3] * (self.scale[1] - self.scale[0])
        tx = (2 * u[4] - 1) * self.shift * w
        ty = (2 * u[5] - 1) * self.shift * h
        sh = math.tan(math.radians((2 * u[6] - 1) * self.shear))
        # Forward map (input -> output, about the centre): p' = T + R(a) * Sh * S * F * p. Sampling needs its
        # inverse: p = (R Sh S F)^-1 (p' - T).
        fwd = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) @ np.array([[1.0, sh], [0.0, 1.0]]) \
            @ np.diag([s * fx, s * fy])
        return fwd, np.array([(w - 1) / 2.0, (h - 1) / 2.0]), np.array([tx, ty])

    def _source_coordinates(self, h: int, w: int, u):
        """For every output pixel, the input position (x, y) it samples, clipped to the image."""
        fwd, (cx, cy), (tx, ty) = self._forward(h, w, u)
        inv = np.linalg.inv(fwd)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
        px, py = xx - cx - tx, yy - cy - ty
        sx = inv[0, 0] * px + inv[0, 1] * py + cx
        sy = inv[1, 0] * px + inv[1, 1] * py + cy
        return np.clip(sx, 0, w - 1), np.clip(sy, 0, h - 1)

    def _moved_boxes(self, boxes: dict, h: int, w: int, u) -> dict:
        fwd, c, t = self._forward(h, w, u)
        ids = list(boxes.get("bbox_label_id", []))

        def move(px, py):  # points (x = column, y = row), arrays of any shape -> mapped points
            dx, dy = px - c[0], py - c[1]
            return (fwd[0, 0] * dx + fwd[0, 1] * dy + c[0] + t[0], fwd[1, 0] * dx + fwd[1, 1] * dy + c[1] + t[1])

        out = {"bbox_label_id": []}
        if "bbox_row1" in boxes:
            r1, c1, r2, c2 = (np.asarray(boxes[k], np.float64) for k in ("bbox_row1", "bbox_col1", "bbox_row2",
                                                                          "bbox_col2"))
            xs, ys = move(np.stack([c1, c2, c2, c1]), np.stack([r1, r1, r2, r2]))
            nr1, nr2, nc1, nc2 = ys.min(axis=0), ys.max(axis=0), xs.min(axis=0), xs.max(axis=0)
            cr1, cr2 = np.clip(nr1, -0.5, h - 0.5), np.clip(nr2, -0.5, h - 0.5)
            cc1, cc2 = np.clip(nc1, -0.5, w - 0.5), np.clip(nc2, -0.5, w - 0.5)
            full = (nr2 - nr1) * (nc2 - nc1)
            keep = (cr2 > cr1) & (cc2 > cc1) & ((cr2 - cr1) * (cc2 - cc1) >= 0.5 * full)
            for k, v in (("bbox_row1", cr1), ("bbox_col1", cc1), ("bbox_row2", cr2), ("bbox_col2", cc2)):
                out[k] = [float(x) for x in v[keep]]
        else:
            r, col, phi, l1, l2 = (np.asarray(boxes[k], np.float64) for k in ("bbox_row", "bbox_col", "bbox_phi",
                                                                               "bbox_length1", "bbox_length2"))
            nx, ny = move(col, r)
            a1 = fwd @ np.stack([np.cos(phi) * l1, -np.sin(phi) * l1])     # length1 axis as (x, y)
            a2 = fwd @ np.stack([np.sin(phi) * l2, np.cos(phi) * l2])
            new_phi, new_l1, new_l2 = rectangle2_of(a1, a2)
            new = {"bbox_row": ny, "bbox_col": nx, "bbox_phi": new_phi, "bbox_length1": new_l1,
                   "bbox_length2": new_l2}
            keep = (ny >= -0.5) & (ny <= h - 0.5) & (nx >= -0.5) & (nx <= w - 0.5)
            for k, v in new.items():
                out[k] = [float(x) for x in v[keep]]
        out["bbox_label_id"] = [i for i, k in zip(ids, keep) if k]
        return out

    @staticmethod
    def _bilinear(x: np.ndarray, sx: np.ndarray, sy: np.ndarray) -> np.ndarray:
        h, w = x.shape[:2]
        x0 = np.minimum(np.floor(sx).astype(np.int64), w - 2) if w > 1 else np.zeros_like(sx, dtype=np.int64)
        y0 = np.minimum(np.floor(sy).astype(np.int64), h - 2) if h > 1 else np.zeros_like(sy, dtype=np.int64)
        x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
        wx = (sx - x0).astype(np.float32)[:, :, None]
        wy = (sy - y0).astype(np.float32)[:, :, None]
        top = x[y0, x0] * (1 - wx) + x[y0, x1] * wx
        bottom = x[y1, x0] * (1 - wx) + x[y1, x1] * wx
        return top * (1 - wy) + bottom * wy

    def _color(self, x: np.ndarray, u) -> np.ndarray:
        grey = x.mean(axis=2, keepdims=True)
        if self.saturation > 0:
            x = grey + (x - grey) * np.float32(1 + (2 * u[10] - 1) * self.saturation)
        if self.hue > 0:
            # Rotation about the (1, 1, 1) axis by angle t (Rodrigues' formula).
            t = math.radians((2 * u[9] - 1) * self.hue)
            c, s = math.cos(t), math.sin(t)
            k = 1.0 / math.sqrt(3.0)
            kx = np.array([[0, -k, k], [k, 0, -k], [-k, k, 0]])
            rot = c * np.eye(3) + s * kx + (1 - c) * np.full((3, 3), k * k)
            x = x @ rot.T.astype(np.float32)
        return x
