"""HALCON's evaluation procedures (spec C.9, C.10, D.4): gen_confusion_matrix, create_evaluation_default_param
and evaluate_dl_model (classification, segmentation and detection models).

Decisions where the spec leaves the behaviour open or opendl has no HALCON counterpart:
- Confusion matrices are numpy arrays instead of HALCON matrix handles: rows = predicted class, columns =
  ground-truth class (spec I.4), absolute counts as int32, the relative matrix (every column divided by its
  ground-truth count) as float32, so that they can be stored in dicts as images and written to files.
  gen_confusion_matrix draws nothing (there are no windows); 'display_matrix', 'display_color' and
  'display_column_width' are validated and otherwise ignored, window_handle must be [].
- evaluate_dl_model (classification): the result holds 'evaluated_samples' {image_ids, image_label_ids,
  top1_predictions} and the requested confusion matrices at the top level, and one dict per entry of
  'class_ids_to_evaluate' (or 'class_names_to_evaluate'): 'global' with top<k>_error, mean_precision,
  precision_per_class, mean_recall, recall_per_class, mean_f_score, f_score_per_class (per-class tuples in the
  order of the model's class_ids), 'class_id_<id>' with top<k>_error (over the samples of that class; -1,
  the spec's value for an undefined per-class measure, where no evaluated sample has that class), precision,
  recall, f_score. Precision of a class never predicted and recall of a class absent from the ground truth
  are 0, and so is an F-score with P + R = 0; means are unweighted over all model classes. The confusion
  matrices span the class ids in ascending order (spec C.10), whatever the order of class_ids, and, as in
  HALCON, need every class in the ground truth (1302 otherwise); precision, recall and F-score do not.
- measures 'all' means top1_error, precision, recall, f_score, absolute_confusion_matrix and
  relative_confusion_matrix. 'show_progress' is accepted and ignored.
- evaluate_dl_model (segmentation): the measures of spec C.10 at the top level of the result, from one pixel
  confusion matrix over all selected samples. Pixels whose ground truth is one of the ignore_class_ids (the
  model's, merged with the GenParam's) count nowhere. 'pixel_confusion_matrix' is an int32 array (rows =
  predicted class, columns = ground truth, in class_ids order); class_iou / class_pixel_accuracy are tuples in
  class_ids order with -1 for a class without ground-truth pixels, which the means leave out. 'all' means every
  measure except the confusion matrix. A result image of another size than the sample's segmentation_image
  raises 1301, a predicted id (negative ones included) that is no evaluated class id 1302.
- evaluate_dl_model (detection): the nested result of spec C.10, max_num_detections_<N|all> / area_<name> /
  {mean_ap, ap_iou_<t>, mean_iou_ap} (+ mean_soap_tp, soap_tp_iou_<t>, mean_iou_soap_tp for rectangle2 models
  with 'soap', which is added when the model's ignore_direction is 'false'), and with detailed_evaluation, in
  each of these area dicts as spec C.10 places it, detailed_evaluation_iou_<t> (the counts of that
  max_num_detections and area range, from the AP's matching) with its detection_confusion_matrix (an int32
  array) and, with 'soap', soap_tp / soap_fp_<cause> / mean_soap_all; max_num_detections counts per image and
  class (COCO's maxDets). The algorithm and the matrix layout are described in opendl._detection_eval. The
  DLSamples' boxes and the results are compared in the preprocessed image's coordinates.
Error codes: see opendl._proc; other model types raise 7912.
"""

from __future__ import annotations

import math
import re

import numpy as np

from ._convert import as_list
from ._proc import (H_ERR_DL_MODEL_OPERATOR_UNSUPPORTED, content, flag, gen_params, get, get1, is_int,
                    is_number, name_value_params, new_dict, put, samples_of, sub_dict)
from ._handles import expect_handle
from .errors import H_ERR_DICT_KEY, HOperatorError

__all__ = ["create_evaluation_default_param", "evaluate_dl_model", "gen_confusion_matrix"]

