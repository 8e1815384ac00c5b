"""HALCON 20.11's helper procedures for the legacy classifier (spec G): read_dl_classifier_data_set,
split_dl_classifier_data_set, preprocess_dl_classifier_images, apply_dl_classifier_batchwise and
evaluate_dl_classifier. Parameters are the snake_case of the HDevelop parameters in their order; several outputs
come back as a tuple.

Decisions where HALCON's documentation leaves the behaviour open:
- read_dl_classifier_data_set reads the folder as read_dl_dataset_classification does (same label sources and
  image extensions); Classes are the sorted distinct labels, LabelIndices index into them.
- split_dl_classifier_data_set splits every class on its own (so each subset keeps the class proportions):
  floor(n * training_percent / 100) images of a class go to training, floor(n * validation_percent / 100) to
  validation, the rest to test. The order is random (the procedures' random source, seeded by
  set_system('seed_rand', ...)), and each output list is shuffled so that batches mix the classes.
- preprocess_dl_classifier_images is preprocess_dl_model_images with the classifier's image size, channels and
  range, normalisation 'none' and 'full_domain' (byte images map 0..255 to the classifier's range); its only
  generic parameter is 'contrast_normalization' ('false' default; 'true' stretches every channel of each image
  to the full range, i.e. normalisation 'all_channels').
- apply_dl_classifier_batchwise reads the files in chunks of the classifier's 'batch_size', preprocesses them
  with preprocess_dl_classifier_images and returns one result handle per chunk, plus the top class and its
  confidence per image.
- evaluate_dl_classifier measures: 'top1_error', 'precision', 'recall', 'f_score' (for ClassesToEvaluate
  'global': the mean over the classes present in the ground truth or the predictions; for a list of class
  names: one value per class), 'absolute_confusion_matrix' and 'relative_confusion_matrix' (numpy arrays, rows =
  predicted class, columns = ground-truth class, in the order of 'classes'; the relative one divides each column
  by its ground-truth count). Several measure types return their values concatenated.
"""

from __future__ import annotations

import os

import numpy as np

from . import _proc
from ._convert import as_list
from ._handles import expect_handle
from .errors import HOperatorError
from .legacy import (_classifier, _engine, _images_terms, apply_dl_classifier, get_dl_classifier_param,
                     get_dl_classifier_result)

_MEASURES = ("top1_error", "precision", "recall", "f_score", "absolute_confusion_matrix", "relative_confusion_matrix")


def read_dl_classifier_data_set(image_folder, label_source):
    """Image files below the folder(s) and their labels -> (image_files, labels, label_indices, classes)."""
    from .datasets import read_dl_dataset_classification
    with _engine("read_dl_classifier_data_set", {"raw_image_folder": "image_folder"}):
        dataset = read_dl_dataset_classification(image_folder, label_source)
    ds = _proc.content(dataset, "read_dl_classifier_data_set", "dataset")
    image_dir = _proc.get1(ds, "image_dir", "")
    classes = list(_proc.get(ds, "class_names"))
    files, labels, indices = [], [], []
    for s in _proc.samples_of(ds, "read_dl_classifier_data_set"):
        name = _proc.get1(s, "image_file_name")
        files.append(os.path.join(image_dir, name) if image_dir else name)
        k = _proc.get1(s, "image_label_id")
        labels.append(classes[k])
        indices.append(k)
    return files, labels, indices, classes


