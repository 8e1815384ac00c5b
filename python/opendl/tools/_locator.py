"""Locator: object detection (boxes) trained in the background (the tool machinery is _Tool's)."""

from __future__ import annotations

import numpy as np

from ..errors import HOperatorError
from ._data import RECT1, RECT2, Dataset
from ._tool import _Tool

# create_dl_model_detection keys the Locator sets itself.
_TOOL_KEYS = ("image_width", "image_height", "image_num_channels", "image_dimensions", "instance_type", "class_ids",
              "class_names", "num_classes", "backbone", "capacity")
_VALIDATION_CONFIDENCE = 0.05
_IOU_THRESHOLDS = [round(0.5 + 0.05 * k, 2) for k in range(10)]


class Locator(_Tool):
    """An object detection tool: finds the objects of each class in an image as boxes (HALCON's rectangle1, or
    rectangle2 for oriented boxes). Trains on a detection Dataset (``Dataset.from_coco``, ``Dataset.from_images``
    with box dicts, or ``Dataset.from_dldataset`` of a HALCON detection DLDataset); the instance type follows the
    dataset.

    ``model``: the backbone, a built-in classifier name (default 'pretrained_dl_classifier_compact.hdl') or a
    classifier model file; the tool builds the detector with create_dl_model_detection. ``capacity``: 'high',
    'medium' (default) or 'low'. ``detection_param``: further keys of create_dl_model_detection's
    dlmodel_detection_param (min_level, max_level, anchor_num_subscales, anchor_aspect_ratios, anchor_angles,
    ignore_direction, class_ids_no_orientation, class_weights, min_confidence, max_overlap,
    max_overlap_class_agnostic, max_num_detections, ...). ``image_size`` (width, height): default the dataset's
    image size when all its images have one size, else the backbone's. ``image_num_channels``, ``solver_type``,
    ``learning_rate``, ``early_stopping_patience``, ``max_iterations``: as for the Classifier.

    Boxes are given in the image's pixel coordinates (HALCON's: pixel centres at integer positions) and scaled
    to the model's size with the image; geometric augmentation moves them with the image (DataAugmentation).

    Validation measures per iteration (COCO's 101-point AP, as evaluate_dl_model computes it, with every
    detection of confidence >= 0.05): 'mean_ap' (mean over the classes with validation boxes of the AP averaged
    over IoU 0.5, 0.55, ..., 0.95), 'ap_50', 'ap_75' (mean class AP at IoU 0.5 / 0.75), 'class_ap' (per class in
    class_ids order, -1 without validation boxes), for oriented boxes with their heading also 'mean_soap';
    'validation_error' = 1 - mean_ap, so the best iteration and early stopping follow the mean AP.

    ``apply`` gives per image the DLResult keys of the model (bbox_row1, bbox_col1, bbox_row2, bbox_col2 or
    bbox_row, bbox_col, bbox_phi, bbox_length1, bbox_length2, with bbox_class_id, bbox_class_name,
    bbox_confidence) in the coordinates of the image as given, for detections of confidence >= the model's
    min_confidence (default 0.5; set it with detection_param)."""

    TYPE = "detection"
    TASK = "detection"
    DEFAULT_MODEL = "pretrained_dl_classifier_compact.hdl"
    BOXES = True

    def __init__(self, model: str = DEFAULT_MODEL, image_size=None, image_num_channels=None,
                 solver_type: str = "adam", learning_rate=None, early_stopping_patience: int = 10,
                 max_iterations: int = 200, capacity: str = "medium", detection_param=None):
        super().__init__(model, image_size, image_num_channels, solver_type, learning_rate,
                         early_stopping_patience, max_iterations)
        op = "Locator"
        if capacity not in ("high", "medium", "low"):
            raise HOperatorError(1308, f"capacity must be 'high', 'medium' or 'low', got {capacity!r}", op)
        param = dict(detection_param or {})
        if not all(isinstance(k, str) for k in param):
            raise HOperatorError(1309, "detection_param must be a dict with string keys", op)
        taken = sorted(set(param) & set(_TOOL_KEYS))
        if taken:
            raise HOperatorError(1309, f"detection_param keys {taken} are set by the Locator itself (image_size, "
                                       "image_num_channels, capacity, model, and the dataset's classes and instance "
                                       "type)", op)
        plain = {}
        for k, v in param.items():
            v = list(v) if isinstance(v, (list, tuple, np.ndarray)) else v
            items = [x.item() if isinstance(x, np.generic) else x for x in (v if isinstance(v, list) else [v])]
            if not all(isinstance(x, (str, int, float)) and not isinstance(x, bool) for x in items):
                raise HOperatorError(1309, f"detection_param[{k!r}] must be numbers or strings, got {v!r}", op)
            plain[k] = items if isinstance(v, list) else items[0]
        self._settings.update({"capacity": capacity, "detection_param": plain})

    @property
    def instance_type(self):
        """'rectangle1' or 'rectangle2' once trained (from the dataset), else None."""
        return self._settings.get("instance_type")

    # ------------------------------------------------------------------ model and training data

    def _new_model(self, dataset: Dataset, shapes: set, op: str):
        from ..model import create_dl_model_detection, get_dl_model_param, read_dl_model
        s = self._settings
        if s["image_size"] is None:
            sizes = {(w, h) for w, h, _ in shapes}
            if len(sizes) == 1:
                s["image_size"] = list(sizes.pop())
            else:
                backbone = read_dl_model(s["model"])
                s["image_size"] = [get_dl_model_param(backbone, "image_width")[0],
                                   get_dl_model_param(backbone, "image_height")[0]]
                backbone.clear()
        if s["image_num_channels"] is None:
            s["image_num_channels"] = 1 if all(c == 1 for _, _, c in shapes) else 3
        param = dict(s["detection_param"])
        param.update({"image_dimensions": [s["image_size"][0], s["image_size"][1], s["image_num_channels"]],
                      "instance_type": dataset.instance_type, "class_ids": dataset.class_ids,
                      "class_names": dataset.class_names, "capacity": s["capacity"]})
        try:
            model = create_dl_model_detection(s["model"], len(dataset.class_ids), param)
        except HOperatorError as e:  # name the tool's setting, not the operator it calls
            raise HOperatorError(e.error_code, f"Locator detection_param (with the dataset's classes and image size): "
                                               f"{e.extended_error_message}", op) from None
        s["instance_type"] = dataset.instance_type
        return model

    def _scaled_boxes(self, dataset: Dataset, i: int, shape, op: str) -> dict:
        """Image i's boxes in the model's pixel coordinates (``shape``: the image's (H, W[, C]))."""
        from ..preprocess import _scale_boxes
        d = dataset.boxes(i)
        _scale_boxes(d, shape[:2], self._preprocess_param(), op, f"image {i}")
        return {k: list(d[k]) for k in ("bbox_label_id",) + (RECT1 if "bbox_row1" in d else RECT2)}

    def _prepared(self, dataset: Dataset, indices) -> np.ndarray:
        """Images and boxes in one pass, so each file is decoded once."""
        op = "Locator.train"

        def prepare(chunk):
            images = [dataset.image(i) for i in chunk]
            boxes = self._cache.setdefault("labels", {})
            for i, im in zip(chunk, images):
                boxes[i] = self._scaled_boxes(dataset, i, im.shape, op)
            return self._preprocess(images, op)

        return self._cached("images", dataset, indices, prepare)

    def _labels(self, dataset: Dataset, indices) -> np.ndarray:
        op = "Locator.train"
        return self._cached("labels", dataset, indices, lambda chunk: [
            self._scaled_boxes(dataset, i, dataset.image(i).shape, op) for i in chunk])

    def _samples(self, images, labels) -> list:
        return [dict({"image": images[k] if images.shape[-1] > 1 else images[k][:, :, 0]}, **labels[k])
                for k in range(len(labels))]

    # ------------------------------------------------------------------ measures and results

    def _detections(self, model, x) -> list:
        """The DLResults of the preprocessed images x (model coordinates), in chunks of the batch size."""
        from ..model import get_dl_model_param
        b = get_dl_model_param(model, "batch_size")[0]
        core = model.core("Locator")
        out = []
        for start in range(0, len(x), b):
            out.extend(core.apply([{"image": im if im.shape[-1] > 1 else im[:, :, 0]} for im in x[start:start + b]],
                                  []))
        return out

    def _validation_metrics(self, model, x, y) -> dict:
        from .. import _detection_eval as de
        from ..model import get_dl_model_param, set_dl_model_param
        it = self._settings["instance_type"]
        keys = RECT1 if it == "rectangle1" else RECT2
        saved = get_dl_model_param(model, "min_confidence")[0]
        set_dl_model_param(model, "min_confidence", _VALIDATION_CONFIDENCE)
        try:
            results = self._detections(model, x)
        finally:
            set_dl_model_param(model, "min_confidence", saved)
        images = []
        for truth, r in zip(y, results):
            gt = np.array([truth[k] for k in keys], np.float64).T.reshape(-1, len(keys))
            det = np.array([r.get(k, []) for k in keys], np.float64).T.reshape(-1, len(keys))
            images.append(de.Image(truth["bbox_label_id"], gt, [int(c) for c in r.get("bbox_class_id", [])], det,
                                   r.get("bbox_confidence", []), it))
        soap = it == "rectangle2" and get_dl_model_param(model, "ignore_direction")[0] == "false"
        res = de.evaluate(images, self._class_ids, _IOU_THRESHOLDS, [-1], [("all", 0.0, float("inf"))], True,
                          soap)["max_num_detections_all"]["area_all"]
        m = {"mean_ap": res["mean_ap"], "ap_50": res["ap_iou_05"]["mean_class_ap"],
             "ap_75": res["ap_iou_075"]["mean_class_ap"],
             "class_ap": [res["mean_iou_ap"][f"class_{c}"] for c in self._class_ids]}
        if soap:
            m["mean_soap"] = res["mean_soap_tp"]
        m["validation_error"] = 1.0 - m["mean_ap"] if m["mean_ap"] >= 0 else 1.0
        return m

    def _results(self, model, x, images) -> list:
        from ..preprocess import _scale_boxes
        w, h = self._settings["image_size"]
        out = []
        for i, r in enumerate(self._detections(model, x)):
            d = {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in r.items()}
            back = {"image_height": images[i].shape[0], "image_width": images[i].shape[1]}
            if d.get("bbox_class_id"):
                _scale_boxes(d, (h, w), back, "Locator.apply", f"images[{i}]")
            out.append(d)
        return out

