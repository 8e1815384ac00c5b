"""Dataset and DatasetSplit of the training tools.

A Dataset is an ordered list of images (files read on demand, or numpy arrays) with one class label each; a
DatasetSplit assigns its indices to 'train', 'validation' and 'test', stratified per class and seeded. Both
carry a fingerprint (SHA-256 of the image names or pixels and labels, and of the assignment) by which a tool
recognises the split it was trained with.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from .. import _proc
from ..errors import HOperatorError


def _fraction(value, name: str, code: int, op: str) -> float:
    if not _proc.is_number(value) or not 0.0 <= float(value) <= 1.0:
        raise HOperatorError(code, f"{name} must be a fraction in [0, 1], got {value!r}", op)
    return float(value)


class Dataset:
    """Images with one class label each. Build it with ``from_folder``, ``from_dldataset`` or ``from_images``.

    ``class_names`` and ``class_ids`` list the classes; ``labels`` holds each image's class as an index into
    them. ``image(i)`` returns image i as a numpy array (read from its file when the dataset was built from
    files)."""

    def __init__(self, class_names, class_ids, labels, files=None, images=None, source: str = ""):
        self.class_names = [str(c) for c in class_names]
        self.class_ids = [int(c) for c in class_ids]
        self.labels = np.asarray(labels, dtype=np.int64)
        self._files = list(files) if files is not None else None
        self._images = images
        self.source = source
        h = hashlib.sha256()
        h.update(repr((self.class_names, self.class_ids)).encode())
        h.update(self.labels.tobytes())
        if self._files is not None:
            h.update("\0".join(self._files).encode())
        else:
            for im in self._images:
                h.update(repr((im.shape, im.dtype.str)).encode())
                h.update(np.ascontiguousarray(im).tobytes())
        self.fingerprint = h.hexdigest()

    def __len__(self) -> int:
        return int(self.labels.size)

    def __repr__(self) -> str:
        return (f"Dataset({len(self)} images, classes {self.class_names}"
                + (f", from {self.source!r}" if self.source else "") + ")")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def image(self, index: int) -> np.ndarray:
        if self._files is not None:
            from ..images import read_image
            return read_image(self._files[index])
        return self._images[index]

    @classmethod
    def from_folder(cls, path, label_source: str = "last_folder") -> "Dataset":
        """Images found recursively under ``path``, labelled by HALCON's read_dl_dataset_classification rule
        ``label_source`` ('last_folder': the name of the folder holding the image; 'file_name',
        'file_name_remove_index'). Classes are sorted by name."""
        from ..datasets import read_dl_dataset_classification
        ds = _proc.content(read_dl_dataset_classification(os.fspath(path), label_source), "Dataset.from_folder",
                           "path")
        return cls._from_content(ds, "Dataset.from_folder", os.fspath(path))

    @classmethod
    def from_dldataset(cls, dldataset) -> "Dataset":
        """A HALCON classification DLDataset (dict handle or dict: 'image_dir', 'class_names', 'class_ids',
        'samples' with 'image_file_name' and 'image_label_id')."""
        op = "Dataset.from_dldataset"
        return cls._from_content(_proc.content(dldataset, op, "dldataset"), op, "")

    @classmethod
    def _from_content(cls, ds: dict, op: str, source: str) -> "Dataset":
        names = [str(n) for n in _proc.require(ds, "class_names", op, "dldataset")]
        ids = [int(i) for i in _proc.require(ds, "class_ids", op, "dldataset")]
        if len(names) != len(ids) or not ids:
            raise HOperatorError(1301, f"dldataset has {len(names)} class_names but {len(ids)} class_ids", op)
        index = {c: k for k, c in enumerate(ids)}
        image_dir = _proc.get1(ds, "image_dir", "") or ""
        files, labels = [], []
        for i, s in enumerate(_proc.samples_of(ds, op)):
            name = _proc.get1(s, "image_file_name")
            label = _proc.get1(s, "image_label_id")
            if name is None or label is None:
                raise HOperatorError(2894, f"dldataset sample {i} lacks 'image_file_name' or 'image_label_id' "
                                           "(a classification dataset is needed)", op)
            if label not in index:
                raise HOperatorError(1301, f"dldataset sample {i} has image_label_id {label!r}, which is not in "
                                           f"class_ids {ids}", op)
            files.append(os.path.join(image_dir, name) if image_dir else name)
            labels.append(index[label])
        if not files:
            raise HOperatorError(1301, "dldataset has no samples", op)
        return cls(names, ids, labels, files=files, source=source or image_dir)

    @classmethod
    def from_images(cls, images, labels, class_names=None) -> "Dataset":
        """Images as numpy arrays ((H, W) or (H, W, C) each, or one (N, H, W[, C]) stack) with their labels:
        class indices 0..K-1, or class names when ``class_names`` is given or the labels are strings."""
        op = "Dataset.from_images"
        if isinstance(images, np.ndarray) and images.ndim in (3, 4):
            images = list(images)
        images = list(images)
        labels = list(labels)
        if len(images) != len(labels) or not images:
            raise HOperatorError(1302, f"{len(images)} images but {len(labels)} labels (both must be equal and > 0)",
                                 op)
        for i, im in enumerate(images):
            if not isinstance(im, np.ndarray) or im.ndim not in (2, 3) or min(im.shape[:2]) < 1:
                raise HOperatorError(1201, f"images[{i}] must be an (H, W) or (H, W, C) numpy array, got "
                                           f"{getattr(im, 'shape', type(im).__name__)}", op)
        if class_names is None:
            if all(isinstance(v, str) for v in labels):
                class_names = sorted(set(labels))
            else:
                if not all(_proc.is_int(v) and v >= 0 for v in labels):
                    raise HOperatorError(1302, "labels must be class indices >= 0 or class names", op)
                class_names = [str(k) for k in range(int(max(labels)) + 1)]
        class_names = [str(c) for c in class_names]
        index = {c: k for k, c in enumerate(class_names)}
        out = []
        for i, v in enumerate(labels):
            if isinstance(v, str):
                if v not in index:
                    raise HOperatorError(1302, f"labels[{i}] {v!r} is not one of class_names {class_names}", op)
                out.append(index[v])
            elif _proc.is_int(v) and 0 <= v < len(class_names):
                out.append(int(v))
            else:
                raise HOperatorError(1302, f"labels[{i}] {v!r} is not a class index in 0..{len(class_names) - 1}",
                                     op)
        return cls(class_names, range(len(class_names)), out, images=images)


class DatasetSplit:
    """Assigns a Dataset's images to 'train', 'validation' and 'test' (``train``, ``validation``, ``test``:
    sorted index arrays). Fractions are of each class (stratified); a fraction left out is 0 and their sum must
    not exceed 1 (the rest stays unused). Per class of n images: round(n * train) go to train,
    round(n * validation) to validation and round(n * test) to test, each limited to what is left, taken from
    a permutation drawn with ``seed``."""

    def __init__(self, dataset: Dataset, train=0.0, validation=0.0, test=0.0, seed: int = 1):
        op = "DatasetSplit"
        if not isinstance(dataset, Dataset):
            raise HOperatorError(1201, f"dataset must be an opendl.tools.Dataset, got {type(dataset).__name__}", op)
        fr = [_fraction(train, "train", 1302, op), _fraction(validation, "validation", 1303, op),
              _fraction(test, "test", 1304, op)]
        if sum(fr) > 1.0 + 1e-9:
            raise HOperatorError(1302, f"train + validation + test = {sum(fr):g} exceeds 1", op)
        if not _proc.is_int(seed) or seed < 0:
            raise HOperatorError(1305, f"seed must be an integer >= 0, got {seed!r}", op)
        gen = np.random.Generator(np.random.PCG64(int(seed)))
        parts = [[], [], []]
        for c in range(dataset.num_classes):
            members = np.flatnonzero(dataset.labels == c)
            members = members[gen.permutation(members.size)]
            start = 0
            for k, f in enumerate(fr):
                take = min(int(np.floor(members.size * f + 0.5)), members.size - start)
                parts[k].extend(members[start:start + take].tolist())
                start += take
        self.dataset = dataset
        self.fractions = tuple(fr)
        self.seed = int(seed)
        self.train, self.validation, self.test = (np.asarray(sorted(p), dtype=np.int64) for p in parts)
        self.fingerprint = split_fingerprint(dataset.fingerprint, self.train, self.validation, self.test)

    def __repr__(self) -> str:
        return (f"DatasetSplit(train={self.train.size}, validation={self.validation.size}, test={self.test.size}, "
                f"seed={self.seed})")


def split_fingerprint(dataset_fingerprint: str, train, validation, test) -> str:
    h = hashlib.sha256(dataset_fingerprint.encode())
    for part in (train, validation, test):
        h.update(b"|")
        h.update(np.asarray(part, dtype=np.int64).tobytes())
    return h.hexdigest()
