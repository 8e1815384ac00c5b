"""HALCON's training procedures: create_dl_train_param and train_dl_model (spec C.6, C.7, E.7, E.9), with
background data loading, a progress bar, plots, and early stopping as a documented extra.

train_dl_model follows HALCON's loop: a stream of per-epoch shuffles of the 'train' split, batches of
batch_size * batch_size_multiplier drawn contiguously from it, floor(N_train / B) iterations per epoch, change
strategies evaluated before every iteration at the fractional epoch, evaluation on the 'validation' split every
floor(evaluation_interval_epochs * iterations_per_epoch) iterations and after the last one, and the
serialization strategies 'best', 'final', 'epochs' and 'current' writing <basename>.hdl (write_dl_model) and
<basename>_info.hdict (train_infos, evaluation_infos, epoch). StartEpoch 'resume' continues from the epoch in
the 'current' strategy's <basename>_info.hdict; pass the model read from its <basename>.hdl. Batches and
augmentation seeds are drawn epoch by epoch from RandomSeed, so a resumed run (also one with a larger
num_epochs) continues exactly as the uninterrupted run would have.

Decisions and extras (opendl's; HALCON has no counterpart):
- Reading the preprocessed samples and augmenting them runs in background threads ('num_data_workers' of
  the 'data_loader' GenParam, default 2) that prefetch up to 'prefetch_batches' (default 4) batches, so the
  step does not wait for the disk. Every batch is augmented with its own generator seeded from HALCON's seed
  pool (one seed per stream position), so results do not depend on the thread timing and resuming reproduces
  the uninterrupted run. The time the step waited for data and the loader's samples/s are reported in the
  TrainInfos ('data_wait_seconds', 'data_samples_per_second').
- Early stopping: GenParam 'early_stopping' dict with 'patience' (number of evaluations without improvement of
  the first comparison key, > 0), 'min_delta' (improvement that counts, default 0) and 'restore_best'
  ('true' default: the model handle ends with the weights of the best evaluation). The reason is recorded in
  the last TrainInfo ('stopped_early' 1, 'best_epoch').
- 'evaluate_before_train' ('true'/'false', GenParam as in newer HALCON versions): evaluate once before the
  first step.
- EnableDisplay 'true' shows a tqdm progress bar (ETA, loss, latest validation value) on stderr instead of
  HALCON's training window, and writes PNG plots with matplotlib: 'training_progress.png' (loss and the
  validation measure over epochs) and, for classification, 'confusion_matrix.png' of the last validation
  evaluation. They go to the display param 'plot_dir' (an opendl key; default: the directory of the first
  serialization strategy's basename).
"""

from __future__ import annotations

import math
import os
import re
import threading
import time

import numpy as np

from . import _proc
from ._convert import as_list
from ._handles import HHandle, expect_handle
from .dicts import read_dict, write_dict
from .errors import HOperatorError
from .model import get_dl_model_param, set_dl_model_param, train_dl_model_batch, write_dl_model

_GEN_PARAMS = ("evaluate", "augment", "change", "serialize", "display", "early_stopping", "evaluate_before_train",
               "data_loader")
_DISPLAY_KEYS = ("enabled", "change_plot_interval_seconds", "num_images", "selected_percentage_train_samples",
                 "update_images_interval_epochs", "x_axis_label", "status_model_params", "tiled_param",
                 "randomize_images", "plot_dir")
_TRAINABLE_TYPES = ("classification", "segmentation", "detection")
_MODEL_INFO_PARAMS = ("batch_size", "batch_size_multiplier", "learning_rate", "momentum", "solver_type",
                      "weight_prior", "image_width", "image_height", "image_num_channels", "type")


def _plain(v):
    """A dict handle / Python dict / list as plain Python data (dicts for nested handles)."""
    if isinstance(v, HHandle):
        v = expect_handle(v, "dict", "train_dl_model", "dict")
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def _one(v, default=None):
    v = _plain(v)
    if isinstance(v, list):
        return v[0] if v else default
    return default if v is None else v


def _sub(v) -> dict:
    """A nested dict value (a dict, or a 1-element tuple holding one; [] for none) as a plain dict."""
    v = _plain(v)
    if isinstance(v, list) and len(v) == 1 and isinstance(v[0], dict):
        return v[0]
    return v if isinstance(v, dict) else {}


def _dicts(v) -> list:
    """A tuple of dict handles / dicts (or one) as a list of plain dicts."""
    v = _plain(v)
    if v is None or v == []:
        return []
    if isinstance(v, dict):
        return [v]
    return [x for x in v if isinstance(x, dict)]


# ---------------------------------------------------------------- create_dl_train_param


def _comparison_keys(model_type: str, measures: list, op: str) -> tuple:
    """The evaluation_comparison_keys for the measures asked for (spec C.6) and whether higher is better. Every
    key is one the evaluation computes, and all keys point the same way (their mean ranks the evaluations):
    classification the precision / recall / F-score means when any of them is asked for (higher is better),
    else the top-k errors (lower is better); segmentation the scalar measures asked for, else the per-class
    ones (class_iou, class_pixel_accuracy; their mean counts); detection mean_ap (and mean_soap_tp when 'soap'
    is asked for), found under max_num_detections_all / area_all. Measures that give no number to compare
    (only confusion matrices) are refused: 'best' serialization and early stopping would never react."""
    if model_type == "detection":
        return ["mean_ap"] + (["mean_soap_tp"] if "soap" in measures else []), 1
    if not measures or "all" in measures:
        return (["mean_iou"], 1) if model_type == "segmentation" else (["top1_error"], 0)
    if model_type == "segmentation":
        scalar = [m for m in measures if m in ("pixel_accuracy", "mean_accuracy", "mean_iou", "frequency_weighted_iou")]
        keys, highest = scalar or [m for m in measures if m in ("class_iou", "class_pixel_accuracy")], 1
    else:
        rates = [f"mean_{m}" for m in measures if m in ("precision", "recall", "f_score")]
        keys = rates or [m for m in measures if re.fullmatch(r"top\d+_error", m)]
        highest = 1 if rates else 0
    if not keys:
        raise HOperatorError(1307, f"'evaluate' measures {measures!r} give no number to compare evaluations by "
                                   "('best' serialization, early stopping): add a scalar measure such as "
                                   f"{'mean_iou' if model_type == 'segmentation' else 'top1_error'}", op)
    return keys, highest


