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


def _comparison_keys(model_type: str, measures: list) -> tuple:
    """The evaluation_comparison_keys for the measures asked for (spec C.6) and whether higher is better:
    classification top1_error (lower is better) unless precision / recall / F-score are asked for;
    segmentation mean_iou unless other scalar measures are asked for (all higher-is-better); detection mean_ap
    (and mean_soap_tp when 'soap' is asked for), found under max_num_detections_all / area_all."""
    if model_type == "detection":
        return ["mean_ap"] + (["mean_soap_tp"] if "soap" in measures else []), 1
    if model_type == "segmentation":
        scalar = ("pixel_accuracy", "mean_accuracy", "mean_iou", "frequency_weighted_iou")
        return [m for m in measures if m in scalar] or ["mean_iou"], 1
    keys = []
    for m in measures or ["top1_error"]:
        if m == "all":
            m = "top1_error"
        keys.append(f"mean_{m}" if m in ("precision", "recall", "f_score") else m)
    keys = [k for k in keys if "confusion_matrix" not in k] or ["top1_error"]
    return keys, 0 if all(k.startswith("top") and k.endswith("_error") for k in keys) else 1


def create_dl_train_param(dlmodel_handle, num_epochs, evaluation_interval_epochs, enable_display, random_seed,
                          gen_param_name, gen_param_value):
    """TrainParam dict (spec C.6) for train_dl_model. gen_param_name: 'evaluate' (evaluate_dl_model GenParam),
    'augment' (augment_dl_samples GenParam), 'change' (change strategies), 'serialize' (serialization
    strategies; default [{type: 'best', basename: 'model_best'}]), 'display'; opendl extras 'early_stopping',
    'evaluate_before_train', 'data_loader' ({'num_data_workers', 'prefetch_batches'})."""
    op = "create_dl_train_param"
    expect_handle(dlmodel_handle, "dl_model", op, "dlmodel_handle")
    model_type = get_dl_model_param(dlmodel_handle, "type")[0]
    if model_type not in _TRAINABLE_TYPES:
        raise HOperatorError(_proc.H_ERR_DL_MODEL_OPERATOR_UNSUPPORTED,
                             f"train_dl_model does not support models of type '{model_type}' yet "
                             f"(supported: {', '.join(_TRAINABLE_TYPES)})", op)
    ne = as_list(num_epochs)
    if len(ne) != 1 or not _proc.is_number(ne[0]) or ne[0] <= 0:
        raise HOperatorError(1302, f"num_epochs must be one number > 0, got {num_epochs!r}", op)
    ei = as_list(evaluation_interval_epochs)
    if len(ei) != 1 or not _proc.is_number(ei[0]) or ei[0] < 0:
        raise HOperatorError(1303, f"evaluation_interval_epochs must be one number >= 0, got "
                                   f"{evaluation_interval_epochs!r}", op)
    display = _proc.flag(enable_display, op, 1304, "enable_display")
    seed = as_list(random_seed)
    if seed and (len(seed) != 1 or not _proc.is_int(seed[0]) or seed[0] < 0):
        raise HOperatorError(1305, f"random_seed must be one integer >= 0 or [], got {random_seed!r}", op)
    seed = int(seed[0]) if seed else int(time.time())
    names, values = as_list(gen_param_name), as_list(gen_param_value)
    if len(names) != len(values):
        raise HOperatorError(1407, f"{len(names)} gen_param_name(s) but {len(values)} gen_param_value(s)", op)
    gp = {}
    for n, v in zip(names, values):
        if n not in _GEN_PARAMS:
            raise HOperatorError(1306, f"the provided gen_param_name {n!r} is invalid (accepted: "
                                       f"{', '.join(repr(a) for a in _GEN_PARAMS)})", op)
        gp[n] = _sub(v) if n in ("evaluate", "augment", "display", "early_stopping", "data_loader") else _plain(v)
    evaluation_param = gp.get("evaluate", {}) or {}
    if not isinstance(evaluation_param, dict):
        raise HOperatorError(1307, "'evaluate' takes a dict (evaluate_dl_model GenParam)", op)
    keys, best_highest = _comparison_keys(model_type, as_list(evaluation_param.get("measures", [])))
    display_param = gp.get("display", {}) or {}
    if not isinstance(display_param, dict):
        raise HOperatorError(1307, "'display' takes a dict", op)
    for k in display_param:
        if k not in _DISPLAY_KEYS:
            raise HOperatorError(1307, f"unknown display key {k!r} (accepted: "
                                       f"{', '.join(repr(a) for a in _DISPLAY_KEYS)})", op)
    display_param = dict(display_param, enabled=[1 if display else 0])
    serialize = _dicts(gp.get("serialize")) or [{"type": ["best"], "basename": ["model_best"]}]
    strategies = [_check_serialization(s, op) for s in serialize]
    changes = [_check_change(c, op) for c in _dicts(gp.get("change"))]
    early = gp.get("early_stopping")
    if early not in (None, [], {}):
        early = _check_early(early, op)
    else:
        early = []
    loader = gp.get("data_loader", {}) or {}
    workers = int(_one(loader.get("num_data_workers"), 2)) if isinstance(loader, dict) else -1
    prefetch = int(_one(loader.get("prefetch_batches"), 4)) if isinstance(loader, dict) else -1
    if workers < 0 or prefetch < 1:
        raise HOperatorError(1307, "'data_loader' takes a dict with 'num_data_workers' >= 0 and "
                                   "'prefetch_batches' >= 1", op)
    ebt = _proc.flag(gp.get("evaluate_before_train", "false"), op, 1307, "'evaluate_before_train'")
    from .dicts import from_python_dict
    return from_python_dict({
        "num_epochs": [ne[0]],
        "evaluation_interval_epochs": [ei[0]],
        "evaluation_param": evaluation_param,
        "augmentation_param": gp.get("augment", {}) or {},
        "change_strategies": changes,
        "serialization_strategies": strategies,
        "seed_rand": [seed],
        "display_param": display_param,
        "update_interval_seconds": [2],
        "evaluation_comparison_keys": keys,
        "evaluation_comparison_keys_best_highest": [best_highest],
        "num_samples_mean_loss": [1000],
        "evaluate_before_train": ["true" if ebt else "false"],
        "early_stopping": early,
        "data_loader": {"num_data_workers": [workers], "prefetch_batches": [prefetch]},
    })


