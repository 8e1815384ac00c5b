"""HALCON 20.11's legacy classifier operators (spec A.6, G): read/write/serialize/deserialize_dl_classifier,
set/get_dl_classifier_param, train_dl_classifier_batch, get_dl_classifier_train_result, apply_dl_classifier,
get_dl_classifier_result and the clear operators.

A classifier handle (sem_type 'dl_classifier') holds the same engine as a classification model from
read_dl_model: the built-in names ('pretrained_dl_classifier_compact.hdl', ...) and files written by
write_dl_model or write_dl_classifier are read by both. The legacy API fixes the classification setup of 20.11:
the classes are names, a class's index into 'classes' is its label, and the solver is SGD with momentum (E.1)
on the multinomial logistic loss (E.3, no class weights) plus the L2 term (E.5).

Images are passed as HALCON passes iconic objects: one numpy image, a list of images, or one array holding a
batch. An image is (H, W) or (H, W, C) float32 ('real'), sized to the classifier's image dimensions and scaled to
its image range, as preprocess_dl_classifier_images produces; nothing is resized or rescaled here. A 4-D array is
(N, H, W, C); a 3-D array is one image when its shape equals (image_height, image_width, image_num_channels),
otherwise a stack (N, H, W) of single-channel images.

Decisions where HALCON's reference leaves the behaviour open:
- Labels are class names or indices into 'classes', mixed freely; anything else raises 7714
  (H_ERR_CNN_INVALID_LABELS) naming the label. Unknown parameter or result names raise 7713 (H_ERR_CNN_WGPN).
- set_dl_classifier_param with one name takes the whole value tuple ('classes' needs it); with several names
  it takes one value per name. If any of them fails, the classifier is restored to its state before the call.
- apply_dl_classifier takes any number of images and runs them in chunks of 'batch_size'.
- get_dl_classifier_result with an image index gives all classes of that image by descending confidence
  ('predicted_classes', 'predicted_class_indices', 'confidences'); with 'all' it gives each image's top class,
  top class index and top confidence in batch order. Several names return their values concatenated.
- get_dl_classifier_train_result: 'loss' is the total loss of the step (data term plus regularisation),
  'multinomial_logistic_loss' the data term and 'regularization_loss' the weight_prior term (alpha/2 * sum of
  squared weights, biases excluded). Per-image losses are not provided.
- Errors of the model engine beneath an operator keep their code but name the legacy operator and speak of its
  parameters ('batch_images', 'classes'), not of the model operator's ('dlsample_batch', 'class_names').
"""

from __future__ import annotations

import contextlib
import re

import numpy as np

from . import _core
from ._convert import as_list, single
from ._handles import HHandle, expect_handle
from .dicts import _file_name
from .errors import HOperatorError, HTupleConversionError

H_ERR_CNN_WGPN = 7713
H_ERR_CNN_INVALID_LABELS = 7714
H_ERR_CNN_MULTIPLE_CLASSES = 7716

# Legacy parameter name -> (settable, model parameter it maps to).
_PARAMS = {
    "classes": (True, "class_names"),
    "batch_size": (True, "batch_size"),
    "batch_size_multiplier": (True, "batch_size_multiplier"),
    "learning_rate": (True, "learning_rate"),
    "momentum": (True, "momentum"),
    "weight_prior": (True, "weight_prior"),
    "gpu": (True, "gpu"),
    "runtime": (True, "runtime"),
    "runtime_init": (True, "runtime_init"),
    "image_width": (True, "image_width"),
    "image_height": (True, "image_height"),
    "image_num_channels": (True, "image_num_channels"),
    "image_dimensions": (True, "image_dimensions"),
    "image_range_min": (False, "image_range_min"),
    "image_range_max": (False, "image_range_max"),
    "type": (False, "type"),
}
_PARAM_LIST = ", ".join(f"'{n}'" for n in _PARAMS)
_RESULT_NAMES = ("predicted_classes", "predicted_class_indices", "confidences")
_TRAIN_RESULT_NAMES = ("loss", "multinomial_logistic_loss", "regularization_loss")


def _classifier(h, op: str):
    return expect_handle(h, "dl_classifier", op, "dlclassifier_handle")


def _images_terms(param: str) -> dict:
    """The sample batch of the model operators, in terms of the legacy image parameter ``param``."""
    return {r"dlsample_batch holds (\d+) samples": rf"{param} holds \1 images",
            r"\bsample (\d+), key 'image'": rf"{param}[\1]", r"\bdlsample_batch\b": param}


