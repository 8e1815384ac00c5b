"""Segmenter: supervised semantic segmentation trained in the background (the tool machinery is _Tool's)."""

from __future__ import annotations

import math

import numpy as np

from .. import _proc
from ..errors import HOperatorError
from ._data import Dataset
from ._tool import _Tool, _model_from_bytes

_WRONG_VALUES = 7791


class Segmenter(_Tool):
    """A semantic segmentation tool: every pixel gets a class. Trains on a segmentation Dataset (label images of
    class ids: ``Dataset.from_segmentation_folders``, ``Dataset.from_images`` with label images, or
    ``Dataset.from_dldataset`` of a HALCON segmentation DLDataset).

    ``model``: 'pretrained_dl_segmentation_compact.hdl' (default), 'pretrained_dl_segmentation_enhanced.hdl',
    'pretrained_dl_edge_extractor.hdl' or an opendl segmentation model file. ``image_size`` (width, height),
    ``image_num_channels``, ``solver_type``, ``learning_rate``, ``early_stopping_patience``, ``max_iterations``:
    as for the Classifier.

    ``ignore_class_ids``: label values that are not classes; their pixels take no part in the loss nor in the
    validation measures (e.g. 255 on uncertain borders). Every label pixel must be a class id or one of these.

    ``class_weights`` (per-pixel loss weight of each class):
    - 'inverse_frequency' (default, as HALCON's preprocess_dl_dataset): from the pixel counts n_c of the training
      images, w_c = min(max_class_weight, N / (K * n_c)) for K counted classes and N counted pixels; a class
      without training pixels gets max_class_weight. Computed once, at the first training of the tool.
    - None: the model's own class_weights (the edge extractor's are [1, 8]).
    - a list of one non-negative number per class, in class_ids order.
    The core scales the weights of a batch so that the mean pixel weight is 1.

    Label images are zoomed to the model's image size with nearest-neighbour sampling; geometric augmentation
    moves them with their images (nearest neighbour as well), intensity augmentation leaves them alone.

    Validation measures per iteration (over the validation pixels whose label is a class id; spec C.10):
    'mean_iou', 'class_iou' (-1 for a class without validation pixels, left out of the mean), 'pixel_accuracy',
    'mean_accuracy', 'frequency_weighted_iou'; 'validation_error' = 1 - mean_iou (so the best iteration and
    early stopping follow the mean IoU) and 'validation_loss' = mean pixel cross-entropy (unweighted).

    ``apply`` gives per image 'segmentation_image' (class id per pixel, uint8, or int32 when a class id exceeds
    255) and 'segmentation_confidence' (the winning class's probability, float32), both of the size of the image
    as given: the class probabilities are zoomed bilinearly from the model's size before the arg-max."""

    TYPE = "segmentation"
    TASK = "segmentation"
    DEFAULT_MODEL = "pretrained_dl_segmentation_compact.hdl"
    LABEL_IMAGES = True

    def __init__(self, model: str = DEFAULT_MODEL, image_size=None, image_num_channels=None,
                 solver_type: str = "adam", learning_rate=None, early_stopping_patience: int = 10,
                 max_iterations: int = 200, ignore_class_ids=(), class_weights="inverse_frequency",
                 max_class_weight: float = 1000.0):
        super().__init__(model, image_size, image_num_channels, solver_type, learning_rate,
                         early_stopping_patience, max_iterations)
        op = "Segmenter"
        ignore = list(ignore_class_ids) if isinstance(ignore_class_ids, (list, tuple, np.ndarray)) \
            else [ignore_class_ids]
        if not all(_proc.is_int(c) and c >= 0 for c in ignore) or len(set(ignore)) != len(ignore):
            raise HOperatorError(1308, f"ignore_class_ids must be distinct integers >= 0, got {ignore_class_ids!r}",
                                 op)
        if isinstance(class_weights, str):
            if class_weights != "inverse_frequency":
                raise HOperatorError(1309, "class_weights must be 'inverse_frequency', None or one number >= 0 per "
                                           f"class, got {class_weights!r}", op)
        elif class_weights is not None:
            weights = list(class_weights) if isinstance(class_weights, (list, tuple, np.ndarray)) else None
            if not weights or not all(_proc.is_number(w) and 0 <= w < math.inf for w in weights) or \
                    not any(w > 0 for w in weights):
                raise HOperatorError(1309, "class_weights must be 'inverse_frequency', None or one finite number "
                                           f">= 0 per class (not all 0), got {class_weights!r}", op)
            class_weights = [float(w) for w in weights]
        if not _proc.is_number(max_class_weight) or not 0 < max_class_weight < math.inf:
            raise HOperatorError(1310, f"max_class_weight must be a finite number > 0, got {max_class_weight!r}", op)
        self._settings.update({"ignore_class_ids": [int(c) for c in ignore], "class_weights": class_weights,
                               "max_class_weight": float(max_class_weight)})

    @property
    def ignore_class_ids(self) -> list:
        return list(self._settings["ignore_class_ids"])

    @property
    def class_weights(self):
        """The class weights the model trains with (after the first training; None before)."""
        from ..model import get_dl_model_param
        with self._state_lock:
            data = self._train_bytes if self._train_bytes is not None else self._best_bytes
        if data is None:
            return None
        model = _model_from_bytes(data)
        try:
            return [float(w) for w in get_dl_model_param(model, "class_weights")]
        finally:
            model.clear()

    # ------------------------------------------------------------------ training data

    def _check_dataset(self, dataset: Dataset, op: str) -> None:
        s = self._settings
        both = sorted(set(s["ignore_class_ids"]) & set(dataset.class_ids))
        if both:
            raise HOperatorError(1308, f"ignore_class_ids {both} are also class_ids of the dataset "
                                       f"{dataset.class_ids}", op)
        weights = s["class_weights"]
        if isinstance(weights, list) and len(weights) != len(dataset.class_ids):
            raise HOperatorError(1309, f"class_weights has {len(weights)} values, but the dataset has "
                                       f"{len(dataset.class_ids)} classes {dataset.class_names}", op)

    def _configure_model(self, model, dataset: Dataset, op: str) -> None:
        from ..model import set_dl_model_param
        set_dl_model_param(model, "ignore_class_ids", self._settings["ignore_class_ids"])
        if isinstance(self._settings["class_weights"], list):
            set_dl_model_param(model, "class_weights", self._settings["class_weights"])

    def _label_values(self, dataset: Dataset, i: int, lab: np.ndarray, shape, op: str) -> np.ndarray:
        """Label image ``lab`` of image i checked (size, values) and zoomed (nearest) to the model's size."""
        from ..preprocess import zoom_nearest
        where = f"label image {i}" + (f" ({dataset._label_files[i]!r})" if dataset._label_files else "")
        if lab.shape[:2] != tuple(shape[:2]):
            raise HOperatorError(1302, f"{where} has size {lab.shape[:2]}, its image {tuple(shape[:2])}", op)
        values = np.unique(lab)
        allowed = np.asarray(dataset.class_ids + self._settings["ignore_class_ids"], np.float64)
        bad = values[~np.isin(values.astype(np.float64), allowed)]
        if bad.size:
            raise HOperatorError(_WRONG_VALUES, f"{where} holds values {bad[:8].tolist()} that are neither class_ids "
                                                f"{dataset.class_ids} nor ignore_class_ids "
                                                f"{self._settings['ignore_class_ids']}", op)
        w, h = self._settings["image_size"]
        return zoom_nearest(lab, w, h).astype(np.int32)

    def _prepared(self, dataset: Dataset, indices) -> np.ndarray:
        """Images and label images are read in one pass, so each file is decoded once."""
        op = "Segmenter.train"

        def prepare(chunk):
            images = [dataset.image(i) for i in chunk]
            labels = self._cache.setdefault("labels", {})
            for i, im in zip(chunk, images):
                labels[i] = self._label_values(dataset, i, dataset.label_image(i), im.shape, op)
            return self._preprocess(images, op)

        return self._cached("images", dataset, indices, prepare)

    def _labels(self, dataset: Dataset, indices) -> np.ndarray:
        op = "Segmenter.train"
        return self._cached("labels", dataset, indices, lambda chunk: [
            self._label_values(dataset, i, dataset.label_image(i), dataset.image(i).shape, op) for i in chunk])

    def _before_training(self, model, y_train) -> None:
        from ..model import set_dl_model_param
        from ..preprocess import inverse_frequency_class_weights
        s = self._settings
        if s["class_weights"] != "inverse_frequency" or self._metrics:
            return
        counts = {c: 0 for c in self._class_ids}
        for lab in y_train:
            values, n = np.unique(lab, return_counts=True)
            for v, c in zip(values.tolist(), n.tolist()):
                if v in counts:          # the others are ignore_class_ids
                    counts[v] += c
        weights = inverse_frequency_class_weights(counts, self._class_ids, [], s["max_class_weight"])
        set_dl_model_param(model, "class_weights", [weights[c] for c in self._class_ids])

    def _samples(self, images, labels) -> list:
        return [{"image": images[k] if images.shape[-1] > 1 else images[k][:, :, 0],
                 "segmentation_image": labels[k]} for k in range(len(labels))]

    # ------------------------------------------------------------------ measures and results

    def _confidences(self, model, x):
        """Yields (index, (H, W, K) class probabilities in class_ids order) for the preprocessed images x, in
        chunks of the model's batch size."""
        from ..model import get_dl_model_param
        b = get_dl_model_param(model, "batch_size")[0]
        core = model.core("Segmenter")
        for start in range(0, len(x), b):
            chunk = x[start:start + b]
            res = core.apply([{"image": im if im.shape[-1] > 1 else im[:, :, 0]} for im in chunk],
                             ["segmentation_confidences"])
            for r, d in enumerate(res):
                yield start + r, np.asarray(d["segmentation_confidences"], np.float32)

    def _validation_metrics(self, model, x, y) -> dict:
        from ..evaluation import segmentation_measures
        k = len(self._class_ids)
        lut = np.full(max(self._class_ids + self._settings["ignore_class_ids"]) + 1, -1, np.int64)
        lut[self._class_ids] = np.arange(k)
        cm = np.zeros((k, k), np.int64)
        loss_sum, pixels = 0.0, 0
        for i, p in self._confidences(model, x):
            gt = lut[y[i]]
            valid = gt >= 0
            pred = p.argmax(axis=2)
            cm += np.bincount(pred[valid] * k + gt[valid], minlength=k * k).reshape(k, k)
            pt = np.take_along_axis(p, np.maximum(gt, 0)[:, :, None], axis=2)[:, :, 0]
            loss_sum += float(-np.log(np.maximum(pt[valid].astype(np.float64), 1e-30)).sum())
            pixels += int(valid.sum())
        m = segmentation_measures(cm, ["mean_iou", "class_iou", "pixel_accuracy", "mean_accuracy",
                                       "frequency_weighted_iou"])
        m["validation_error"] = 1.0 - m["mean_iou"] if m["mean_iou"] >= 0 else 1.0
        m["validation_loss"] = loss_sum / pixels if pixels else 0.0
        return m

    def _results(self, model, x, images) -> list:
        from ..preprocess import zoom_linear
        ids = np.asarray(self._class_ids)
        dtype = np.uint8 if ids.max() <= 255 else np.int32
        out = []
        for i, p in self._confidences(model, x):
            h, w = images[i].shape[:2]
            if p.shape[:2] != (h, w):
                p = zoom_linear(p, w, h)
            k = p.argmax(axis=2)
            out.append({"segmentation_image": ids[k].astype(dtype),
                        "segmentation_confidence": np.take_along_axis(p, k[:, :, None], axis=2)[:, :, 0]
                        .astype(np.float32)})
        return out
