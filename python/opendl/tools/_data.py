"""Dataset and DatasetSplit of the training tools.

A Dataset is an ordered list of images (files read on demand, or numpy arrays) with either one class label each
(``task`` 'classification'), one label image each, whose pixel values are class ids (``task``
'segmentation'), or boxes (``task`` 'detection': HALCON's rectangle1 or rectangle2 keys per image). A
DatasetSplit assigns its indices to 'train', 'validation' and 'test' (stratified per class for
classification, seeded). Both carry a fingerprint (SHA-256 of the image names or pixels and labels, and of
the assignment) by which a tool recognises the split it was trained with.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from .. import _proc
from ..errors import HOperatorError
from ..preprocess import _box_geometry


def _fraction(value, name: str, code: int, op: str) -> float:
    if not _proc.is_number(value) or not 0.0 <= float(value) <= 1.0:
        raise HOperatorError(code, f"{name} must be a fraction in [0, 1], got {value!r}", op)
    return float(value)


RECT1 = ("bbox_row1", "bbox_col1", "bbox_row2", "bbox_col2")
RECT2 = ("bbox_row", "bbox_col", "bbox_phi", "bbox_length1", "bbox_length2")


# Most classes a tool takes; segmentation class ids are pixel values of 8- or 16-bit label images.
_MAX_CLASSES = 65536
_MAX_CLASS_ID = {"segmentation": 65535, "classification": 2 ** 31 - 1, "detection": 2 ** 31 - 1}


def _checked_classes(class_names, class_ids, task: str, op: str, what: str = "") -> tuple:
    """class_names (distinct strings) and class_ids (distinct integers in [0, _MAX_CLASS_ID[task]]), one each
    per class, at least one."""
    lists = []
    for name, v in (("class_names", class_names), ("class_ids", class_ids)):
        v = [v] if isinstance(v, (str, int, np.integer)) else v
        if isinstance(v, (bytes, dict)) or not hasattr(v, "__iter__"):
            raise HOperatorError(1302, f"{what}{name} must be a list, got {type(v).__name__}", op)
        lists.append(list(v))
    names, ids = lists
    top = _MAX_CLASS_ID[task]
    if not all(isinstance(n, str) and n for n in names):
        raise HOperatorError(1302, f"{what}class_names must be non-empty strings, got {names[:8]!r}", op)
    if not all(_proc.is_int(c) and 0 <= c <= top for c in ids):
        raise HOperatorError(1303, f"{what}class_ids of a {task} dataset must be integers in [0, {top}], got "
                                   f"{ids[:8]!r}", op)
    if len(names) != len(ids) or not ids or len(ids) > _MAX_CLASSES:
        raise HOperatorError(1303, f"{what}{len(names)} class_names but {len(ids)} class_ids (one of each per class, "
                                   f"1 to {_MAX_CLASSES} classes)", op)
    for name, v in (("class_names", names), ("class_ids", ids)):
        seen = set()
        twice = [x for x in v if x in seen or seen.add(x)]
        if twice:
            raise HOperatorError(1302 if name == "class_names" else 1303,
                                 f"{what}{name} must be distinct; {twice[0]!r} appears more than once", op)
    return names, [int(c) for c in ids]


def _hash_arrays(h, arrays) -> None:
    for im in arrays:
        h.update(repr((im.shape, im.dtype.str)).encode())
        h.update(np.ascontiguousarray(im).tobytes())


def _relative_names(files: list) -> list:
    """The file names relative to the folder holding them all, so that a dataset's fingerprint does not depend
    on how its folder was named (absolute, relative, './'), the working directory or where the folder lies."""
    absolute = [os.path.abspath(os.fspath(f)) for f in files]
    if not absolute:
        return []
    root = os.path.commonpath(absolute)
    if root in absolute:  # one file (or one file named again and again): its folder
        root = os.path.dirname(root)
    return [os.path.relpath(a, root) for a in absolute]


class Dataset:
    """Images with one class label each (classification) or one label image each (segmentation). Build it with
    ``from_folder``, ``from_segmentation_folders``, ``from_dldataset`` or ``from_images``.

    ``class_names`` and ``class_ids`` list the classes. Classification: ``labels`` holds each image's class as
    an index into them. Segmentation: ``labels`` is None and ``label_image(i)`` returns image i's label image,
    an (H, W) array of class ids (values that are no class id must be ignore_class_ids of the tool).
    ``image(i)`` returns image i as a numpy array (read from its file when the dataset was built from files)."""

    def __init__(self, class_names, class_ids, labels=None, files=None, images=None, source: str = "",
                 label_files=None, label_images=None, boxes=None, instance_type: str = "rectangle1"):
        self.class_names = [str(c) for c in class_names]
        self.class_ids = [int(c) for c in class_ids]
        self.task = "segmentation" if label_files is not None or label_images is not None else \
            "detection" if boxes is not None else "classification"
        self.instance_type = instance_type if self.task == "detection" else None
        self._boxes = [dict(b) for b in boxes] if boxes is not None else None
        self.labels = np.asarray(labels, dtype=np.int64) if self.task == "classification" else None
        self._files = list(files) if files is not None else None
        self._images = images
        self._label_files = list(label_files) if label_files is not None else None
        self._label_images = label_images
        self.source = source
        h = hashlib.sha256()
        h.update(repr((self.task, self.class_names, self.class_ids)).encode())
        if self.labels is not None:
            h.update(self.labels.tobytes())
        if self._files is not None:
            h.update("\0".join(_relative_names(self._files)).encode())
        else:
            _hash_arrays(h, self._images)
        if self._label_files is not None:
            h.update(b"|labels|" + "\0".join(_relative_names(self._label_files)).encode())
        elif self._label_images is not None:
            h.update(b"|labels|")
            _hash_arrays(h, self._label_images)
        if self._boxes is not None:
            h.update(b"|boxes|" + repr((self.instance_type, self._boxes)).encode())
        self.fingerprint = h.hexdigest()

    def __len__(self) -> int:
        return len(self._files) if self._files is not None else len(self._images)

    def __repr__(self) -> str:
        kind = {"classification": "", "segmentation": " with label images",
                "detection": f" with {self.instance_type} boxes"}[self.task]
        return (f"Dataset({len(self)} images{kind}, classes {self.class_names}"
                + (f", from {self.source!r}" if self.source else "") + ")")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def image(self, index: int) -> np.ndarray:
        if self._files is not None:
            from ..images import read_image
            return read_image(self._files[index])
        return self._images[index]

    def label_image(self, index: int) -> np.ndarray:
        """Segmentation: the label image of image ``index`` as an (H, W) array of class ids."""
        if self.task != "segmentation":
            raise HOperatorError(1301, "this is a classification dataset; it has no label images",
                                 "Dataset.label_image")
        if self._label_files is not None:
            from ..images import read_image
            lab = read_image(self._label_files[index])
        else:
            lab = self._label_images[index]
        return lab[:, :, 0] if lab.ndim == 3 else lab

    def boxes(self, index: int) -> dict:
        """Detection: the boxes of image ``index``, a dict of 'bbox_label_id' (class ids) and the rectangle1
        ('bbox_row1', 'bbox_col1', 'bbox_row2', 'bbox_col2') or rectangle2 ('bbox_row', 'bbox_col', 'bbox_phi',
        'bbox_length1', 'bbox_length2') keys, lists of equal length, in the image's pixel coordinates."""
        if self.task != "detection":
            raise HOperatorError(1301, f"this is a {self.task} dataset; it has no boxes", "Dataset.boxes")
        return {k: list(v) for k, v in self._boxes[index].items()}

    @classmethod
    def from_coco(cls, coco_file, image_dir) -> "Dataset":
        """A detection dataset (rectangle1 boxes) from a COCO annotation file (HALCON's read_dl_dataset_from_coco);
        image file names are relative to ``image_dir``."""
        from ..datasets import read_dl_dataset_from_coco
        op = "Dataset.from_coco"
        coco_file, image_dir = _path(coco_file, "coco_file", 1201, op), _path(image_dir, "image_dir", 1202, op)
        ds = _proc.content(read_dl_dataset_from_coco(coco_file, image_dir, []), op, "coco_file")
        return cls._from_content(ds, op, coco_file)

    @classmethod
    def from_folder(cls, path, label_source: str = "last_folder") -> "Dataset":
        """Images found recursively under ``path``, labelled by HALCON's read_dl_dataset_classification rule
        ``label_source`` ('last_folder': the name of the folder holding the image; 'file_name',
        'file_name_remove_index'). Classes are sorted by name."""
        from ..datasets import read_dl_dataset_classification
        op = "Dataset.from_folder"
        path = _path(path, "path", 1201, op)
        ds = _proc.content(read_dl_dataset_classification(path, label_source), op, "path")
        return cls._from_content(ds, op, path)

    @classmethod
    def from_dldataset(cls, dldataset) -> "Dataset":
        """A HALCON classification DLDataset (dict handle or dict: 'image_dir', 'class_names', 'class_ids',
        'samples' with 'image_file_name' and 'image_label_id'), segmentation DLDataset ('segmentation_dir' and
        samples with 'image_file_name' and 'segmentation_file_name', as read_dl_dataset_segmentation makes) or
        detection DLDataset (samples with 'bbox_label_id' and the rectangle1 or rectangle2 keys)."""
        op = "Dataset.from_dldataset"
        return cls._from_content(_proc.content(dldataset, op, "dldataset"), op, "")

    @classmethod
    def _from_content(cls, ds: dict, op: str, source: str) -> "Dataset":
        names = _proc.as_tuple(_proc.require(ds, "class_names", op, "dldataset"))
        ids = _proc.as_tuple(_proc.require(ds, "class_ids", op, "dldataset"))
        image_dir, seg_dir = (_proc.get1(ds, k, "") or "" for k in ("image_dir", "segmentation_dir"))
        for k, v in (("image_dir", image_dir), ("segmentation_dir", seg_dir)):
            if not isinstance(v, str):
                raise HOperatorError(1301, f"dldataset[{k!r}] must be a directory name (a string), got {v!r}", op)
        samples = _proc.samples_of(ds, op)
        if not samples:
            raise HOperatorError(1301, "dldataset has no samples", op)
        segmentation = _proc.get1(samples[0], "segmentation_file_name") is not None
        task = "segmentation" if segmentation else "detection" if "bbox_label_id" in samples[0] else "classification"
        names, ids = _checked_classes(names, ids, task, op, "dldataset ")
        index = {c: k for k, c in enumerate(ids)}
        if task == "detection":
            return cls._detection_from_samples(names, ids, samples, image_dir, op, source)

        def join(directory, name):
            return os.path.join(directory, name) if directory else name

        files, labels, label_files = [], [], []
        for i, s in enumerate(samples):
            name = _file_name(s, "image_file_name", i, op)
            if segmentation:
                label = _file_name(s, "segmentation_file_name", i, op)
                if name is None or label is None:
                    raise HOperatorError(2894, f"dldataset sample {i} lacks 'image_file_name' or "
                                               "'segmentation_file_name' (sample 0 has a label image, so every "
                                               "sample needs one)", op)
                label_files.append(join(seg_dir, label))
            else:
                label = _proc.get1(s, "image_label_id")
                if name is None or label is None:
                    raise HOperatorError(2894, f"dldataset sample {i} lacks 'image_file_name' or 'image_label_id' "
                                               "(a classification or segmentation dataset is needed)", op)
                if not _proc.is_number(label) or label not in index:
                    raise HOperatorError(1301, f"dldataset sample {i} has image_label_id {label!r}, which is not "
                                               f"in class_ids {ids}", op)
                labels.append(index[label])
            files.append(join(image_dir, name))
        if segmentation:
            return cls(names, ids, files=files, label_files=label_files, source=source or image_dir)
        return cls(names, ids, labels, files=files, source=source or image_dir)

    @classmethod
    def _detection_from_samples(cls, names, ids, samples, image_dir, op, source) -> "Dataset":
        keys = RECT1 if "bbox_row1" in samples[0] else RECT2
        files, boxes = [], []
        for i, s in enumerate(samples):
            name = _file_name(s, "image_file_name", i, op)
            if name is None:
                raise HOperatorError(2894, f"dldataset sample {i} lacks 'image_file_name'", op)
            files.append(os.path.join(image_dir, name) if image_dir else name)
            boxes.append(cls._checked_boxes(s, keys, ids, f"dldataset sample {i}", op))
        return cls(names, ids, files=files, boxes=boxes, instance_type="rectangle1" if keys == RECT1 else
                   "rectangle2", source=source or image_dir)

    @staticmethod
    def _checked_boxes(s: dict, keys, ids, where: str, op: str) -> dict:
        out = {}
        for k in ("bbox_label_id",) + tuple(keys):
            if k not in s:
                raise HOperatorError(2894, f"{where} lacks {k!r} (an image without objects has empty lists)", op)
            v = _proc.as_tuple(s[k])
            if k == "bbox_label_id" and not all(_proc.is_int(x) for x in v):
                raise HOperatorError(1302, f"{where}: 'bbox_label_id' must hold class ids (integers), got {v!r}", op)
            if not all(_proc.is_number(x) and np.isfinite(x) for x in v):
                raise HOperatorError(1302, f"{where}: {k!r} must hold finite numbers, got {v!r}", op)
            out[k] = [int(x) for x in v] if k == "bbox_label_id" else [float(x) for x in v]
        n = len(out["bbox_label_id"])
        for k in keys:
            if len(out[k]) != n:
                raise HOperatorError(1302, f"{where}: {k!r} has {len(out[k])} values but 'bbox_label_id' {n}", op)
        bad = sorted(set(out["bbox_label_id"]) - set(ids))
        if bad:
            raise HOperatorError(1302, f"{where}: bbox_label_id {bad} not among the class_ids {ids}", op)
        try:
            _box_geometry(out, op, where)
        except HOperatorError as e:
            raise HOperatorError(1302, e.extended_error_message, op) from None
        return out

    @classmethod
    def from_segmentation_folders(cls, image_dir, label_dir, class_names, class_ids=None) -> "Dataset":
        """A segmentation dataset: the images in ``image_dir``, each paired with the label image of the same base
        name in ``label_dir`` (HALCON's read_dl_dataset_segmentation). ``class_ids`` default 0..K-1."""
        from ..datasets import read_dl_dataset_segmentation
        op = "Dataset.from_segmentation_folders"
        names = [class_names] if isinstance(class_names, str) else list(class_names)
        ids = list(range(len(names))) if class_ids is None else list(class_ids)
        image_dir, label_dir = _path(image_dir, "image_dir", 1201, op), _path(label_dir, "label_dir", 1202, op)
        ds = _proc.content(read_dl_dataset_segmentation(image_dir, label_dir, names, ids, [], [], []), op,
                           "image_dir")
        return cls._from_content(ds, op, image_dir)

    @classmethod
    def from_images(cls, images, labels, class_names=None, class_ids=None) -> "Dataset":
        """Images as numpy arrays ((H, W) or (H, W, C) each, or one (N, H, W[, C]) stack) with their labels.

        Classification: labels are class indices 0..K-1, or class names when ``class_names`` is given or the
        labels are strings. Segmentation: labels are label images (one (H, W) integer array per image, of the
        image's size, or an (N, H, W) stack) whose pixel values are class ids; ``class_ids`` default 0..K-1 for
        K ``class_names``, else the sorted values found in the label images; ``class_names`` default the ids
        as strings. Detection: labels are dicts of 'bbox_label_id' and the rectangle1 or rectangle2 keys (see
        ``boxes``), the same kind for every image; ``class_ids`` as for segmentation (default: the sorted ids
        found)."""
        op = "Dataset.from_images"
        if isinstance(images, np.ndarray) and images.ndim in (3, 4):
            images = list(images)
        for name, v, code in (("images", images, 1201), ("labels", labels, 1202)):
            if isinstance(v, (str, bytes, dict)) or not hasattr(v, "__iter__"):
                raise HOperatorError(code, f"{name} must be a list (one entry per image), got {type(v).__name__}", op)
        images = list(images)
        labels = list(labels)
        if len(images) != len(labels) or not images:
            raise HOperatorError(1302, f"{len(images)} images but {len(labels)} labels (both must be equal and > 0)",
                                 op)
        for i, im in enumerate(images):
            if not isinstance(im, np.ndarray) or im.ndim not in (2, 3) or min(im.shape[:2]) < 1:
                raise HOperatorError(1201, f"images[{i}] must be an (H, W) or (H, W, C) numpy array, got "
                                           f"{getattr(im, 'shape', type(im).__name__)}", op)
        if any(isinstance(v, np.ndarray) and v.ndim >= 2 for v in labels):
            return cls._segmentation_from_images(images, labels, class_names, class_ids, op)
        if any(isinstance(v, dict) for v in labels):
            if not all(isinstance(v, dict) for v in labels):
                raise HOperatorError(1302, "labels mix box dicts and other labels", op)
            keys = RECT1 if "bbox_row1" in labels[0] else RECT2
            if class_ids is None:  # the ids found; each box dict is checked against them below
                class_ids = sorted({c for v in labels for c in _proc.as_tuple(v.get("bbox_label_id", []))
                                    if _proc.is_int(c)})
            if class_names is None:
                class_names = [str(c) for c in class_ids]
            class_names, class_ids = _checked_classes(class_names, class_ids, "detection", op)
            boxes = [cls._checked_boxes(v, keys, class_ids, f"labels[{i}]", op) for i, v in enumerate(labels)]
            return cls(class_names, class_ids, images=images, boxes=boxes,
                       instance_type="rectangle1" if keys == RECT1 else "rectangle2")
        if class_ids is not None:
            raise HOperatorError(1304, "class_ids is for segmentation datasets (label images); classification "
                                       "labels are class indices or names", op)
        if class_names is None:
            if all(isinstance(v, str) for v in labels):
                class_names = sorted(set(labels))
            else:
                if not all(_proc.is_int(v) and 0 <= v < _MAX_CLASSES for v in labels):
                    raise HOperatorError(1302, f"labels must be class names or class indices 0..K-1 (K <= "
                                               f"{_MAX_CLASSES} classes), got {labels[:8]!r}", op)
                class_names = [str(k) for k in range(int(max(labels)) + 1)]
        class_names, _ = _checked_classes(class_names, list(range(len(_proc.as_tuple(class_names)))),
                                          "classification", op)
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

    @classmethod
    def _segmentation_from_images(cls, images, labels, class_names, class_ids, op: str) -> "Dataset":
        out = []
        for i, (im, lab) in enumerate(zip(images, labels)):
            lab = np.asarray(lab)
            if lab.ndim == 3 and lab.shape[2] == 1:
                lab = lab[:, :, 0]
            if lab.ndim != 2 or lab.shape != im.shape[:2]:
                raise HOperatorError(1302, f"labels[{i}] must be an (H, W) label image of the size of images[{i}] "
                                           f"{im.shape[:2]}, got shape {lab.shape}", op)
            if not (np.issubdtype(lab.dtype, np.integer) or np.all(lab == np.rint(lab))):
                raise HOperatorError(1302, f"labels[{i}] holds non-integer values; label image pixels are class "
                                           "ids", op)
            out.append(lab.astype(np.int64) if not np.issubdtype(lab.dtype, np.integer) else lab)
        if class_ids is None:
            if class_names is not None:
                class_ids = list(range(len(class_names)))
            else:
                class_ids = sorted(set(np.unique(np.concatenate([v.ravel() for v in out])).tolist()))
        if class_names is None:
            class_names = [str(c) for c in class_ids] if hasattr(class_ids, "__iter__") else [str(class_ids)]
        class_names, class_ids = _checked_classes(class_names, class_ids, "segmentation", op)
        return cls(class_names, class_ids, images=images, label_images=out)