def create_dl_train_param(dlmodel_handle, num_epochs, evaluation_interval_epochs, enable_display, random_seed,
                          gen_param_name, gen_param_value):
    """TrainParam dict (spec C.6) for train_dl_model. gen_param_name: 'evaluate' (evaluate_dl_model GenParam),
    'augment' (augment_dl_samples GenParam), 'change' (change strategies), 'serialize' (serialization
    strategies; default [{type: 'best', basename: 'model_best'}]), 'display'; opendl extras 'early_stopping',
    'evaluate_before_train', 'data_loader' ({'num_data_workers', 'prefetch_batches'}). Every value is checked
    here, against the model, so that train_dl_model does not fail after it changed the model."""
    op = "create_dl_train_param"
    expect_handle(dlmodel_handle, "dl_model", op, "dlmodel_handle")
    model_type = get_dl_model_param(dlmodel_handle, "type")[0]
    if model_type not in _TRAINABLE_TYPES:
        raise HOperatorError(_proc.H_ERR_DL_MODEL_OPERATOR_UNSUPPORTED,
                             f"train_dl_model does not support models of type '{model_type}' yet "
                             f"(supported: {', '.join(_TRAINABLE_TYPES)})", op)
    ne = as_list(num_epochs)
    if len(ne) != 1 or not _finite(ne[0]) or ne[0] <= 0:
        raise HOperatorError(1302, f"num_epochs must be one finite number > 0, got {num_epochs!r}", op)
    ei = as_list(evaluation_interval_epochs)
    if len(ei) != 1 or not _finite(ei[0]) or ei[0] < 0:
        raise HOperatorError(1303, f"evaluation_interval_epochs must be one finite number >= 0, got "
                                   f"{evaluation_interval_epochs!r}", op)
    display = _proc.flag(enable_display, op, 1304, "enable_display")
    seed = as_list(random_seed)
    if seed and (len(seed) != 1 or not _proc.is_int(seed[0]) or not 0 <= seed[0] < 2 ** 63):
        # the TrainParam dict holds it as a 64-bit signed integer
        raise HOperatorError(1305, f"random_seed must be one integer in [0, 2^63) or [], got {random_seed!r}", op)
    seed = int(seed[0]) if seed else int(time.time())
    names, values = as_list(gen_param_name), as_list(gen_param_value)
    if len(names) != len(values):
        raise HOperatorError(1407, f"{len(names)} gen_param_name(s) but {len(values)} gen_param_value(s)", op)
    gp = {}
    for n, v in zip(names, values):
        if n not in _GEN_PARAMS:
            raise HOperatorError(1306, f"the provided gen_param_name {n!r} is invalid (accepted: "
                                       f"{', '.join(repr(a) for a in _GEN_PARAMS)})", op)
        if n in gp:
            raise HOperatorError(1306, f"gen_param_name {n!r} is given twice", op)
        if n in ("evaluate", "augment", "display", "early_stopping", "data_loader"):
            p = _plain(v)
            if isinstance(p, list) and len(p) == 1:
                p = p[0]
            if p != [] and not isinstance(p, dict):
                raise HOperatorError(1307, f"gen_param_value of {n!r} must be a dict (or []), got "
                                           f"{type(v).__name__} {v!r}", op)
            gp[n] = p or {}
        else:
            gp[n] = _plain(v)
    evaluation_param = gp.get("evaluate", {})
    keys, best_highest = _comparison_keys(model_type, [m for m in as_list(evaluation_param.get("measures", []))
                                                       if isinstance(m, str)], op)
    display_param = dict(gp.get("display", {}), enabled=[1 if display else 0])
    serialize = gp.get("serialize", [])
    if not _dict_list(serialize):
        raise HOperatorError(1307, f"'serialize' takes dicts (serialization strategies), got {serialize!r}", op)
    change = gp.get("change", [])
    if not _dict_list(change):
        raise HOperatorError(1307, f"'change' takes dicts (change strategies), got {change!r}", op)
    loader = gp.get("data_loader", {})
    tp = {
        "num_epochs": [ne[0]],
        "evaluation_interval_epochs": [ei[0]],
        "evaluation_param": evaluation_param,
        "augmentation_param": gp.get("augment", {}),
        "change_strategies": _dicts(change),
        "serialization_strategies": _dicts(serialize) or [{"type": ["best"], "basename": ["model_best"]}],
        "seed_rand": [seed],
        "display_param": display_param,
        "update_interval_seconds": [2],
        "evaluation_comparison_keys": keys,
        "evaluation_comparison_keys_best_highest": [best_highest],
        "num_samples_mean_loss": [1000],
        "evaluate_before_train": ["true" if _proc.flag(gp.get("evaluate_before_train", "false"), op, 1307,
                                                       "'evaluate_before_train'") else "false"],
        "early_stopping": gp.get("early_stopping") or [],
        "data_loader": {"num_data_workers": [_one(loader.get("num_data_workers"), 2)],
                        "prefetch_batches": [_one(loader.get("prefetch_batches"), 4)],
                        **{k: v for k, v in loader.items() if k not in ("num_data_workers", "prefetch_batches")}},
    }
    tp = _check_train_param(tp, dlmodel_handle, op, 1307)
    from .dicts import from_python_dict
    return from_python_dict(tp)


def _finite(v) -> bool:
    return _proc.is_number(v) and math.isfinite(v)


def _dict_list(v) -> bool:
    """[] / a dict / a list of dicts (what a tuple of dict handles reads as)."""
    return v in (None, []) or isinstance(v, dict) or (isinstance(v, list) and all(isinstance(x, dict) for x in v))


_TRAIN_PARAM_KEYS = ("num_epochs", "evaluation_interval_epochs", "evaluation_param", "augmentation_param",
                     "change_strategies", "serialization_strategies", "seed_rand", "display_param",
                     "update_interval_seconds", "evaluation_comparison_keys",
                     "evaluation_comparison_keys_best_highest", "num_samples_mean_loss", "evaluate_before_train",
                     "early_stopping", "data_loader")