@contextlib.contextmanager
def _engine(op: str, renames: dict | None = None):
    """Errors of the operators beneath a legacy operator or procedure (the model engine names read_dl_model,
    set_dl_model_param, train_dl_model_batch ...) as errors of ``op``: same code, ``op`` as operator name, and
    their terms in the message replaced by the legacy ones (``renames``: regular expression -> replacement)."""
    try:
        yield
    except HOperatorError as e:
        if e.operator_name == op:
            raise
        message = e.extended_error_message
        for old, new in (renames or {}).items():
            message = re.sub(old, new, message)
        if isinstance(e, HTupleConversionError):
            raise HTupleConversionError(message, op, e.error_code) from e
        raise HOperatorError(e.error_code, message, op) from e


def _adopt(core_model, op: str, what: str) -> HHandle:
    """Wraps a core model as a classifier handle; only classification models qualify. The legacy solver is SGD."""
    kind = core_model.get_param("type")[0]
    if kind != "classification":
        raise HOperatorError(7912, f"{what} holds a '{kind}' model; a legacy classifier must be a classification "
                                   "model", op)
    core_model.set_param("solver_type", ["sgd"])
    return HHandle(core_model, "dl_classifier")


def read_dl_classifier(file_name):
    """Reads a classifier: an opendl model file (from write_dl_classifier or write_dl_model) or a built-in name
    such as 'pretrained_dl_classifier_compact.hdl'."""
    op = "read_dl_classifier"
    path = _file_name(file_name, op, 1201)
    with _engine(op):
        return _adopt(_core.read_model(path), op, f"file '{path}'")


def write_dl_classifier(dlclassifier_handle, file_name):
    """Writes the classifier atomically in opendl's model format (read_dl_model reads it too)."""
    op = "write_dl_classifier"
    m, path = _classifier(dlclassifier_handle, op), _file_name(file_name, op, 1202)
    with _engine(op):
        m.write(path)


def serialize_dl_classifier(dlclassifier_handle):
    op = "serialize_dl_classifier"
    m = _classifier(dlclassifier_handle, op)
    with _engine(op):
        return HHandle(m.serialize(), "serialized_item")


def deserialize_dl_classifier(serialized_item_handle):
    op = "deserialize_dl_classifier"
    from .model import serialized_bytes
    data = serialized_bytes(serialized_item_handle, op)
    with _engine(op):
        return _adopt(_core.deserialize_model(data), op, "serialized_item_handle")


def _clear(handles, sem_type: str, op: str, param: str) -> None:
    """Every handle is checked first, so a bad one clears none."""
    handles = as_list(handles)
    for h in handles:
        expect_handle(h, sem_type, op, param)
    for h in handles:
        h.clear()


def clear_dl_classifier(dlclassifier_handle):
    _clear(dlclassifier_handle, "dl_classifier", "clear_dl_classifier", "dlclassifier_handle")


def clear_dl_classifier_result(dlclassifier_result_handle):
    _clear(dlclassifier_result_handle, "dl_classifier_result", "clear_dl_classifier_result",
           "dlclassifier_result_handle")


def clear_dl_classifier_train_result(dlclassifier_train_result_handle):
    _clear(dlclassifier_train_result_handle, "dl_classifier_train_result", "clear_dl_classifier_train_result",
           "dlclassifier_train_result_handle")


def _param_name(name, op: str) -> str:
    if not isinstance(name, str) or name not in _PARAMS:
        raise HOperatorError(H_ERR_CNN_WGPN, f"unknown classifier parameter {name!r} (available: {_PARAM_LIST})", op)
    return name


def _set_one(m, name: str, values: list, op: str) -> None:
    settable, model_name = _PARAMS[name]
    if not settable:
        raise HOperatorError(H_ERR_CNN_WGPN, f"classifier parameter '{name}' can only be read", op)
    if name == "classes":
        if not values:
            raise HOperatorError(1303, "'classes' needs at least one class name", op)
        bad = [v for v in values if not isinstance(v, str)]
        if bad:
            raise HOperatorError(1303, f"'classes' must be class names (strings), got {bad[0]!r}", op)
        seen = set()
        for v in values:
            if v in seen:
                raise HOperatorError(H_ERR_CNN_MULTIPLE_CLASSES, f"class '{v}' occurs twice in 'classes'", op)
            seen.add(v)
        ids = list(range(len(values)))
        if m.get_param("class_ids") != ids:
            with _engine(op, {"'class_ids'": "'classes'"}):
                m.set_param("class_ids", ids)
    with _engine(op, {f"'{model_name}'": f"'{name}'"}):
        m.set_param(model_name, values)