def split_dl_classifier_data_set(image_files, labels, training_percent, validation_percent):
    """Class-balanced random split -> (training_images, training_labels, validation_images, validation_labels,
    test_images, test_labels)."""
    op = "split_dl_classifier_data_set"
    files, labs = as_list(image_files), as_list(labels)
    if not files:
        raise HOperatorError(1401, "image_files is empty: nothing to split", op)
    if not all(isinstance(lab, str) or _proc.is_int(lab) for lab in labs):
        raise HOperatorError(1202, f"labels must be class names or class indices, got {labels!r}", op)
    if len(files) != len(labs):
        raise HOperatorError(1402, f"{len(files)} image files but {len(labs)} labels: labels needs one label per "
                                   "image", op)
    pct = []
    for pos, (name, v) in enumerate([("training_percent", training_percent),
                                     ("validation_percent", validation_percent)], start=3):
        vals = as_list(v)
        if len(vals) != 1 or not _proc.is_number(vals[0]):
            raise HOperatorError(1200 + pos, f"{name} must be one number, got {v!r}", op)
        if not 0 <= vals[0] <= 100:
            raise HOperatorError(1300 + pos, f"{name} must lie in 0..100, got {vals[0]}", op)
        pct.append(float(vals[0]))
    if pct[0] + pct[1] > 100:
        raise HOperatorError(1304, f"training_percent + validation_percent = {pct[0] + pct[1]} exceeds 100", op)
    rng = _proc.rng()
    parts = ([], [], [])
    for cls in sorted(set(labs), key=lambda x: (str(type(x)), x)):
        members = [i for i, lab in enumerate(labs) if lab == cls]
        members = [members[k] for k in rng.permutation(len(members))]
        n_train = int(np.floor(len(members) * pct[0] / 100 + 1e-9))
        n_val = int(np.floor(len(members) * pct[1] / 100 + 1e-9))
        parts[0].extend(members[:n_train])
        parts[1].extend(members[n_train:n_train + n_val])
        parts[2].extend(members[n_train + n_val:])
    out = []
    for part in parts:
        part = [part[k] for k in rng.permutation(len(part))]
        out.extend([[files[i] for i in part], [labs[i] for i in part]])
    return tuple(out)


def _preprocess_param(dlclassifier_handle, normalization: str, op: str):
    from .preprocess import create_dl_preprocess_param
    w, h, c = get_dl_classifier_param(dlclassifier_handle, "image_dimensions")
    lo, hi = get_dl_classifier_param(dlclassifier_handle, ["image_range_min", "image_range_max"])
    return create_dl_preprocess_param("classification", w, h, c, lo, hi, normalization, "full_domain", [], [], [], [])


def preprocess_dl_classifier_images(images, gen_param_name, gen_param_value, dlclassifier_handle):
    """Images of any size, 1 or 3 channels and type byte/uint2/int/real -> float32 images of the classifier's
    size, channels and range (a list; one array for one image given as an array)."""
    op = "preprocess_dl_classifier_images"
    from .datasets import gen_dl_samples_from_images
    from .preprocess import preprocess_dl_samples
    _classifier(dlclassifier_handle, op)
    params = _proc.name_value_params(gen_param_name, gen_param_value, op, 2, ("contrast_normalization",
                                                                              "domain_handling"))
    contrast = _proc.flag(params.get("contrast_normalization", "false"), op, 1303, "'contrast_normalization'")
    if params.get("domain_handling", "full_domain") != "full_domain":
        raise HOperatorError(1303, "'domain_handling' takes 'full_domain' (numpy images have no domain)", op)
    single = isinstance(images, np.ndarray) and images.ndim in (2, 3)
    items = [images] if single else (list(images) if isinstance(images, np.ndarray) else as_list(images))
    if not items:
        raise HOperatorError(1201, "images is empty", op)
    with _engine(op, _images_terms("images")):  # the samples hold the images, in order
        samples = gen_dl_samples_from_images(items)
        preprocess_dl_samples(samples, _preprocess_param(dlclassifier_handle,
                                                         "all_channels" if contrast else "none", op))
    out = [np.asarray(_proc.content(s, op, "sample")["image"]) for s in samples]
    out = [o if o.ndim == 3 else o[:, :, None] for o in out]
    return out[0] if single else out


def apply_dl_classifier_batchwise(image_files, dlclassifier_handle):
    """Classifies image files chunk by chunk -> (dlclassifier_result_ids, predicted_classes, confidences)."""
    op = "apply_dl_classifier_batchwise"
    from .images import read_image
    _classifier(dlclassifier_handle, op)
    files = as_list(image_files)
    bs = get_dl_classifier_param(dlclassifier_handle, "batch_size")[0]
    handles, classes, confidences = [], [], []
    for start in range(0, len(files), bs):
        chunk = [read_image(f) for f in files[start:start + bs]]
        res = apply_dl_classifier(preprocess_dl_classifier_images(chunk, [], [], dlclassifier_handle),
                                  dlclassifier_handle)
        handles.append(res)
        classes.extend(get_dl_classifier_result(res, "all", "predicted_classes"))
        confidences.extend(get_dl_classifier_result(res, "all", "confidences"))
    return handles, classes, confidences