EVALUATION_TYPES = ("anomaly_detection", "classification", "detection", "segmentation")
CL_MEASURES = ("precision", "recall", "f_score", "absolute_confusion_matrix", "relative_confusion_matrix", "all")
SEG_MEASURES = ("pixel_accuracy", "mean_accuracy", "mean_iou", "class_iou", "class_pixel_accuracy",
                "pixel_confusion_matrix", "frequency_weighted_iou", "all")
_TOPK = re.compile(r"^top([1-9][0-9]*)_error$")


# ---------------------------------------------------------------- confusion matrix


def _confusion(gt: list, pred: list, classes: list) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    m = np.zeros((len(classes), len(classes)), np.int64)
    for g, p in zip(gt, pred):
        m[index[p], index[g]] += 1
    return m


def _relative(m: np.ndarray) -> np.ndarray:
    cols = m.sum(axis=0)
    return (m / np.where(cols > 0, cols, 1)).astype(np.float32)


def gen_confusion_matrix(ground_truth_labels, predicted_classes, gen_param_name, gen_param_value, window_handle):
    """Confusion matrix over the sorted unique ground-truth labels (ints or class names): row = predicted
    class, column = ground-truth class. 'return_matrix' 'absolute' (default, int32 counts), 'relative'
    (columns normalised, float32) or 'none' (returns [])."""
    op = "gen_confusion_matrix"
    gt, pred = as_list(ground_truth_labels), as_list(predicted_classes)
    if not gt:
        raise HOperatorError(1401, "ground_truth_labels is empty", op)
    if len(gt) != len(pred):
        raise HOperatorError(1402, f"{len(gt)} ground-truth labels but {len(pred)} predicted classes", op)
    params = name_value_params(gen_param_name, gen_param_value, op, 3,
                               ("display_matrix", "return_matrix", "display_color", "display_column_width"))
    choices = {"display_matrix": ("absolute", "relative", "none"), "return_matrix": ("absolute", "relative", "none"),
               "display_color": ("true", "false"), "display_column_width": ("minimal", "equal")}
    for k, v in params.items():
        if v not in choices[k]:
            raise HOperatorError(1304, f"{k!r} takes one of {', '.join(map(repr, choices[k]))}, got {v!r}", op)
    if as_list(window_handle):
        raise HOperatorError(1205, "window_handle must be []: opendl has no graphics windows", op)
    if all(is_int(v) for v in gt + pred):
        gt, pred = [int(v) for v in gt], [int(v) for v in pred]
    elif all(isinstance(v, str) for v in gt + pred):
        gt, pred = [str(v) for v in gt], [str(v) for v in pred]
    else:
        raise HOperatorError(1201, "labels must be all integers or all strings", op)
    classes = sorted(set(gt))
    unknown = [p for p in pred if p not in set(classes)]
    if unknown:
        raise HOperatorError(1302, f"predicted class {unknown[0]!r} does not occur in ground_truth_labels", op)
    absolute = _confusion(gt, pred, classes)
    kind = params.get("return_matrix", "absolute")
    if kind == "none":
        return []
    return absolute.astype(np.int32) if kind == "absolute" else _relative(absolute)


# ---------------------------------------------------------------- parameters


def create_evaluation_default_param(evaluation_type, class_ids_model):
    """The default EvalParams dict of spec C.9 for an evaluation type and the model's class ids."""
    op = "create_evaluation_default_param"
    t = as_list(evaluation_type)
    if len(t) != 1 or t[0] not in EVALUATION_TYPES:
        raise HOperatorError(1301, f"evaluation_type must be one of {', '.join(map(repr, EVALUATION_TYPES))}, got "
                                   f"{evaluation_type!r}", op)
    t = t[0]
    ids = as_list(class_ids_model)
    if not all(is_int(i) for i in ids):
        raise HOperatorError(1202, f"class_ids_model must hold integers, got {class_ids_model!r}", op)
    d = {"evaluation_type": t, "class_ids": [int(i) for i in ids], "num_classes": len(ids),
         "evaluate_instances": 1 if t == "detection" else 0}
    if t == "classification":
        d.update(measures="top1_error", class_ids_to_evaluate="global")
    elif t == "detection":
        d.update(measures="mean_ap", instance_type="rectangle1",
                 iou_threshold=[round(0.5 + 0.05 * k, 2) for k in range(10)], max_num_detections=-1,
                 area_ranges={"name": ["all"], "min": [0], "max": [2e8]}, allocation_block_length=200,
                 detailed_evaluation=0, interpolate_pr_curves=1)
    elif t == "segmentation":
        d.update(measures=["pixel_accuracy", "mean_accuracy", "mean_iou"], ignore_class_ids=[])
    else:
        if sorted(d["class_ids"]) != [0, 1]:
            raise HOperatorError(1302, f"anomaly detection needs class_ids [0, 1], got {d['class_ids']}", op)
        d.update(measures="anomaly_score_histogram", anomaly_classification_thresholds=[])
    return new_dict(d)