def _check_serialization(s: dict, op: str) -> dict:
    kind = _one(s.get("type"))
    if kind not in ("best", "final", "epochs", "current"):
        raise HOperatorError(1307, f"serialization strategy type {kind!r} is unknown (accepted: 'best', 'final', "
                                   "'epochs', 'current')", op)
    out = {"type": [kind]}
    base = as_list(s.get("basename", []))
    if kind == "epochs":
        epochs = sorted(float(e) for e in as_list(s.get("epochs", [])))
        if not epochs:
            raise HOperatorError(1307, "serialization strategy 'epochs' needs 'epochs'", op)
        if len(base) not in (0, 1, len(epochs)):
            raise HOperatorError(1307, "serialization strategy 'epochs' takes one basename or one per epoch", op)
        out["epochs"] = epochs
        out["basename"] = base or ["model_at_epoch"]
    else:
        out["basename"] = base[:1] or [kind]
    return out


def _check_change(c: dict, op: str) -> dict:
    for k in ("model_param", "initial_value", "epochs", "values"):
        if k not in c:
            raise HOperatorError(1307, f"change strategy lacks key {k!r}", op)
    epochs, values = [float(e) for e in as_list(c["epochs"])], as_list(c["values"])
    if len(epochs) != len(values):
        raise HOperatorError(1307, f"change strategy for {_one(c['model_param'])!r}: {len(epochs)} epochs but "
                                   f"{len(values)} values", op)
    order = sorted(range(len(epochs)), key=lambda i: epochs[i])
    out = {"model_param": [_one(c["model_param"])], "initial_value": as_list(c["initial_value"]),
           "epochs": [epochs[i] for i in order], "values": [values[i] for i in order]}
    thr = as_list(c.get("scale_momentum_threshold", []))
    if thr:
        out["scale_momentum_threshold"] = thr[:1]
    return out


def _check_early(e, op: str) -> dict:
    if not isinstance(e, dict):
        raise HOperatorError(1307, "'early_stopping' takes a dict with 'patience', 'min_delta', 'restore_best'", op)
    for k in e:
        if k not in ("patience", "min_delta", "restore_best"):
            raise HOperatorError(1307, f"unknown early_stopping key {k!r} (accepted: 'patience', 'min_delta', "
                                       "'restore_best')", op)
    patience = _one(e.get("patience"))
    if not _proc.is_int(patience) or patience < 1:
        raise HOperatorError(1307, f"early_stopping 'patience' must be an integer >= 1 (evaluations), got "
                                   f"{patience!r}", op)
    delta = _one(e.get("min_delta"), 0.0)
    if not _proc.is_number(delta) or delta < 0:
        raise HOperatorError(1307, f"early_stopping 'min_delta' must be a number >= 0, got {delta!r}", op)
    restore = _proc.flag(e.get("restore_best", "true"), op, 1307, "early_stopping 'restore_best'")
    return {"patience": [int(patience)], "min_delta": [float(delta)], "restore_best": [1 if restore else 0]}


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
            v = v[0] if isinstance(v, list) and len(v) == 1 else v
            if _proc.is_number(v):
                return float(v)
    return None