# Parameters a change strategy may set that only hold a number in the solver: checking a value by setting it and
# setting the old one back leaves the model exactly as it was.
_SOLVER_NUMBERS = ("learning_rate", "momentum", "weight_prior", "adam_beta1", "adam_beta2", "adam_epsilon")


def _check_train_param(tp: dict, model, op: str, code: int) -> dict:
    """A TrainParam (plain dict) checked value by value against the model -> its normalised form. Raises
    HOperatorError(code, ...) naming the key and value at fault; changes nothing."""
    def fail(msg):
        raise HOperatorError(code, msg, op)

    def one(key, where, check, what, default=None):
        v = where.get(key, default if default is None else [default])
        v = as_list(v)
        if len(v) != 1 or not check(v[0]):
            fail(f"{key!r} must be {what}, got {v!r}")
        return v[0]

    for k in tp:
        if k not in _TRAIN_PARAM_KEYS:
            fail(f"unknown train_param key {k!r} (create_dl_train_param writes "
                 f"{', '.join(repr(a) for a in _TRAIN_PARAM_KEYS)})")
    is_int = _proc.is_int
    out = {}
    out["num_epochs"] = [one("num_epochs", tp, lambda v: _finite(v) and v > 0, "one finite number > 0")]
    out["evaluation_interval_epochs"] = [one("evaluation_interval_epochs", tp, lambda v: _finite(v) and v >= 0,
                                             "one finite number >= 0", 0)]
    out["seed_rand"] = [one("seed_rand", tp, lambda v: is_int(v) and 0 <= v < 2 ** 63, "one integer in [0, 2^63)",
                            0)]
    out["update_interval_seconds"] = [one("update_interval_seconds", tp, lambda v: _finite(v) and v >= 0,
                                          "one finite number >= 0", 2)]
    out["num_samples_mean_loss"] = [one("num_samples_mean_loss", tp, lambda v: is_int(v) and 1 <= v < 2 ** 31,
                                        "one integer >= 1", 1000)]
    out["evaluate_before_train"] = [one("evaluate_before_train", tp, lambda v: v in ("true", "false"),
                                        "'true' or 'false'", "false")]
    out["evaluation_comparison_keys_best_highest"] = [
        one("evaluation_comparison_keys_best_highest", tp, lambda v: v in (0, 1) and is_int(v), "0 or 1", 0)]
    keys = as_list(tp.get("evaluation_comparison_keys", ["top1_error"]))
    if not keys or not all(isinstance(k, str) and k for k in keys):
        fail(f"'evaluation_comparison_keys' must be names of evaluation measures, got {keys!r}")
    out["evaluation_comparison_keys"] = keys

    def sub(key):
        v = _plain(tp.get(key, {}))
        if isinstance(v, list) and len(v) <= 1 and all(isinstance(x, dict) for x in v):
            v = v[0] if v else {}
        if not isinstance(v, dict):
            fail(f"{key!r} must be a dict, got {v!r}")
        return v

    def nested(name, check, arg):
        try:
            check(arg)
        except HOperatorError as e:
            raise HOperatorError(code, f"{name}: {e.extended_error_message}", op) from None

    from .evaluation import check_evaluation_param
    from .preprocess import _aug_params
    out["evaluation_param"] = sub("evaluation_param")
    nested("'evaluate'", lambda p: check_evaluation_param(model, p, op), out["evaluation_param"])
    out["augmentation_param"] = sub("augmentation_param")
    nested("'augment'", lambda p: _aug_params(p, op), out["augmentation_param"])
    out["display_param"] = _check_display(sub("display_param"), fail)
    early = sub("early_stopping")
    out["early_stopping"] = _check_early(early, fail) if early else []
    out["data_loader"] = _check_loader(sub("data_loader"), fail)
    serial, change = _plain(tp.get("serialization_strategies", [])), _plain(tp.get("change_strategies", []))
    if not _dict_list(serial) or not _dict_list(change):
        fail("'serialization_strategies' and 'change_strategies' must be dicts")
    out["serialization_strategies"] = [_check_serialization(s, fail) for s in _dicts(serial)]
    out["change_strategies"] = [_check_change(c, model, fail) for c in _dicts(change)]
    return out


def _check_display(d: dict, fail) -> dict:
    for k in d:
        if k not in _DISPLAY_KEYS:
            fail(f"unknown display key {k!r} (accepted: {', '.join(repr(a) for a in _DISPLAY_KEYS)})")
    checks = {"selected_percentage_train_samples": (lambda v: _finite(v) and 0 <= v <= 100, "a number in [0, 100]"),
              "plot_dir": (lambda v: isinstance(v, str) and "\0" not in v, "a folder name"),
              "num_images": (lambda v: _proc.is_int(v) and v >= 0, "an integer >= 0"),
              "change_plot_interval_seconds": (lambda v: _finite(v) and v >= 0, "a number >= 0"),
              "update_images_interval_epochs": (lambda v: _finite(v) and v >= 0, "a number >= 0"),
              "enabled": (lambda v: v in (0, 1, "true", "false"), "0 or 1"),
              "x_axis_label": (lambda v: v in ("epochs", "iterations"), "'epochs' or 'iterations'"),
              "randomize_images": (lambda v: v in ("true", "false"), "'true' or 'false'"),
              "tiled_param": (lambda v: isinstance(v, dict), "a dict")}
    for k, (check, what) in checks.items():
        if k in d:
            v = as_list(d[k])
            if len(v) != 1 or not check(v[0]):
                fail(f"display key {k!r} must be {what}, got {d[k]!r}")
    if "status_model_params" in d:
        v = as_list(d["status_model_params"])
        if not all(isinstance(x, str) and x in _MODEL_INFO_PARAMS for x in v):
            fail(f"display key 'status_model_params' takes model parameter names "
                 f"({', '.join(repr(a) for a in _MODEL_INFO_PARAMS)}), got {d['status_model_params']!r}")
    if "plot_dir" in d:
        _check_dir(as_list(d["plot_dir"])[0], "display key 'plot_dir'", fail)
    return d