_GEN_KEYS = ("measures", "evaluation_type", "class_ids", "num_classes", "evaluate_instances", "show_progress",
             "iou_threshold", "max_num_detections", "area_ranges", "detailed_evaluation", "allocation_block_length",
             "interpolate_pr_curves", "ignore_class_ids", "class_names_to_evaluate", "class_ids_to_evaluate",
             "anomaly_classification_thresholds", "instance_type", "class_names")


def _measures(values: list, num_classes: int, op: str) -> list:
    out = []
    for m in values:
        hit = _TOPK.match(m) if isinstance(m, str) else None
        if hit and 1 <= int(hit.group(1)) <= num_classes:
            out.append(m)
        elif m in CL_MEASURES:
            out.extend(["top1_error", "precision", "recall", "f_score", "absolute_confusion_matrix",
                        "relative_confusion_matrix"] if m == "all" else [m])
        else:
            raise HOperatorError(1305, f"measure {m!r} is not valid for classification (top<k>_error with k in "
                                       f"1..{num_classes}, {', '.join(map(repr, CL_MEASURES))})", op)
    return list(dict.fromkeys(out))


# ---------------------------------------------------------------- evaluate_dl_model


def _select(ds: dict, samples: list, method, values, op: str) -> list:
    m = as_list(method)
    if len(m) != 1 or m[0] not in ("split", "image_ids", "sample_indices"):
        raise HOperatorError(1303, f"sample_select_method must be 'split', 'image_ids' or 'sample_indices', got "
                                   f"{method!r}", op)
    vals = as_list(values)
    if not vals:
        raise HOperatorError(1404, "sample_select_values is empty", op)
    m = m[0]
    if m == "sample_indices":
        for v in vals:
            if not is_int(v):
                raise HOperatorError(1304, f"sample indices must be integers, got {v!r}", op)
            if not 0 <= v < len(samples):
                raise HOperatorError(1304, f"sample index {v!r} is outside 0..{len(samples) - 1}", op)
        return [int(v) for v in vals]
    key = "split" if m == "split" else "image_id"
    for v in vals:
        if not (isinstance(v, str) if m == "split" else is_int(v)):
            raise HOperatorError(1304, f"sample_select_values for {m!r} must be "
                                       f"{'split names' if m == 'split' else 'integer image ids'}, got {v!r}", op)
    wanted = set(vals)
    out = [i for i, s in enumerate(samples) if len(get(s, key, [])) == 1 and get(s, key)[0] in wanted]
    if not out:
        raise HOperatorError(1304, f"no sample has {key} in {vals!r}", op)
    return out