def reduce_dl_evaluation_result(evaluation_result, evaluation_comparison_keys):
    """Mean of the comparison keys found in the EvaluationResult -> (value, valid_evaluation_keys)."""
    res = _plain(evaluation_result)
    vals, found = [], []
    for k in as_list(evaluation_comparison_keys):
        v = _measure(res, k)
        if v is not None:
            vals.append(v)
            found.append(k)
    return (float(np.mean(vals)) if vals else -1.0), found


class _Loader:
    """Prefetches training batches in background threads: read_dl_samples + augment_dl_samples, each batch
    augmented with its own generator seeded from the seed pool."""

    def __init__(self, dldataset, stream, seeds, total_batch, aug, workers, prefetch, first, last):
        from concurrent.futures import ThreadPoolExecutor
        self.ds, self.stream, self.seeds, self.b = dldataset, stream, seeds, total_batch
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
        idx = [int(k) for k in self.stream[i * self.b:(i + 1) * self.b]]
        batch = read_dl_samples(self.ds, idx)
        if self.aug:
            _augment_batch(batch, self.aug, np.random.Generator(np.random.PCG64(int(self.seeds[(i + 1) * self.b - 1]))),
                           "train_dl_model")
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
    from .dicts import from_python_dict
    d = os.path.dirname(basename)
    if d:
        os.makedirs(d, exist_ok=True)
    write_dl_model(model, basename + ".hdl")
    info = from_python_dict({"train_infos": list(train_infos), "evaluation_infos": list(evaluation_infos),
                             "epoch": [float(epoch)]})
    write_dict(info, basename + "_info.hdict", [], [])


def _resume_point(strategies: list, op: str):
    """The state saved by the 'current' serialization strategy -> (epoch, train_infos, evaluation_infos)."""
    for s in strategies:
        if s["type"][0] == "current":
            path = s["basename"][0] + "_info.hdict"
            if not os.path.isfile(path):
                raise HOperatorError(5200, f"start_epoch 'resume': {path} (written by the 'current' serialization "
                                           "strategy) does not exist", op)
            info = _plain(read_dict(path, [], []))
            return float(_one(info.get("epoch"), 0.0)), info.get("train_infos", []), info.get("evaluation_infos", [])
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
        epoch0, old_ti, old_ei = _resume_point(strategies, op)
        train_infos, evaluation_infos = list(old_ti or []), list(old_ei or [])
    elif len(se) == 1 and _proc.is_number(se[0]) and 0 <= se[0] <= num_epochs:
        epoch0 = float(se[0])
    else:
        raise HOperatorError(1304, f"start_epoch must be a number in 0..num_epochs ({num_epochs:g}) or 'resume', "
                                   f"got {start_epoch!r}", op)
    first = min(int(round(epoch0 * ipe)), num_iterations)

    # HALCON's random stream: ceil(num_epochs) shuffles of the train indices and a seed per stream position.
    # 'gen' also draws the train subset of selected_percentage_train_samples; it is not used before the stream.
    seed = int(_one(tp.get("seed_rand"), 0))
    from .system import set_system
    set_system("seed_rand", seed)
    gen = np.random.Generator(np.random.PCG64(seed))
    # Drawn epoch by epoch, so that the first epochs' batches and seeds do not depend on num_epochs (a run
    # continued with 'resume' and a larger num_epochs sees the same stream).
    perms, pools = [], []
    for _ in range(max(1, math.ceil(num_epochs))):
        perms.append(np.asarray(train_idx)[gen.permutation(len(train_idx))])
        pools.append(gen.integers(0, 2 ** 31 - 1, size=len(train_idx)))
    stream, seeds = np.concatenate(perms), np.concatenate(pools)
    aug = _sub(tp.get("augmentation_param"))

    best_value, best_epoch, best_bytes, since_best = None, None, None, 0
    for info in evaluation_infos:  # a resumed run knows its best value so far
        v, _ = reduce_dl_evaluation_result(info.get("result", {}), keys) if isinstance(info, dict) else (-1, [])
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
    loader = _Loader(dldataset, stream, seeds, total_batch, aug, int(_one(loader_cfg.get("num_data_workers"), 2)),
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
        _plots(plot_dir, train_infos, evaluation_infos, results, ipe, first, keys[0])
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
    ev = [(float(_one(e.get("epoch"))), reduce_dl_evaluation_result(e.get("result", {}), [key])[0])
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