def _check_loader(d: dict, fail) -> dict:
    for k in d:
        if k not in ("num_data_workers", "prefetch_batches"):
            fail(f"unknown data_loader key {k!r} (accepted: 'num_data_workers', 'prefetch_batches')")
    w, p = as_list(d.get("num_data_workers", [2])), as_list(d.get("prefetch_batches", [4]))
    if len(w) != 1 or not _proc.is_int(w[0]) or not 0 <= w[0] <= 256:
        fail(f"data_loader 'num_data_workers' must be an integer in [0, 256] (0: load in the training thread), "
             f"got {d.get('num_data_workers')!r}")
    if len(p) != 1 or not _proc.is_int(p[0]) or not 1 <= p[0] <= 4096:
        fail(f"data_loader 'prefetch_batches' must be an integer in [1, 4096], got {d.get('prefetch_batches')!r}")
    return {"num_data_workers": [int(w[0])], "prefetch_batches": [int(p[0])]}


def _check_dir(path: str, what: str, fail) -> None:
    """A folder train_dl_model writes into, creating it if needed: refused now when that cannot work, not after
    the training."""
    p = os.path.abspath(path or ".")
    while not os.path.exists(p) and os.path.dirname(p) != p:
        p = os.path.dirname(p)
    if not os.path.isdir(p):
        fail(f"{what} {path!r}: {p!r} is a file, not a folder")
    if not os.access(p, os.W_OK | os.X_OK):
        fail(f"{what} {path!r}: the folder {p!r} is not writable")


def _check_serialization(s: dict, fail) -> dict:
    for k in s:
        if k not in ("type", "basename", "epochs"):
            fail(f"unknown serialization strategy key {k!r} (accepted: 'type', 'basename', 'epochs')")
    kind = as_list(s.get("type"))
    if len(kind) != 1:
        fail(f"serialization strategy 'type' takes one value (one strategy per dict), got {s.get('type')!r}")
    kind = kind[0]
    if kind not in ("best", "final", "epochs", "current"):
        fail(f"serialization strategy type {kind!r} is unknown (accepted: 'best', 'final', 'epochs', 'current')")
    out = {"type": [kind]}
    base = as_list(s.get("basename", []))
    for b in base:
        if not isinstance(b, str) or not b or "\0" in b:
            fail(f"serialization strategy {kind!r}: 'basename' must be non-empty file names, got {base!r}")
    for b in base:
        _check_dir(os.path.dirname(b), f"serialization strategy {kind!r}: 'basename'", fail)
        if os.path.isdir(b + ".hdl") or os.path.isdir(b + "_info.hdict"):
            fail(f"serialization strategy {kind!r}: 'basename' {b!r}: {b}.hdl or {b}_info.hdict is a folder")
    if kind == "epochs":
        epochs = as_list(s.get("epochs", []))
        if not epochs or not all(_finite(e) and e > 0 for e in epochs):
            fail(f"serialization strategy 'epochs' needs 'epochs', finite numbers > 0, got {epochs!r}")
        if len(base) not in (0, 1, len(epochs)):
            fail("serialization strategy 'epochs' takes one basename or one per epoch")
        order = sorted(range(len(epochs)), key=lambda i: epochs[i])
        out["epochs"] = [float(epochs[i]) for i in order]
        out["basename"] = [base[i] for i in order] if len(base) == len(epochs) > 1 else base or ["model_at_epoch"]
    else:
        if "epochs" in s:
            fail(f"serialization strategy {kind!r} takes no 'epochs' (only type 'epochs' does)")
        if len(base) > 1:
            fail(f"serialization strategy {kind!r} takes one basename, got {base!r}")
        out["basename"] = base or [kind]
    return out


def _check_value(model, name: str, value: list, fail) -> None:
    """Whether set_dl_model_param(model, name, value) would succeed, leaving the model as it is."""
    from .model import _model
    core = _model(model, "set_dl_model_param")
    try:
        if name in _SOLVER_NUMBERS:
            old = core.get_param(name)
            core.set_param(name, value)  # a plain number of the solver: set, then set back
            core.set_param(name, old)
        elif name == "solver_type":
            if value not in (["sgd"], ["adam"]):
                fail(f"change strategy for 'solver_type': values must be 'sgd' or 'adam', got {value!r}")
        else:
            from . import _core
            clone = _core.deserialize_model(bytes(core.serialize()))  # a parameter that reshapes the network
            clone.set_param(name, value)
    except HOperatorError as e:
        fail(f"change strategy for {name!r}: {e.extended_error_message}")


def _check_change(c: dict, model, fail) -> dict:
    allowed = ("model_param", "initial_value", "epochs", "values", "scale_momentum_threshold")
    for k in c:
        if k not in allowed:
            fail(f"unknown change strategy key {k!r} (accepted: {', '.join(repr(a) for a in allowed)})")
    for k in ("model_param", "initial_value", "epochs", "values"):
        if k not in c:
            fail(f"change strategy lacks key {k!r}")
    name = as_list(c["model_param"])
    if len(name) != 1 or not isinstance(name[0], str):
        fail(f"change strategy 'model_param' must be one model parameter name, got {c['model_param']!r}")
    name = name[0]
    if name in ("meta_data", "device", "runtime", "gpu", "type", "class_ids", "class_names"):
        fail(f"change strategy 'model_param' {name!r} cannot change during training")
    if name in ("batch_size", "batch_size_multiplier", "image_width", "image_height", "image_num_channels",
                "image_dimensions"):
        # the batch stream (samples per iteration, iterations per epoch) and the preprocessed samples are fixed
        # for the run; a later run (train_dl_model with start_epoch) may use other values
        fail(f"change strategy 'model_param' {name!r} is not supported: train_dl_model keeps the batch size and "
             "the image size of the preprocessed dataset for the whole run")
    epochs, values = as_list(c["epochs"]), as_list(c["values"])
    if not epochs or not all(_finite(e) and e >= 0 for e in epochs):
        fail(f"change strategy for {name!r}: 'epochs' must be finite numbers >= 0, got {epochs!r}")
    if len(epochs) != len(values):
        fail(f"change strategy for {name!r}: {len(epochs)} epochs but {len(values)} values")
    initial = as_list(c["initial_value"])
    for v in [initial] + [as_list(v) for v in values]:
        _check_value(model, name, v, fail)
    order = sorted(range(len(epochs)), key=lambda i: epochs[i])
    out = {"model_param": [name], "initial_value": initial, "epochs": [float(epochs[i]) for i in order],
           "values": [values[i] for i in order]}
    thr = as_list(c.get("scale_momentum_threshold", []))
    if thr:
        if len(thr) != 1 or not _finite(thr[0]) or thr[0] <= 0:
            fail(f"change strategy 'scale_momentum_threshold' must be one number > 0, got {thr!r}")
        out["scale_momentum_threshold"] = [float(thr[0])]
    return out