def _settings(dlmodel_handle, gen_param, op: str):
    """evaluate_dl_model's GenParam checked against the model, before any sample is read -> (model type, the
    EvalParams dict handle, its content, the model type's checked settings)."""
    from .model import get_dl_model_param

    model_type = get_dl_model_param(dlmodel_handle, "type")[0]
    if model_type not in ("classification", "segmentation", "detection"):
        raise HOperatorError(H_ERR_DL_MODEL_OPERATOR_UNSUPPORTED, f"evaluation of {model_type!r} models is not "
                                                                  "supported yet (classification, segmentation, "
                                                                  "detection)", op)
    class_ids = [int(c) for c in get_dl_model_param(dlmodel_handle, "class_ids")]
    eval_params = create_evaluation_default_param(model_type, class_ids)
    ep = content(eval_params, op, "eval_params")
    user = gen_params(gen_param, op, 5, _GEN_KEYS)
    for k, v in user.items():
        if k in ("evaluation_type",) and v != [model_type]:
            raise HOperatorError(1305, f"GenParam 'evaluation_type' {v!r} does not match the model type "
                                       f"{model_type!r}", op)
        put(ep, k, v)
    if "class_ids" in user:
        if not user["class_ids"] or not all(is_int(c) for c in user["class_ids"]) or \
                len(set(user["class_ids"])) != len(user["class_ids"]):
            raise HOperatorError(1305, f"GenParam 'class_ids' must be distinct integers, got {user['class_ids']!r}",
                                 op)
        put(ep, "num_classes", len(user["class_ids"]))
    if "show_progress" in user:
        flag(user["show_progress"], op, 1305, "GenParam 'show_progress'")
    if not as_list(get(ep, "measures")):
        raise HOperatorError(1305, "GenParam 'measures' is empty; give one or more measures (or 'all')", op)
    if model_type == "detection":
        it = get_dl_model_param(dlmodel_handle, "instance_type")[0]
        ignore_direction = it == "rectangle2" and get_dl_model_param(dlmodel_handle, "ignore_direction")[0] == "true"
        settings = _detection_settings(ep, it, ignore_direction, op)
    elif model_type == "segmentation":
        settings = _segmentation_settings(dlmodel_handle, ep, user, op)
    else:
        settings = _classification_settings(dlmodel_handle, ep, user, op)
    return model_type, eval_params, ep, settings


def check_evaluation_param(dlmodel_handle, gen_param, op: str) -> None:
    """Raises the error evaluate_dl_model would raise for this GenParam and model (train_dl_model checks its
    evaluation parameters before the first training step, so that a bad one does not surface after an epoch)."""
    _settings(dlmodel_handle, gen_param, op)


def evaluate_dl_model(dldataset, dlmodel_handle, sample_select_method, sample_select_values, gen_param):
    """Applies the model batch-wise to the selected preprocessed samples and computes the measures of spec
    C.9 / C.10 (classification, segmentation and detection models). Returns (evaluation_result, eval_params)."""
    op = "evaluate_dl_model"
    ds = content(dldataset, op, "dldataset")
    expect_handle(dlmodel_handle, "dl_model", op, "dlmodel_handle")
    samples = samples_of(ds, op)
    if not samples:
        raise HOperatorError(1301, "dldataset holds no samples", op)
    if "preprocess_param" not in ds or "dlsample_dir" not in ds:
        raise HOperatorError(H_ERR_DICT_KEY, "the dataset needs to be preprocessed already (no 'preprocess_param' / "
                                             "'dlsample_dir'; run preprocess_dl_dataset)", op)
    selected = _select(ds, samples, sample_select_method, sample_select_values, op)
    model_type, eval_params, ep, settings = _settings(dlmodel_handle, gen_param, op)
    if model_type == "detection":
        return _evaluate_detection(dldataset, dlmodel_handle, samples, selected, ep, settings, eval_params, op)
    if model_type == "segmentation":
        return _evaluate_segmentation(dldataset, dlmodel_handle, selected, ep, settings, eval_params, op)
    return _evaluate_classification(dldataset, dlmodel_handle, samples, selected, ep, settings, eval_params, op)


def _batches(dldataset, dlmodel_handle, selected):
    """(sample indices, DLSamples, DLResults) per batch of the model's batch size."""
    from .datasets import read_dl_samples
    from .model import apply_dl_model, get_dl_model_param
    batch_size = int(get_dl_model_param(dlmodel_handle, "batch_size")[0])
    for start in range(0, len(selected), batch_size):
        idx = selected[start:start + batch_size]
        batch = read_dl_samples(dldataset, idx)
        yield idx, batch, apply_dl_model(dlmodel_handle, batch, [])