def set_dl_classifier_param(dlclassifier_handle, gen_param_name, gen_param_value):
    """Sets 'classes' (class names; their count sizes the output layer, whose weights start anew when it
    changes), 'batch_size', 'batch_size_multiplier', 'learning_rate', 'momentum', 'weight_prior', 'gpu',
    'runtime', 'runtime_init' ('immediately') and the image geometry ('image_width', 'image_height',
    'image_num_channels', 'image_dimensions')."""
    op = "set_dl_classifier_param"
    m = _classifier(dlclassifier_handle, op)
    names = [_param_name(n, op) for n in as_list(gen_param_name)]
    values = as_list(gen_param_value)
    if not names:
        raise HOperatorError(1402, "gen_param_name is empty", op)
    if len(names) == 1:
        _set_one(m, names[0], values, op)
        return
    if len(values) != len(names):
        raise HOperatorError(1403, f"{len(names)} parameter names need one value each, got {len(values)} values", op)
    snapshot = m.serialize()
    try:
        for n, v in zip(names, values):
            _set_one(m, n, [v], op)
    except Exception:
        dlclassifier_handle._obj = _core.deserialize_model(snapshot)
        raise


def get_dl_classifier_param(dlclassifier_handle, gen_param_name):
    """Values of the parameters named (concatenated when several): those of set_dl_classifier_param except
    'runtime_init', plus 'image_range_min', 'image_range_max' and 'type' ('classification')."""
    op = "get_dl_classifier_param"
    m = _classifier(dlclassifier_handle, op)
    out = []
    for n in as_list(gen_param_name):
        name = _param_name(n, op)
        if name == "runtime_init":
            raise HOperatorError(H_ERR_CNN_WGPN, "classifier parameter 'runtime_init' can only be set", op)
        with _engine(op, {f"'{_PARAMS[name][1]}'": f"'{name}'"}):
            out.extend(m.get_param(_PARAMS[name][1]))
    return out


def get_dl_classifier_param_s(dlclassifier_handle, gen_param_name):
    return single(get_dl_classifier_param(dlclassifier_handle, gen_param_name), "get_dl_classifier_param")


def _images(images, m, op: str, param: str) -> list:
    """HALCON iconic input -> list of float32 (H, W, C) arrays of the classifier's geometry, checked."""
    w, h, c = m.get_param("image_dimensions")
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            items = list(images)
        elif images.ndim == 3 and c == 1 and tuple(images.shape[1:]) == (h, w) and tuple(images.shape) != (h, w, 1):
            items = list(images)  # a batch (N, H, W) of single-channel images
        elif images.ndim in (2, 3):
            items = [images]
        else:
            raise HOperatorError(1201, f"{param} must be images (H, W[, C]) or a batch (N, H, W[, C]), got an "
                                       f"array of shape {images.shape}", op)
    else:
        items = as_list(images)
    if not items:
        raise HOperatorError(1401, f"{param} holds no images", op)
    out = []
    for i, img in enumerate(items):
        if not isinstance(img, np.ndarray):
            raise HOperatorError(1201, f"{param}[{i}] is a {type(img).__name__}, not an image (numpy array)", op)
        if img.ndim == 2:
            img = img[:, :, None]
        if img.ndim != 3 or img.shape != (h, w, c):
            raise HOperatorError(7789, f"{param}[{i}] has shape {img.shape}, the classifier takes images of "
                                       f"height {h}, width {w} and {c} channel(s) (see "
                                       "preprocess_dl_classifier_images)", op)
        if img.dtype != np.float32:
            raise HOperatorError(7790, f"{param}[{i}] has pixel type {img.dtype}, the classifier takes 'real' "
                                       "(float32) images (see preprocess_dl_classifier_images)", op)
        out.append(img)
    return out


def _label_indices(labels, classes: list, op: str) -> list:
    index = {name: i for i, name in enumerate(classes)}
    out = []
    for i, lab in enumerate(labels):
        if isinstance(lab, str):
            if lab not in index:
                raise HOperatorError(H_ERR_CNN_INVALID_LABELS, f"batch_labels[{i}] {lab!r} is not one of the "
                                                                f"classifier's classes {classes}", op)
            out.append(index[lab])
        elif isinstance(lab, (int, np.integer)) and not isinstance(lab, bool):
            if not 0 <= int(lab) < len(classes):
                raise HOperatorError(H_ERR_CNN_INVALID_LABELS, f"batch_labels[{i}] index {int(lab)} is outside "
                                                                f"0..{len(classes) - 1} ('classes' has "
                                                                f"{len(classes)} entries)", op)
            out.append(int(lab))
        else:
            raise HOperatorError(H_ERR_CNN_INVALID_LABELS, f"batch_labels[{i}] {lab!r} is neither a class name nor "
                                                            "a class index", op)
    return out