def _truth_indices(ground_truth_labels, classes: list, op: str) -> list:
    index = {c: i for i, c in enumerate(classes)}
    out = []
    for i, lab in enumerate(as_list(ground_truth_labels)):
        if isinstance(lab, str) and lab in index:
            out.append(index[lab])
        elif _proc.is_int(lab) and 0 <= int(lab) < len(classes):
            out.append(int(lab))
        else:
            raise HOperatorError(7714, f"ground_truth_labels[{i}] {lab!r} is neither one of the classes {classes} "
                                       "nor an index into them", op)
    return out


def evaluate_dl_classifier(ground_truth_labels, dlclassifier_handle, dlclassifier_result_id,
                           evaluation_measure_type, classes_to_evaluate):
    """Evaluates classifier results (one or several result handles, their images in order) against the ground
    truth (class names or indices into 'classes')."""
    op = "evaluate_dl_classifier"
    _classifier(dlclassifier_handle, op)
    classes = get_dl_classifier_param(dlclassifier_handle, "classes")
    truth = _truth_indices(ground_truth_labels, classes, op)
    pred = []
    for h in as_list(dlclassifier_result_id):
        expect_handle(h, "dl_classifier_result", op, "dlclassifier_result_id")
        pred.extend(get_dl_classifier_result(h, "all", "predicted_class_indices"))
    if len(pred) != len(truth):
        raise HOperatorError(1401, f"the results hold {len(pred)} images but ground_truth_labels has {len(truth)} "
                                   "labels", op)
    if not truth:
        raise HOperatorError(1401, "ground_truth_labels is empty: nothing to evaluate", op)
    k = len(classes)
    cm = np.zeros((k, k), dtype=np.int64)  # rows: predicted, columns: ground truth
    np.add.at(cm, (np.array(pred), np.array(truth)), 1)
    tp = np.diag(cm).astype(np.float64)
    predicted, actual = cm.sum(axis=1), cm.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
        recall = np.where(actual > 0, tp / np.maximum(actual, 1), 0.0)
        f_score = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    sel = as_list(classes_to_evaluate)
    if not sel:
        raise HOperatorError(1405, "classes_to_evaluate is empty; give class names or 'global'", op)
    if not as_list(evaluation_measure_type):
        raise HOperatorError(1404, "evaluation_measure_type is empty; give one or more measures", op)
    if sel == ["global"]:
        chosen, per_class = [i for i in range(k) if predicted[i] > 0 or actual[i] > 0], False
    else:
        chosen, per_class = [], True
        for c in sel:
            if c not in classes:
                raise HOperatorError(1305, f"classes_to_evaluate {c!r} is not one of the classes {classes} "
                                           "(or use 'global')", op)
            chosen.append(classes.index(c))
    out = []
    for m in as_list(evaluation_measure_type):
        if m == "top1_error":
            if per_class:
                out.extend(float(1 - recall[i]) for i in chosen)
            else:
                out.append(float(1 - tp.sum() / len(truth)))
        elif m in ("precision", "recall", "f_score"):
            v = {"precision": precision, "recall": recall, "f_score": f_score}[m]
            out.extend([float(v[i]) for i in chosen] if per_class else [float(np.mean(v[chosen]))])
        elif m == "absolute_confusion_matrix":
            out.append(cm.copy())
        elif m == "relative_confusion_matrix":
            out.append(cm / np.maximum(actual, 1)[None, :])
        else:
            raise HOperatorError(1304, f"unknown evaluation_measure_type {m!r} (available: "
                                       f"{', '.join(repr(x) for x in _MEASURES)})", op)
    return out