def _classification_settings(dlmodel_handle, ep, user, op):
    from .model import get_dl_model_param
    if "class_ids_to_evaluate" in user and "class_names_to_evaluate" in user:
        raise HOperatorError(1305, "give 'class_ids_to_evaluate' or 'class_names_to_evaluate', not both", op)
    class_ids = [int(c) for c in get(ep, "class_ids")]
    measures = _measures(get(ep, "measures"), len(class_ids), op)
    if "class_names_to_evaluate" in user:
        names = get(ep, "class_names", []) or get_dl_model_param(dlmodel_handle, "class_names")
        model_ids = get_dl_model_param(dlmodel_handle, "class_ids")
        lookup = dict(zip(names, model_ids))
        targets = []
        for n in get(ep, "class_names_to_evaluate"):
            if n == "global":
                targets.append("global")
            elif n in lookup:
                targets.append(int(lookup[n]))
            else:
                raise HOperatorError(1305, f"class name {n!r} is not one of the model's class names {names}", op)
    else:
        targets = list(get(ep, "class_ids_to_evaluate"))
        if not targets:
            raise HOperatorError(1305, "GenParam 'class_ids_to_evaluate' is empty; give class ids or 'global'", op)
        for t in targets:
            if t != "global" and t not in class_ids:
                raise HOperatorError(1305, f"class_ids_to_evaluate {t!r} is not one of the class ids {class_ids}",
                                     op)
    return class_ids, measures, targets


def _evaluate_classification(dldataset, dlmodel_handle, samples, selected, ep, settings, eval_params, op):
    class_ids, measures, targets = settings
    image_ids, labels, ranked = [], [], []
    for idx, batch, results in _batches(dldataset, dlmodel_handle, selected):
        for i, s in zip(idx, batch):
            sd = content(s, op, "dlsample")
            label = get1(sd, "image_label_id")
            if label is None:
                raise HOperatorError(H_ERR_DICT_KEY, f"DLSample of sample {i} has no 'image_label_id'", op)
            if label not in class_ids:
                raise HOperatorError(1301, f"sample {i} has image_label_id {label}, not one of the evaluated class "
                                           f"ids {class_ids}", op)
            labels.append(int(label))
            image_ids.append(get1(sd, "image_id", get1(samples[i], "image_id", i)))
        for r in results:
            ranked.append([int(c) for c in get(content(r, op, "dlresult"), "classification_class_ids")])
    result = _classification_result(np.array(labels), ranked, class_ids, targets, measures, op)
    put(result, "evaluated_samples", {"image_ids": image_ids, "image_label_ids": labels,
                                      "top1_predictions": [r[0] for r in ranked]})
    put(ep, "measures", measures)
    return new_dict(result), eval_params


