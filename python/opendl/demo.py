"""The embedded demo dataset: generated industrial-inspection images, deterministic for a seed (no download).

Classification: each image is a 64 x 64 byte image of a machined ring (a washer) lying on a textured conveyor belt, seen from
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


# ---------------------------------------------------------------- scenes for segmentation and multi-label

SEGMENTATION_CLASS_NAMES = ("background", "ring", "plate", "bracket")


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A textured surface: weave, blotches and a lighting gradient, grey values about 40..140."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    base = rng.uniform(60, 110)
    weave = rng.uniform(6, 14) * np.sin((xx * np.cos(a := rng.uniform(0, np.pi)) + yy * np.sin(a)) * rng.uniform(0.7, 1.4))
    blotch = np.zeros((size, size))
    for _ in range(4):
        cy, cx, r = rng.uniform(0, size, 2).tolist() + [rng.uniform(size / 8, size / 3)]
        blotch += rng.uniform(-15, 15) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    gradient = rng.uniform(-20, 20) * (xx / size - 0.5) + rng.uniform(-20, 20) * (yy / size - 0.5)
    return base + weave + blotch + gradient


def _shape_mask(rng: np.random.Generator, kind: int, size: int) -> np.ndarray:
    """The pixels of one part: 1 ring, 2 rotated rectangular plate, 3 L-shaped bracket."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    cy, cx = rng.uniform(0.2, 0.8, 2) * size
    s = size * rng.uniform(0.13, 0.2)
    if kind == 1:
        r = np.hypot(yy - cy, xx - cx)
        return (r <= s) & (r >= s * rng.uniform(0.4, 0.6))
    a = rng.uniform(0, np.pi)
    u = (xx - cx) * np.cos(a) + (yy - cy) * np.sin(a)
    v = -(xx - cx) * np.sin(a) + (yy - cy) * np.cos(a)
    if kind == 2:
        return (np.abs(u) <= s * 1.2) & (np.abs(v) <= s * 0.6)
    arm = s * 0.45
    return ((np.abs(v + s - arm) <= arm) & (np.abs(u) <= s)) | ((np.abs(u + s - arm) <= arm) & (np.abs(v) <= s))


def make_segmentation_scene(rng: np.random.Generator, size: int = 64, classes=None) -> tuple:
    """A textured (size, size) uint8 image with parts of the classes 1 (ring), 2 (plate) and 3 (bracket) and
    its label image (uint8 class ids, 0 = background). `classes` lists the part classes to place (each once);
    None places each class with probability 0.6. Parts are placed so that they hardly overlap; their grey
    values overlap across classes, so the shape tells the class."""
    if classes is None:
        classes = [k for k in (1, 2, 3) if rng.random() < 0.6]
    img = _texture(rng, size)
    label = np.zeros((size, size), np.uint8)
    taken = np.zeros((size, size), bool)
    for k in rng.permutation(np.asarray(classes, dtype=np.int64)).tolist():
        for _ in range(20):  # parts touch at most slightly: the placement is retried while it overlaps much
            m = _shape_mask(rng, int(k), size)
            if (m & taken).sum() <= 0.05 * m.sum():
                break
        img[m] = rng.uniform(150, 215) + rng.normal(0, 6, int(m.sum()))
        label[m] = k
        taken |= m
    img = img + rng.normal(0, rng.uniform(3, 8), img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8), label


def make_multi_label_image(rng: np.random.Generator, size: int = 64) -> tuple:
    """A scene as make_segmentation_scene and the sorted list of part classes (1..3) visible in it."""
    img, label = make_segmentation_scene(rng, size)
    return img, sorted(int(k) for k in np.unique(label) if k != 0)


def make_edge_scene(rng: np.random.Generator, size: int = 64) -> tuple:
    """A textured uint8 image crossed by 2 to 4 thin scratches (straight lines and circular arcs, one pixel
    wide, brighter or darker than the surface) and its label image: 1 on scratch pixels, 0 elsewhere."""
    img = _texture(rng, size)
    label = np.zeros((size, size), np.uint8)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    for _ in range(rng.integers(2, 5)):
        if rng.random() < 0.5:
            a, off = rng.uniform(0, np.pi), rng.uniform(-0.35, 0.35) * size
            d = (xx - size / 2) * np.sin(a) - (yy - size / 2) * np.cos(a) - off
        else:
            cy, cx = rng.uniform(0, size, 2)
            d = np.hypot(yy - cy, xx - cx) - rng.uniform(size / 6, size / 2)
        line = np.abs(d) < 0.5
        img[line] += rng.choice([-1, 1]) * rng.uniform(35, 60)
        label[line] = 1
    img = img + rng.normal(0, rng.uniform(2, 5), img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8), label


def write_demo_segmentation_dataset(directory: str, num_images: int = 400, seed: int = 42, size: int = 64) -> str:
    """Writes num_images scenes of make_segmentation_scene as directory/images/scene_<index>.png and their label
    images (pixel value = class id of SEGMENTATION_CLASS_NAMES) as directory/labels/scene_<index>.png; returns
    the directory. Read it with read_dl_dataset_segmentation(directory + '/images', directory + '/labels',
    SEGMENTATION_CLASS_NAMES, [0, 1, 2, 3], [], [], [])."""
    from .images import write_image
    rng = np.random.default_rng(seed)
    for sub in ("images", "labels"):
        os.makedirs(os.path.join(directory, sub), exist_ok=True)
    for i in range(num_images):
        img, label = make_segmentation_scene(rng, size)
        write_image(img, "png", 0, os.path.join(directory, "images", f"scene_{i:04d}.png"))
        write_image(label, "png", 0, os.path.join(directory, "labels", f"scene_{i:04d}.png"))
    return directory


def detection_boxes(label: np.ndarray) -> list:
    """(class id, row1, col1, row2, col2) of each part of a make_segmentation_scene label image: the rectangle1
    enclosing its pixels (pixel centres at integer coordinates, so the edges lie half a pixel outside them)."""
    out = []
    for k in (1, 2, 3):
        rr, cc = np.nonzero(label == k)
        if rr.size:
            out.append((k, float(rr.min()) - 0.5, float(cc.min()) - 0.5, float(rr.max()) + 0.5, float(cc.max()) + 0.5))
    return out


def write_demo_detection_dataset(directory: str, num_images: int = 400, seed: int = 42, size: int = 64) -> str:
    """Writes num_images scenes of make_segmentation_scene as directory/images/scene_<index>.png and the boxes of
    their parts (classes 1 ring, 2 plate, 3 bracket) as the COCO file directory/annotations.json; returns the
    directory. Read it with read_dl_dataset_from_coco(directory + '/annotations.json', directory + '/images', [])."""
    import json

    from .images import write_image
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(directory, "images"), exist_ok=True)
    images, annotations = [], []
    for i in range(num_images):
        img, label = make_segmentation_scene(rng, size)
        name = f"scene_{i:04d}.png"
        write_image(img, "png", 0, os.path.join(directory, "images", name))
        images.append({"id": i + 1, "file_name": name, "width": size, "height": size})
        for k, r1, c1, r2, c2 in detection_boxes(label):
            # COCO: [x, y, width, height] from the top-left pixel corner
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": k, "iscrowd": 0,
                                "bbox": [c1 + 0.5, r1 + 0.5, c2 - c1, r2 - r1], "area": (c2 - c1) * (r2 - r1)})
    categories = [{"id": k, "name": SEGMENTATION_CLASS_NAMES[k]} for k in (1, 2, 3)]
    with open(os.path.join(directory, "annotations.json"), "w", encoding="utf-8") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)
    return directory