def _check_early(e: dict, fail) -> dict:
    for k in e:
        if k not in ("patience", "min_delta", "restore_best"):
            fail(f"unknown early_stopping key {k!r} (accepted: 'patience', 'min_delta', 'restore_best')")
    patience = as_list(e.get("patience"))
    if len(patience) != 1 or not _proc.is_int(patience[0]) or patience[0] < 1:
        fail(f"early_stopping 'patience' must be an integer >= 1 (evaluations), got {e.get('patience')!r}")
    delta = as_list(e.get("min_delta", [0.0]))
    if len(delta) != 1 or not _finite(delta[0]) or delta[0] < 0:
        fail(f"early_stopping 'min_delta' must be a finite number >= 0, got {e.get('min_delta')!r}")
    restore = as_list(e.get("restore_best", ["true"]))
    if len(restore) != 1 or restore[0] not in ("true", "false", 0, 1) or isinstance(restore[0], float):
        fail(f"early_stopping 'restore_best' takes 'true'/'false' or 1/0, got {e.get('restore_best')!r}")
    return {"patience": [int(patience[0])], "min_delta": [float(delta[0])],
            "restore_best": [1 if restore[0] in ("true", 1) else 0]}


# ---------------------------------------------------------------- train_dl_model


def _measure(result: dict, key: str):
    """A comparison key's value in an EvaluationResult (at the top, under 'global', or for detection under
    max_num_detections_all / area_all, else the first of each); None if absent."""
    places = [result, _sub(result.get("global"))]
    per_num = [k for k in result if isinstance(k, str) and k.startswith("max_num_detections_")]
    if per_num:
        areas = _sub(result.get("max_num_detections_all" if "max_num_detections_all" in per_num else per_num[0]))
        names = [k for k in areas if isinstance(k, str) and k.startswith("area_")]
        if names:
            places.append(_sub(areas.get("area_all" if "area_all" in names else names[0])))
    for where in places:
        if key in where:
            v = where[key]
            v = v if isinstance(v, list) else [v]
            if v and all(_proc.is_number(x) for x in v):
                return float(np.mean(v))  # a tuple (class_iou, per-class precision) counts by its mean, as HALCON's
    return None


def reduce_dl_evaluation_result(evaluation_result, evaluation_comparison_keys):
    """Mean of the comparison keys found in the EvaluationResult -> (value, valid_evaluation_keys); a key holding
    a tuple (class_iou, precision per class) contributes the mean of its values; (-1, []) when none is found."""
    res = _plain(evaluation_result)
    vals, found = [], []
    for k in as_list(evaluation_comparison_keys):
        v = _measure(res, k)
        if v is not None:
            vals.append(v)
            found.append(k)
    return (float(np.mean(vals)) if vals else -1.0), found