def train_dl_classifier_batch(batch_images, dlclassifier_handle, batch_labels):
    """One SGD step on exactly batch_size * batch_size_multiplier images with one label each (class name or
    index into 'classes'). Returns a train result handle for get_dl_classifier_train_result."""
    op = "train_dl_classifier_batch"
    m = _classifier(dlclassifier_handle, op)
    labels = as_list(batch_labels)
    images = _images(batch_images, m, op, "batch_images")
    if len(labels) != len(images):
        raise HOperatorError(H_ERR_CNN_INVALID_LABELS, f"{len(images)} images but {len(labels)} labels: "
                                                        "batch_labels needs one label per image", op)
    idx = _label_indices(labels, m.get_param("class_names"), op)
    ids = m.get_param("class_ids")
    with _engine(op, _images_terms("batch_images")):
        res = m.train_batch([{"image": img, "image_label_id": ids[k]} for img, k in zip(images, idx)])
    reg = float(res.get("regularization", 0.0))
    return HHandle({"loss": float(res["total_loss"]), "multinomial_logistic_loss": float(res["total_loss"]) - reg,
                    "regularization_loss": reg}, "dl_classifier_train_result")


def get_dl_classifier_train_result(dlclassifier_train_result_handle, gen_param_name):
    """'loss' (total), 'multinomial_logistic_loss' (data term) and 'regularization_loss' of the step."""
    op = "get_dl_classifier_train_result"
    res = expect_handle(dlclassifier_train_result_handle, "dl_classifier_train_result", op,
                        "dlclassifier_train_result_handle")
    out = []
    for n in as_list(gen_param_name):
        if not isinstance(n, str) or n not in res:
            raise HOperatorError(H_ERR_CNN_WGPN, f"unknown train result {n!r} (available: "
                                                 f"{', '.join(repr(k) for k in _TRAIN_RESULT_NAMES)})", op)
        out.append(res[n])
    return out


def get_dl_classifier_train_result_s(dlclassifier_train_result_handle, gen_param_name):
    return single(get_dl_classifier_train_result(dlclassifier_train_result_handle, gen_param_name),
                  "get_dl_classifier_train_result")


def apply_dl_classifier(images, dlclassifier_handle):
    """Classifies the images (any number; run in chunks of 'batch_size'). Returns a result handle for
    get_dl_classifier_result."""
    op = "apply_dl_classifier"
    m = _classifier(dlclassifier_handle, op)
    imgs = _images(images, m, op, "images")
    names = m.get_param("class_names")
    position = {cid: i for i, cid in enumerate(m.get_param("class_ids"))}
    bs = m.get_param("batch_size")[0]
    per_image = []
    for start in range(0, len(imgs), bs):
        with _engine(op, _images_terms("images")):
            results = m.apply([{"image": img} for img in imgs[start:start + bs]], [])
        for r in results:
            order = [position[cid] for cid in r["classification_class_ids"]]
            per_image.append((order, [names[k] for k in order], list(r["classification_confidences"])))
    return HHandle(per_image, "dl_classifier_result")


def get_dl_classifier_result(dlclassifier_result_handle, index, gen_result_name):
    """For image `index` (0-based): all classes by descending confidence ('predicted_classes'), their indices
    into 'classes' ('predicted_class_indices') and confidences ('confidences'). For 'all': the top class, index
    and confidence of every image in batch order."""
    op = "get_dl_classifier_result"
    per_image = expect_handle(dlclassifier_result_handle, "dl_classifier_result", op, "dlclassifier_result_handle")
    idx = as_list(index)
    if len(idx) != 1:
        raise HOperatorError(1402, f"index takes one image index or 'all', got {index!r}", op)
    idx = idx[0]
    if idx == "all":
        rows, top = per_image, True
    elif isinstance(idx, (int, np.integer)) and not isinstance(idx, bool) and 0 <= int(idx) < len(per_image):
        rows, top = [per_image[int(idx)]], False
    else:
        raise HOperatorError(1302, f"index must be 'all' or an image index in 0..{len(per_image) - 1}, got "
                                   f"{idx!r}", op)
    out = []
    for n in as_list(gen_result_name):
        if n not in _RESULT_NAMES:
            raise HOperatorError(H_ERR_CNN_WGPN, f"unknown result {n!r} (available: "
                                                 f"{', '.join(repr(k) for k in _RESULT_NAMES)})", op)
        col = {"predicted_class_indices": 0, "predicted_classes": 1, "confidences": 2}[n]
        for row in rows:
            out.extend(row[col][:1] if top else row[col])
    return out


def get_dl_classifier_result_s(dlclassifier_result_handle, index, gen_result_name):
    return single(get_dl_classifier_result(dlclassifier_result_handle, index, gen_result_name),
                  "get_dl_classifier_result")