def _classification_result(labels: np.ndarray, ranked: list, class_ids: list, targets: list, measures: list,
                           op: str) -> dict:
    top1 = np.array([r[0] for r in ranked])
    index = {c: k for k, c in enumerate(class_ids)}
    unknown = [p for p in top1 if p not in index]
    if unknown:
        raise HOperatorError(1302, f"the model predicts class id {unknown[0]}, which is not evaluated", op)
    cm = _confusion(list(labels), list(top1), class_ids)  # rows predicted, columns ground truth
    tp = np.diag(cm).astype(np.float64)
    rows, cols = cm.sum(axis=1), cm.sum(axis=0)
    precision = np.where(rows > 0, tp / np.where(rows > 0, rows, 1), 0.0)
    recall = np.where(cols > 0, tp / np.where(cols > 0, cols, 1), 0.0)
    f_score = np.where(precision + recall > 0, 2 * precision * recall / np.where(precision + recall > 0,
                                                                               precision + recall, 1), 0.0)
    result = {}
    if "absolute_confusion_matrix" in measures or "relative_confusion_matrix" in measures:
        missing = [c for c in class_ids if cols[index[c]] == 0]
        if missing:
            raise HOperatorError(1302, f"Not all classes are represented in the ground truth of the evaluated "
                                       f"samples (missing class ids {missing}); confusion matrices need them all",
                                 op)
        ascending = np.argsort(class_ids, kind="stable")  # the matrices' order, whatever the order of class_ids
        sorted_cm = cm[np.ix_(ascending, ascending)]
        if "absolute_confusion_matrix" in measures:
            result["absolute_confusion_matrix"] = sorted_cm.astype(np.int32)
        if "relative_confusion_matrix" in measures:
            result["relative_confusion_matrix"] = _relative(sorted_cm)
    topk = [m for m in measures if _TOPK.match(m)]

    def topk_error(k, mask):
        n = int(mask.sum())
        if n == 0:
            return -1.0  # no sample of this class: undefined, -1 as every undefined per-class value
        hits = sum(1 for ok, lab, r in zip(mask, labels, ranked) if ok and lab in r[:k])
        return 1.0 - hits / n

    for t in targets:
        entry = {}
        mask = np.ones(len(labels), bool) if t == "global" else labels == t
        for m in topk:
            entry[m] = topk_error(int(_TOPK.match(m).group(1)), mask)
        if t == "global":
            for name, values in (("precision", precision), ("recall", recall), ("f_score", f_score)):
                if name in measures:
                    entry[f"mean_{name}"] = float(values.mean())
                    entry[f"{name}_per_class"] = [float(v) for v in values]
            result["global"] = entry
        else:
            for name, values in (("precision", precision), ("recall", recall), ("f_score", f_score)):
                if name in measures:
                    entry[name] = float(values[index[t]])
            result[f"class_id_{t}"] = entry
    return result


# ---------------------------------------------------------------- segmentation


def _segmentation_measures(values: list, op: str) -> list:
    out = []
    for m in values:
        if m == "all":
            out.extend(SEG_MEASURES[:-1])
        elif m in SEG_MEASURES:
            out.append(m)
        else:
            raise HOperatorError(1305, f"measure {m!r} is not valid for segmentation (valid: "
                                       f"{', '.join(map(repr, SEG_MEASURES))})", op)
    return list(dict.fromkeys(out))


def segmentation_measures(cm: np.ndarray, measures: list) -> dict:
    """The measures of spec C.10 from a pixel confusion matrix (rows predicted, columns ground truth) over the
    evaluated classes. A class without ground-truth pixels has class_iou and class_pixel_accuracy -1 and is
    left out of the means."""
    cm = cm.astype(np.float64)
    tp, gt, pred = np.diag(cm), cm.sum(axis=0), cm.sum(axis=1)
    valid = gt > 0
    acc = np.where(valid, tp / np.where(valid, gt, 1), -1.0)
    iou = np.where(valid, tp / np.where(valid, gt + pred - tp, 1), -1.0)
    total = gt.sum()
    out = {}
    if "pixel_accuracy" in measures:
        out["pixel_accuracy"] = float(tp.sum() / total) if total else -1.0
    if "mean_accuracy" in measures:
        out["mean_accuracy"] = float(acc[valid].mean()) if valid.any() else -1.0
    if "mean_iou" in measures:
        out["mean_iou"] = float(iou[valid].mean()) if valid.any() else -1.0
    if "class_pixel_accuracy" in measures:
        out["class_pixel_accuracy"] = [float(v) for v in acc]
    if "class_iou" in measures:
        out["class_iou"] = [float(v) for v in iou]
    if "frequency_weighted_iou" in measures:
        out["frequency_weighted_iou"] = float((gt[valid] / total * iou[valid]).sum()) if total else -1.0
    if "pixel_confusion_matrix" in measures:
        out["pixel_confusion_matrix"] = cm.astype(np.int32)
    return out