class _Stream:
    """HALCON's random stream: per epoch a shuffle of the 'train' indices and a seed per stream position, drawn
    from one generator epoch by epoch when a batch first needs them. The sequence is the same however many
    epochs a run asks for (a run continued with 'resume' and a larger num_epochs sees the same stream), and a
    run holds only the epochs it reached, so a large num_epochs with early stopping costs no memory up front."""

    def __init__(self, seed: int, train_idx):
        self.gen = np.random.Generator(np.random.PCG64(seed))
        self.idx = np.asarray(train_idx)
        self.perms, self.pools = [], []
        self.lock = threading.Lock()

    def batch(self, i: int, b: int):
        """Dataset indices of batch i (stream positions i*b .. (i+1)*b - 1, which may run into the next epoch)
        and the seed of its last position."""
        n = len(self.idx)
        lo, hi = i * b, (i + 1) * b
        with self.lock:
            while len(self.perms) * n < hi:
                self.perms.append(self.idx[self.gen.permutation(n)])
                self.pools.append(self.gen.integers(0, 2 ** 31 - 1, size=n))
            out = [int(self.perms[p // n][p % n]) for p in range(lo, hi)]
            return out, int(self.pools[(hi - 1) // n][(hi - 1) % n])


class _Loader:
    """Prefetches training batches in background threads: read_dl_samples + augment_dl_samples, each batch
    augmented with its own generator seeded from the seed pool."""

    def __init__(self, dldataset, stream, total_batch, aug, workers, prefetch, first, last):
        from concurrent.futures import ThreadPoolExecutor
        self.ds, self.stream, self.b = dldataset, stream, total_batch
        self.aug = aug
        self.pool = ThreadPoolExecutor(max_workers=workers) if workers > 0 else None
        self.prefetch = prefetch
        self.next_submit, self.last = first, last
        self.pending = {}
        self.load_seconds = 0.0
        self.loaded = 0
        self.lock = threading.Lock()

    def _load(self, i):
        from .datasets import read_dl_samples
        from .preprocess import _augment_batch
        t0 = time.perf_counter()
        idx, seed = self.stream.batch(i, self.b)
        batch = read_dl_samples(self.ds, idx)
        if self.aug:
            _augment_batch(batch, self.aug, np.random.Generator(np.random.PCG64(seed)), "train_dl_model")
        with self.lock:
            self.load_seconds += time.perf_counter() - t0
            self.loaded += len(idx)
        return batch

    def get(self, i):
        if self.pool is None:
            return self._load(i)
        while self.next_submit < self.last and self.next_submit < i + self.prefetch:
            self.pending[self.next_submit] = self.pool.submit(self._load, self.next_submit)
            self.next_submit += 1
        return self.pending.pop(i).result()

    def close(self):
        if self.pool is not None:
            for f in self.pending.values():
                f.cancel()
            self.pool.shutdown(wait=True)


def _apply_change_strategies(model, strategies: list, epoch: float, state: dict) -> None:
    """Spec E.7, before every iteration."""
    for k, s in enumerate(strategies):
        name = s["model_param"][0]
        new = s["initial_value"]
        for e, v in zip(s["epochs"], s["values"]):
            if epoch >= e:
                new = as_list(v)
        cur = state.get(("value", k))
        if cur is None:
            cur = get_dl_model_param(model, name)
        thr = s.get("scale_momentum_threshold", [])
        sgd = name == "learning_rate" and get_dl_model_param(model, "solver_type")[0] == "sgd" and thr
        if list(new) != list(cur):
            if sgd and cur and new and cur[0] > 1e-7:
                ratio = max(new[0] / max(cur[0], 1e-10), cur[0] / max(new[0], 1e-10))
                if ratio > thr[0]:
                    mu = get_dl_model_param(model, "momentum")[0]
                    state[("momentum", k)] = mu
                    set_dl_model_param(model, "momentum", new[0] / cur[0] * mu)
            set_dl_model_param(model, name, new)
        elif sgd and ("momentum", k) in state:
            set_dl_model_param(model, "momentum", state.pop(("momentum", k)))
        state[("value", k)] = list(new)


def _write_snapshot(model, basename: str, train_infos, evaluation_infos, epoch: float) -> None:
    """<basename>.hdl and <basename>_info.hdict, both or neither: each is written to a temporary file next to it,
    and the two are renamed only when both are complete (a 'resume' reads the pair)."""
    from .dicts import from_python_dict
    from .errors import H_ERR_FILE_WR
    info = from_python_dict({"train_infos": list(train_infos), "evaluation_infos": list(evaluation_infos),
                             "epoch": [float(epoch)]})
    paths = (basename + ".hdl", basename + "_info.hdict")
    temps = tuple(f"{p}.opendl-{os.getpid()}.tmp" for p in paths)
    try:
        d = os.path.dirname(basename)
        if d:
            os.makedirs(d, exist_ok=True)
        write_dl_model(model, temps[0])
        write_dict(info, temps[1], "file_type", "hdict")
        for t, p in zip(temps, paths):
            os.replace(t, p)
    except (OSError, HOperatorError) as e:
        for t in temps:
            if os.path.isfile(t):
                os.remove(t)
        why = e.extended_error_message if isinstance(e, HOperatorError) else (e.strerror or str(e))
        raise HOperatorError(H_ERR_FILE_WR, f"serialization strategy basename {basename!r}: cannot write "
                                            f"{basename}.hdl / {basename}_info.hdict: {why}", "train_dl_model") from None


def _resume_point(strategies: list, num_epochs: float, op: str):
    """The state saved by the 'current' serialization strategy -> (epoch, train_infos, evaluation_infos), checked
    before anything trains: a damaged or hand-edited info file raises 5238 naming the key."""
    for s in strategies:
        if s["type"][0] == "current":
            path = s["basename"][0] + "_info.hdict"
            if not os.path.isfile(path):
                raise HOperatorError(5200, f"start_epoch 'resume': {path} (written by the 'current' serialization "
                                           "strategy) does not exist", op)
            info = _plain(read_dict(path, [], []))

            def damaged(msg):
                raise HOperatorError(5238, f"start_epoch 'resume': {path}: {msg}", op)
            epoch = as_list(info.get("epoch"))
            if len(epoch) != 1 or not _finite(epoch[0]) or epoch[0] < 0:
                damaged(f"'epoch' must be one finite number >= 0, got {info.get('epoch')!r}")
            if epoch[0] > num_epochs:
                raise HOperatorError(1304, f"start_epoch 'resume': the saved run reached epoch {epoch[0]:g}, beyond "
                                           f"num_epochs ({num_epochs:g}); raise num_epochs to continue it", op)
            infos = []
            for key in ("train_infos", "evaluation_infos"):
                v = info.get(key, [])
                if not _dict_list(v) or any(not _finite(_one(d.get("epoch"), math.nan)) for d in _dicts(v)):
                    damaged(f"{key!r} must be dicts holding their 'epoch', got {v!r}")
                infos.append(_dicts(v))
            return float(epoch[0]), infos[0], infos[1]
    raise HOperatorError(1304, "start_epoch 'resume' needs a 'current' serialization strategy (its "
                               "<basename>_info.hdict holds the epoch to continue from)", op)


def train_dl_model(dldataset, dlmodel_handle, train_param, start_epoch):
    """Trains the model on the dataset's 'train' split (spec E.9). Returns (train_results, train_infos,
    evaluation_infos): one DLTrainResult per iteration run, TrainInfo dicts collected every
    update_interval_seconds and at the end, one EvaluationInfo per evaluation."""
    op = "train_dl_model"
    from .dicts import from_python_dict
    from .evaluation import evaluate_dl_model
    ds = _proc.content(dldataset, op, "dldataset")
    expect_handle(dlmodel_handle, "dl_model", op, "dlmodel_handle")
    tp = _plain(train_param) if isinstance(train_param, (HHandle, dict)) else None
    if not isinstance(tp, dict) or "num_epochs" not in tp:
        raise HOperatorError(1203, "train_param must be the dict of create_dl_train_param", op)
    tp = _check_train_param(tp, dlmodel_handle, op, 1303)  # before anything changes the model
    if "preprocess_param" not in ds:
        raise HOperatorError(1301, "the dataset needs to be preprocessed already (preprocess_dl_dataset): it has no "
                                   "'preprocess_param'", op)
    samples = _proc.samples_of(ds, op)
    train_idx = [i for i, s in enumerate(samples) if _proc.get1(s, "split") == "train"]
    total_batch = get_dl_model_param(dlmodel_handle, "batch_size")[0] * \
        get_dl_model_param(dlmodel_handle, "batch_size_multiplier")[0]
    if len(train_idx) < total_batch:
        raise HOperatorError(1301, f"the dataset has {len(train_idx)} 'train' samples, fewer than batch_size * "
                                   f"batch_size_multiplier = {total_batch} (split it with split_dl_dataset)", op)
    ds_ids = set(_proc.get(ds, "class_ids", []))
    missing = [c for c in get_dl_model_param(dlmodel_handle, "class_ids") if c not in ds_ids]
    if missing:
        raise HOperatorError(1302, f"model class ids {missing} are not in the dataset's 'class_ids'", op)
    num_epochs = float(_one(tp["num_epochs"]))
    strategies = _dicts(tp.get("serialization_strategies"))
    changes = _dicts(tp.get("change_strategies"))
    display = _sub(tp.get("display_param"))
    show = bool(_one(display.get("enabled"), 0))
    early = _sub(tp.get("early_stopping")) or None
    loader_cfg = _sub(tp.get("data_loader"))
    keys = as_list(tp.get("evaluation_comparison_keys", ["top1_error"]))
    highest = bool(_one(tp.get("evaluation_comparison_keys_best_highest"), 0))
    eval_param = _sub(tp.get("evaluation_param"))
    ipe = len(train_idx) // total_batch
    num_iterations = int(ipe * num_epochs)
    interval = int(math.floor(float(_one(tp.get("evaluation_interval_epochs"), 0)) * ipe))
    has_validation = any(_proc.get1(s, "split") == "validation" for s in samples)

    # Where to start.
    train_infos, evaluation_infos = [], []
    se = as_list(start_epoch)
    if se == ["resume"]:
        epoch0, train_infos, evaluation_infos = _resume_point(strategies, num_epochs, op)
    elif len(se) == 1 and _proc.is_number(se[0]) and 0 <= se[0] <= num_epochs:
        epoch0 = float(se[0])
    else:
        raise HOperatorError(1304, f"start_epoch must be a number in 0..num_epochs ({num_epochs:g}) or 'resume', "
                                   f"got {start_epoch!r}", op)
    first = min(int(round(epoch0 * ipe)), num_iterations)

    # HALCON's random stream: per epoch a shuffle of the train indices and a seed per stream position (_Stream).
    # The train subset of selected_percentage_train_samples is drawn from a generator of its own.
    seed = int(_one(tp.get("seed_rand"), 0))
    from .system import set_system
    set_system("seed_rand", seed)
    stream = _Stream(seed, train_idx)
    gen = np.random.Generator(np.random.PCG64([seed, 1]))
    aug = _sub(tp.get("augmentation_param"))
    if aug and get_dl_model_param(dlmodel_handle, "type")[0] == "detection" and \
            get_dl_model_param(dlmodel_handle, "instance_type")[0] == "rectangle2":
        # As HALCON's train_dl_model: the model's boxes without a heading stay without one when augmented.
        aug = dict(aug)
        aug.setdefault("ignore_direction", get_dl_model_param(dlmodel_handle, "ignore_direction")[0])
        aug.setdefault("class_ids_no_orientation", get_dl_model_param(dlmodel_handle, "class_ids_no_orientation"))

    best_value, best_epoch, best_bytes, since_best = None, None, None, 0
    for info in evaluation_infos:  # a resumed run knows its best value so far
        v, _ = reduce_dl_evaluation_result(_sub(info.get("result")), keys)
        if best_value is None or (v > best_value if highest else v < best_value):
            best_value, best_epoch = v, float(_one(info.get("epoch"), 0.0))

    plot_dir = _one(display.get("plot_dir"))
    if plot_dir is None:
        plot_dir = os.path.dirname(strategies[0]["basename"][0]) if strategies else ""
    bar = None
    if show:
        from tqdm import tqdm
        bar = tqdm(total=num_iterations, initial=first, unit="it", desc="train_dl_model", dynamic_ncols=True)

    change_state = {}
    results, losses, wait_s = [], [], 0.0
    t_start, t_last_info = time.time(), time.time()
    stopped_early = False
    loader = _Loader(dldataset, stream, total_batch, aug, int(_one(loader_cfg.get("num_data_workers"), 2)),
                     int(_one(loader_cfg.get("prefetch_batches"), 4)), first, num_iterations)

    def model_params():
        out = {}
        for n in _MODEL_INFO_PARAMS:
            try:
                out[n] = get_dl_model_param(dlmodel_handle, n)
            except HOperatorError:
                pass
        return out

    def train_info(epoch):
        recent = losses[-max(1, math.ceil(int(_one(tp.get("num_samples_mean_loss"), 1000)) / total_batch)):]
        info = {"epoch": [float(epoch)], "num_epochs": [num_epochs], "num_iterations_per_epoch": [ipe],
                "model_params": model_params(), "mean_loss": [float(np.mean(recent)) if recent else -1.0],
                "start_epoch": [epoch0], "start_time": [t_start], "time_elapsed": [time.time() - t_start],
                "data_wait_seconds": [wait_s],
                "data_samples_per_second": [loader.loaded / loader.load_seconds if loader.load_seconds else -1.0]}
        if best_value is not None:
            info["best_evaluation_value"] = [best_value]
            info["best_epoch"] = [best_epoch]
        if stopped_early:
            info["stopped_early"] = [1]
        return info

    def evaluate(i, epoch):
        nonlocal best_value, best_epoch, best_bytes, since_best
        result, _ = evaluate_dl_model(dldataset, dlmodel_handle, "split", "validation", eval_param)
        res = _plain(result)
        info = {"epoch": [float(epoch)], "iteration": [i], "result": res}
        pct = float(_one(display.get("selected_percentage_train_samples"), 0) or 0)
        if pct > 0:
            chosen = [k for k in train_idx if gen.random() < pct / 100.0] or train_idx[:1]
            rt, _ = evaluate_dl_model(dldataset, dlmodel_handle, "sample_indices", chosen, eval_param)
            info["result_train"] = _plain(rt)
        evaluation_infos.append(info)
        value, _ = reduce_dl_evaluation_result(res, keys)
        delta = float(_one(early.get("min_delta"), 0.0)) if early else 0.0
        improved = best_value is None or (value > best_value + delta if highest else value < best_value - delta)
        if improved:
            best_value, best_epoch, since_best = value, float(epoch), 0
            if early and _one(early.get("restore_best"), 1):
                best_bytes = bytes(dlmodel_handle.core(op).serialize())
            for s in strategies:
                if s["type"][0] == "best":
                    _write_snapshot(dlmodel_handle, s["basename"][0], train_infos + [train_info(epoch)],
                                    evaluation_infos, epoch)
        else:
            since_best += 1
        for s in strategies:
            if s["type"][0] == "current":
                _write_snapshot(dlmodel_handle, s["basename"][0], train_infos + [train_info(epoch)], evaluation_infos,
                                epoch)
        return value

    last_value = None
    try:
        if tp.get("evaluate_before_train") == ["true"] and has_validation and first == 0:
            last_value = evaluate(-1, epoch0)
        for i in range(first, num_iterations):
            epoch = epoch0 if i == first else i / ipe
            _apply_change_strategies(dlmodel_handle, changes, epoch, change_state)
            t0 = time.perf_counter()
            batch = loader.get(i)
            wait_s += time.perf_counter() - t0
            res = train_dl_model_batch(dlmodel_handle, batch)
            results.append(res)
            losses.append(float(res.core(op)["total_loss"][0]))
            done_epoch = (i + 1) / ipe
            if has_validation and interval > 0 and (((i + 1) % interval == 0 and i != 0) or i == num_iterations - 1):
                last_value = evaluate(i, done_epoch)
                if early and since_best >= int(_one(early["patience"])):
                    stopped_early = True
            for s in strategies:
                kind = s["type"][0]
                if kind == "current" and math.floor(done_epoch) > math.floor(i / ipe) and done_epoch <= num_epochs:
                    _write_snapshot(dlmodel_handle, s["basename"][0], train_infos + [train_info(done_epoch)],
                                    evaluation_infos, done_epoch)
                elif kind == "epochs":
                    for k, e in enumerate(s["epochs"]):
                        if i / ipe < e <= done_epoch or (i == first and epoch0 < e <= done_epoch):
                            base = s["basename"][k] if len(s["basename"]) == len(s["epochs"]) and \
                                len(s["epochs"]) > 1 else f"{s['basename'][0]}_{e:.2f}"
                            _write_snapshot(dlmodel_handle, base, train_infos + [train_info(done_epoch)],
                                            evaluation_infos, done_epoch)
            if time.time() - t_last_info >= float(_one(tp.get("update_interval_seconds"), 2)) or \
                    i == num_iterations - 1 or stopped_early:
                train_infos.append(train_info(done_epoch))
                t_last_info = time.time()
            if bar is not None:
                post = {"loss": f"{losses[-1]:.4f}"}
                if last_value is not None:
                    post[keys[0]] = f"{last_value:.4f}"
                bar.set_postfix(post, refresh=False)
                bar.update(1)
            if stopped_early:
                break
    finally:
        loader.close()
        if bar is not None:
            bar.close()
    final_epoch = (first + len(results)) / ipe if ipe else epoch0
    if early and _one(early.get("restore_best"), 1) and best_bytes is not None:
        from . import _core
        dlmodel_handle._obj = _core.deserialize_model(best_bytes)
    for s in strategies:
        if s["type"][0] == "final":
            _write_snapshot(dlmodel_handle, s["basename"][0], train_infos, evaluation_infos, final_epoch)
    if show:
        try:
            _plots(plot_dir, train_infos, evaluation_infos, results, ipe, first, keys[0])
        except OSError as e:  # the folder was checked up front; losing a plot must not lose the trained run
            import warnings
            warnings.warn(f"train_dl_model: could not write the plots to {plot_dir or '.'!r}: {e}", RuntimeWarning,
                          stacklevel=2)
    return (results, [from_python_dict(t) for t in train_infos], [from_python_dict(e) for e in evaluation_infos])


def _plots(plot_dir: str, train_infos, evaluation_infos, results, ipe: int, first: int, key: str) -> None:
    """training_progress.png (loss and validation measure over epochs) and confusion_matrix.png."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    if plot_dir:
        os.makedirs(plot_dir, exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    x = [(first + k + 1) / ipe for k in range(len(results))]
    y = [float(r.core("train_dl_model")["total_loss"][0]) for r in results]
    ax.plot(x, y, color="tab:blue", alpha=0.35, lw=0.8, label="loss (iteration)")
    if len(y) >= 5:
        w = max(1, len(y) // 25)
        ax.plot(x[w - 1:], np.convolve(y, np.ones(w) / w, mode="valid"), color="tab:blue", label="loss (mean)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("total loss")
    ev = [(float(_one(e.get("epoch"))), reduce_dl_evaluation_result(_sub(e.get("result")), [key])[0])
          for e in evaluation_infos]
    if ev:
        ax2 = ax.twinx()
        ax2.plot([e for e, _ in ev], [v for _, v in ev], "o-", color="tab:red", label=f"validation {key}")
        ax2.set_ylabel(f"validation {key}")
        ax2.legend(loc="upper center")
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(plot_dir, "training_progress.png"), dpi=100)
    plt.close(fig)
    if evaluation_infos:
        cm = confusion_matrix_of(_sub(evaluation_infos[-1].get("result")))
        if cm is not None:
            save_confusion_matrix_plot(cm, None, os.path.join(plot_dir, "confusion_matrix.png"))


def confusion_matrix_of(result: dict):
    """The absolute confusion matrix of a (plain) EvaluationResult as a 2-D array, or None."""
    for where in (result, _sub(result.get("global"))):
        cm = where.get("absolute_confusion_matrix")
        if isinstance(cm, list) and len(cm) == 1:
            cm = cm[0]
        if isinstance(cm, np.ndarray) and cm.ndim >= 2:
            return cm.reshape(cm.shape[0], cm.shape[1])
    return None


def save_confusion_matrix_plot(matrix: np.ndarray, class_names, path: str) -> None:
    """A PNG of a confusion matrix in HALCON's orientation (rows: predicted, columns: ground truth)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = matrix.shape[0]
    names = list(class_names) if class_names is not None else [str(k) for k in range(n)]
    fig, ax = plt.subplots(figsize=(1.2 * n + 2.5, 1.1 * n + 2))
    ax.imshow(matrix, cmap="Blues")
    for r in range(n):
        for c in range(matrix.shape[1]):
            v = matrix[r, c]
            ax.text(c, r, f"{v:g}" if isinstance(v, (float, np.floating)) else str(v), ha="center", va="center",
                    color="white" if v > matrix.max() / 2 else "black")
    ax.set_xticks(range(n), names, rotation=45, ha="right")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("ground truth")
    ax.set_ylabel("predicted")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