def _path(value, name: str, code: int, op: str) -> str:
    if not isinstance(value, (str, os.PathLike)):
        raise HOperatorError(code, f"{name} must be a path (str or os.PathLike), got {type(value).__name__}", op)
    path = os.fspath(value)
    if not isinstance(path, str):
        raise HOperatorError(code, f"{name} must be a str path, got {type(path).__name__}", op)
    return path


def _file_name(sample: dict, key: str, i: int, op: str):
    """The file name under ``key`` of dldataset sample i (None when absent)."""
    name = _proc.get1(sample, key)
    if name is not None and (not isinstance(name, str) or not name):
        raise HOperatorError(1301, f"dldataset sample {i}: {key!r} must be a file name (a non-empty string), got "
                                   f"{name!r}", op)
    return name


class DatasetSplit:
    """Assigns a Dataset's images to 'train', 'validation' and 'test' (``train``, ``validation``, ``test``:
    sorted index arrays). Fractions are of each class (stratified; for a segmentation or detection dataset, of all
    images);
    a fraction left out is 0 and their sum must not exceed 1 (the rest stays unused). Per class of n images:
    round(n * train) go to train, round(n * validation) to validation and round(n * test) to test, each limited
    to what is left, taken from a permutation drawn with ``seed``."""

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
        # Classification: per class. Segmentation: an image holds several classes, so the images form one group.
        groups = dataset.labels if dataset.labels is not None else np.zeros(len(dataset), np.int64)
        for c in range(dataset.num_classes if dataset.labels is not None else 1):
            members = np.flatnonzero(groups == c)
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