def _segmentation_settings(dlmodel_handle, ep, user, op):
    from .model import get_dl_model_param
    class_ids = [int(c) for c in get(ep, "class_ids")]
    model_ignore = [int(c) for c in get_dl_model_param(dlmodel_handle, "ignore_class_ids")]
    extra = as_list(user.get("ignore_class_ids", []))
    if not all(is_int(c) for c in extra):
        raise HOperatorError(1305, f"GenParam 'ignore_class_ids' must be integers, got {extra!r}", op)
    ignore = sorted(set(model_ignore) | {int(c) for c in extra})
    put(ep, "ignore_class_ids", ignore)
    measures = _segmentation_measures(as_list(get(ep, "measures")), op)
    both = sorted(set(ignore) & set(class_ids))
    if both:
        raise HOperatorError(1305, f"class ids {both} are both evaluated and ignored", op)
    if min(class_ids + ignore, default=0) < 0:
        raise HOperatorError(1305, f"class ids must be >= 0, got {class_ids + ignore}", op)
    return class_ids, ignore, measures


def _plane_shape(image) -> tuple:
    """(height, width) of a one-channel image given as (H, W) or (H, W, 1); other shapes as they are."""
    shape = np.shape(image)
    return shape[:2] if len(shape) == 3 and shape[2] == 1 else shape


def _evaluate_segmentation(dldataset, dlmodel_handle, selected, ep, settings, eval_params, op):
    class_ids, ignore, measures = settings
    k = len(class_ids)
    lut = np.full(max(class_ids + ignore) + 1, -2, np.int64)  # -2: unknown id, -1: ignored
    lut[class_ids] = np.arange(k)
    lut[ignore] = -1
    cm = np.zeros((k, k), np.int64)
    for idx, batch, results in _batches(dldataset, dlmodel_handle, selected):
        for i, s, r in zip(idx, batch, results):
            gt_img = get(content(s, op, "dlsample"), "segmentation_image")
            if not isinstance(gt_img, np.ndarray):
                raise HOperatorError(H_ERR_DICT_KEY, f"DLSample of sample {i} has no 'segmentation_image'", op)
            gt = np.asarray(gt_img).reshape(-1)
            if np.any(gt != np.round(gt)) or gt.min() < 0 or gt.max() >= len(lut) or np.any(lut[gt.astype(np.int64)] == -2):
                bad = sorted(set(np.unique(gt).tolist()) - set(class_ids) - set(ignore))
                raise HOperatorError(1301, f"sample {i}: segmentation_image holds ids {bad[:5]}, which are neither "
                                           f"evaluated class ids {class_ids} nor ignore_class_ids {ignore}", op)
            g = lut[gt.astype(np.int64)]
            pred_img = np.asarray(get(content(r, op, "dlresult"), "segmentation_image"))
            if _plane_shape(pred_img) != _plane_shape(gt_img):
                raise HOperatorError(1301, f"sample {i}: segmentation_image has the shape {np.shape(gt_img)}, the "
                                           f"model's result {pred_img.shape}; they must be the same", op)
            pred = pred_img.reshape(-1).astype(np.int64)
            inside = (pred >= 0) & (pred < len(lut))  # other ids, negative ones included, are not evaluated
            p = np.where(inside, lut[np.clip(pred, 0, len(lut) - 1)], -2)
            keep = g >= 0  # pixels of ignore classes count nowhere
            if np.any(p[keep] < 0):
                raise HOperatorError(1302, f"sample {i}: the model predicts class ids that are not evaluated", op)
            cm += np.bincount(p[keep] * k + g[keep], minlength=k * k).reshape(k, k)
    put(ep, "measures", measures)
    return new_dict(segmentation_measures(cm, measures)), eval_params


# ---------------------------------------------------------------- detection


