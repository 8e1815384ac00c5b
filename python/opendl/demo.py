"""The embedded demo dataset: generated industrial-inspection images, deterministic for a seed (no download).

Each image is a 64 x 64 byte image of a machined ring (a washer) lying on a textured conveyor belt, seen from
above under uneven light, at a random position, size, brightness and noise level. The four classes are what
an inspection system sorts washers into:

- 'good': an intact ring;
- 'scratch': a thin bright or dark line across the ring's surface;
- 'contamination': one to three dark spots (oil, dirt) on the ring;
- 'notch': a piece broken out of the outer edge.

write_demo_dataset(directory, ...) writes them as PNG files into one folder per class, as a HALCON user keeps a
classification dataset (read it with read_dl_dataset_classification(directory, 'last_folder')).
"""

from __future__ import annotations

import os

import numpy as np

CLASS_NAMES = ("good", "scratch", "contamination", "notch")


def make_demo_image(rng: np.random.Generator, label: str, size: int = 64) -> np.ndarray:
    """One (size, size) uint8 image of the given class."""
    if label not in CLASS_NAMES:
        raise ValueError(f"unknown demo class {label!r} (classes: {CLASS_NAMES})")
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    # Conveyor belt: dark, with a fine diagonal weave and a lighting gradient.
    belt = 40 + 8 * np.sin((xx + yy) * rng.uniform(0.8, 1.2)) + rng.uniform(-10, 10)
    light = 1 + rng.uniform(-0.25, 0.25) * (xx - size / 2) / size + rng.uniform(-0.25, 0.25) * (yy - size / 2) / size
    img = belt.copy()
    # The ring.
    cr, cc = size / 2 + rng.uniform(-5, 5), size / 2 + rng.uniform(-5, 5)
    outer = size * rng.uniform(0.30, 0.36)
    inner = outer * rng.uniform(0.35, 0.5)
    r = np.hypot(yy - cr, xx - cc)
    ring = (r <= outer) & (r >= inner)
    metal = rng.uniform(150, 200)
    img[ring] = metal + 12 * np.cos(np.arctan2(yy - cr, xx - cc) - rng.uniform(0, 2 * np.pi))[ring]  # sheen
    edge = (np.abs(r - outer) < 1.0) | (np.abs(r - inner) < 1.0)
    img[edge] = 0.5 * img[edge] + 0.5 * metal * 0.8
    if label == "scratch":
        a = rng.uniform(0, np.pi)
        off = rng.uniform(-0.6, 0.6) * outer
        dist = np.abs((xx - cc) * np.sin(a) - (yy - cr) * np.cos(a) - off)
        along = (xx - cc) * np.cos(a) + (yy - cr) * np.sin(a)
        half = rng.uniform(0.4, 0.9) * outer
        line = ring & (dist < rng.uniform(0.6, 1.3)) & (np.abs(along - rng.uniform(-0.3, 0.3) * outer) < half)
        img[line] += rng.choice([-1, 1]) * rng.uniform(55, 90)
    elif label == "contamination":
        for _ in range(rng.integers(1, 4)):
            ang, rad = rng.uniform(0, 2 * np.pi), rng.uniform(inner + 1.5, outer - 1.5)
            sr, sc = cr + rad * np.sin(ang), cc + rad * np.cos(ang)
            spot = np.hypot(yy - sr, xx - sc) <= rng.uniform(1.5, 3.2)
            img[spot & ring] = rng.uniform(40, 80)
    elif label == "notch":
        ang = rng.uniform(0, 2 * np.pi)
        depth = rng.uniform(0.25, 0.5) * (outer - inner)
        nr, nc = cr + outer * np.sin(ang), cc + outer * np.cos(ang)
        notch = np.hypot(yy - nr, xx - nc) <= depth + rng.uniform(1.5, 3.0)
        img[notch & ring] = belt[notch & ring]
    img = img * light + rng.normal(0, rng.uniform(3, 9), img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def write_demo_dataset(directory: str, num_per_class: int = 150, seed: int = 42, size: int = 64) -> str:
    """Writes num_per_class PNG images per class into directory/<class>/<class>_<index>.png; returns the
    directory. Same seed, same files."""
    from .images import write_image
    rng = np.random.default_rng(seed)
    for label in CLASS_NAMES:
        os.makedirs(os.path.join(directory, label), exist_ok=True)
    for i in range(num_per_class):
        for label in CLASS_NAMES:
            write_image(make_demo_image(rng, label, size), "png", 0, os.path.join(directory, label, f"{label}_{i:04d}.png"))
    return directory