def _detection_settings(ep: dict, model_instance_type: str, ignore_direction: bool, op: str) -> dict:
    """The detection EvalParams checked and normalised (spec C.9)."""
    it = get1(ep, "instance_type", model_instance_type)
    if it != model_instance_type:
        raise HOperatorError(1305, f"instance_type {it!r} does not match the model's {model_instance_type!r}", op)
    measures = []
    for m in as_list(get(ep, "measures")):
        if m not in ("mean_ap", "soap", "all"):
            raise HOperatorError(1305, f"measure {m!r} is not valid for detection ('mean_ap', 'soap', 'all')", op)
        if m == "soap" and it != "rectangle2":
            raise HOperatorError(1305, "measure 'soap' needs instance_type 'rectangle2'", op)
        measures.extend(["mean_ap"] + (["soap"] if it == "rectangle2" else []) if m == "all" else [m])
    if it == "rectangle2" and not ignore_direction and "soap" not in measures:
        measures.append("soap")
    thresholds = as_list(get(ep, "iou_threshold"))
    if not thresholds or not all(is_number(t) and 0 < t < 1 for t in thresholds):
        raise HOperatorError(1305, f"iou_threshold must be reals in (0, 1), got {thresholds!r}", op)
    max_nums = as_list(get(ep, "max_num_detections"))
    if not max_nums or not all(is_int(n) and (n == -1 or n > 0) for n in max_nums):
        raise HOperatorError(1305, f"max_num_detections must be -1 (all) or positive integers, got {max_nums!r}", op)
    ar = sub_dict(ep, "area_ranges", op, "area_ranges")
    if ar is None:
        raise HOperatorError(1305, "area_ranges must be a dict with 'name', 'min' and 'max'", op)
    names, lo, hi = (as_list(get(ar, k, [])) for k in ("name", "min", "max"))
    if not names or not (len(names) == len(lo) == len(hi)) or not all(isinstance(n, str) for n in names) or \
            len(set(names)) != len(names) or not all(is_number(v) and not math.isnan(v) for v in lo + hi) or \
            any(a > b for a, b in zip(lo, hi)):
        raise HOperatorError(1305, f"area_ranges needs as many distinct names, min and max values (numbers, "
                                   f"min <= max), got name {names!r}, min {lo!r}, max {hi!r}", op)
    detailed = flag(get1(ep, "detailed_evaluation", 0), op, 1305, "'detailed_evaluation'")
    interpolate = flag(get1(ep, "interpolate_pr_curves", 1), op, 1305, "'interpolate_pr_curves'")
    put(ep, "measures", list(dict.fromkeys(measures)))
    put(ep, "instance_type", it)
    return {"instance_type": it, "soap": "soap" in measures, "thresholds": [float(t) for t in thresholds],
            "max_nums": [int(n) for n in max_nums], "areas": list(zip(names, map(float, lo), map(float, hi))),
            "detailed": detailed, "interpolate": interpolate}


def _evaluate_detection(dldataset, dlmodel_handle, samples, selected, ep, cfg, eval_params, op):
    from . import _detection_eval as de
    class_ids = [int(c) for c in get(ep, "class_ids")]
    it = cfg["instance_type"]
    keys = de.RECT1 if it == "rectangle1" else de.RECT2
    images, image_ids = [], []
    for idx, batch, results in _batches(dldataset, dlmodel_handle, selected):
        for i, s, r in zip(idx, batch, results):
            sd, rd = content(s, op, "dlsample"), content(r, op, "dlresult")
            missing = [k for k in ("bbox_label_id",) + keys if k not in sd]
            if missing:
                raise HOperatorError(H_ERR_DICT_KEY, f"DLSample of sample {i} has no {missing[0]!r} ({it} ground "
                                                     "truth)", op)
            labels = [int(c) for c in get(sd, "bbox_label_id")]
            unknown = sorted(set(labels) - set(class_ids))
            if unknown:
                raise HOperatorError(1301, f"sample {i}: bbox_label_id {unknown} not among the evaluated class ids "
                                           f"{class_ids}", op)
            gt = np.array([get(sd, k) for k in keys], np.float64).T.reshape(-1, len(keys))
            det = np.array([get(rd, k, []) for k in keys], np.float64).T.reshape(-1, len(keys))
            images.append(de.Image(labels, gt, [int(c) for c in get(rd, "bbox_class_id", [])], det,
                                   get(rd, "bbox_confidence", []), it))
            image_ids.append(get1(sd, "image_id", get1(samples[i], "image_id", i)))
    result = de.evaluate(images, class_ids, cfg["thresholds"], cfg["max_nums"], cfg["areas"], cfg["interpolate"],
                         cfg["soap"], detailed=cfg["detailed"], image_ids=image_ids)
    return new_dict(result), eval_params
