"""The training tools: a model with its own background training thread, early stopping, automatic batch size,
deterministic and continued training, and inference. ``_Tool`` holds what every tool shares; ``Classifier``
(here) and ``Segmenter`` (_segmenter.py) add their task's labels, validation measures and results.

Terms (Euresys' usage): an *iteration* is one pass over the training images (HALCON calls it an epoch); a
*step* is one optimiser update on one batch.

How a tool trains (``train``):
- The first training fixes the classes (from the dataset), the image size (the dataset's images when they all
  have one size, else the built-in model's default), builds the model (seeded by
  ``deterministic_training_random_seed`` when deterministic training is on) and locks the split: later
  trainings must use a split with the same fingerprint.
- The images of the split are preprocessed once (HALCON's preprocess_dl_samples with the model's
  DLPreprocessParam) and kept in memory as float32.
- Iteration i (0-based, counted over the tool's life) shuffles the training images with a generator seeded by
  (seed, i) and augments image j of the pass with one seeded by (seed, i, j). Batches of ``batch_size`` are drawn
  from the shuffled order; floor(N / batch_size) steps per iteration. The learning rate drops 10x after
  max(2, early_stopping_patience // 2) iterations without a new best one (_scheduled_learning_rate). Since the
  data stream depends only on the seed and the iteration number, and the model file holds weights, solver
  moments and the dropout generator, saving after k iterations, loading and training m more gives the same
  weights as training k + m at once.
- After every iteration the validation images are evaluated: ``training_metrics(i)`` gets 'training_loss'
  (mean loss of the iteration's steps), 'validation_error' and 'validation_loss' and the task's measures (see
  the tool's class), plus 'batch_size', 'learning_rate', 'seconds' and 'images_per_second'.
- Best iteration: the lowest validation_error; among equal errors the lowest validation_loss. Inference
  (``apply``, ``save``) uses the best iteration's weights; the training state (for continuing) is the last
  iteration's.
- Early stopping (``iterations=None``): training ends when ``early_stopping_patience`` (default 10) iterations
  have passed without a new best iteration, or after ``max_iterations`` (default 200). It needs a validation
  split. Continuing a tool after such a run needs an explicit ``iterations``.
- ``stop_training`` takes effect before the next step; the model returns to the end of the last completed
  iteration (a partly done iteration is discarded), so the tool is consistent and can be continued.
- Errors inside the training thread are raised by the next ``wait_for_*``, ``apply`` or ``train`` call.
  A first training that fails (in ``train`` or in the thread) or is stopped before its first iteration
  completes leaves the tool untrained: classes, image size, automatic batch size and split stay unfixed.

Automatic batch size (the default until ``batch_size`` is set): before the first step of the first training
(and of the next one after ``optimize_batch_size(True)``; continued trainings keep the size), batch sizes 1, 2,
4, ... up to N / 8 for N training images (at least 2, at most 256; so that an iteration has about 8 steps or
more: fewer, larger steps gain images/s but learn less per iteration) are timed on a copy of the model (one
warm-up step, then steps for at least 0.25 s); the probe stops at a size whose predicted memory (twice the resident memory growth
of the previous size) exceeds half the available memory, at one that fails for lack of memory, or when one step
takes over 3 s. The smallest size reaching 95 % of the best images/s wins. With deterministic training the
choice must not depend on timing, so the automatic size is then the largest power of two <= min(32, that
limit).

Deterministic training (``enable_deterministic_training``): the data stream and the model initialisation come
from ``deterministic_training_random_seed``, and the core runs in its deterministic mode in the training thread
(the primitives whose reduction order depends on the thread count run single-threaded), so two runs with the
same seed and settings give bit-identical weights and metrics whatever set_system('thread_num') is. Without
it the seed is drawn once per tool, the data stream is still reproducible, and the core uses all threads.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import threading
import time
import weakref
import zipfile
import zlib

import numpy as np

from .. import _core, _proc
from .._handles import HHandle
from ..dicts import _write_atomically
from ..errors import H_ERR_FNF, H_ERR_MEM, H_ERR_WFF, HOperatorError
from ._augment import DataAugmentation
from ._data import Dataset, DatasetSplit

# Tools whose training thread may run, and the interpreter's exit: a training thread still inside the C++ core
# when Python finalises is killed while it waits for the GIL, which aborts the whole process. At exit every
# training is asked to stop after its current step and joined; no new training starts.
# A tool counts as training (``_active``) from the moment train() admits a call until its thread has ended, so
# a training whose model is still being built (by a TrainingQueue's worker, say) is waited for too; _START makes
# the exit check and the start of a thread one step.
_LIVE: "weakref.WeakSet" = weakref.WeakSet()
_EXITING = threading.Event()
_START = threading.Lock()


def _stop_trainings_at_exit() -> None:
    with _START:
        _EXITING.set()
    while True:  # again, for a training admitted while the first ones were waited for
        running = [tool for tool in list(_LIVE) if tool._active]
        if not running:
            return
        for tool in running:
            tool._stop.set()
        for tool in running:
            tool._wait_inactive(None)
            if tool._thread is not None:
                tool._thread.join()


atexit.register(_stop_trainings_at_exit)

_FORMAT = "opendl_tool"
_FORMAT_VERSION = 1
_MEMORY_CODES = (H_ERR_MEM, 4104)


class _Stopped(Exception):
    pass


def _available_memory() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def _model_from_bytes(data: bytes) -> HHandle:
    return HHandle(_core.deserialize_model(data), "dl_model")


def _model_bytes(model: HHandle) -> bytes:
    return bytes(model.core("opendl.tools").serialize())


def _int_at_least(value, minimum: int, name: str, op: str, code: int = 1302) -> int:
    if not _proc.is_int(value) or value < minimum:
        raise HOperatorError(code, f"{name} must be an integer >= {minimum}, got {value!r}", op)
    return int(value)


def _bool(value, name: str, op: str, code: int = 1302) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise HOperatorError(code, f"{name} must be True or False, got {value!r}", op)
    return bool(value)


def _timeout(value, op: str):
    """A wait's timeout in seconds (None, < 0 or inf: no limit) as threading takes it."""
    if value is None:
        return None
    if not _proc.is_number(value) or math.isnan(value):
        raise HOperatorError(1201, f"timeout must be a number of seconds (-1: no limit), got {value!r}", op)
    # beyond threading.TIMEOUT_MAX (about 292 years) threading raises OverflowError: that is no limit too
    return None if value < 0 or value > threading.TIMEOUT_MAX else float(value)


def _fastest_batch_size(step_for, cap: int, min_seconds: float, stop) -> int:
    """Batch sizes 1, 2, 4, ... <= cap: ``step_for(b)`` prepares size b and returns a function running one step;
    after a warm-up step, steps are timed for ``min_seconds``. The probe ends at a size whose predicted memory
    (twice the resident memory growth of the previous one) exceeds half the available memory, at one failing for
    lack of memory, or after a size whose step takes over 3 s. Returns the smallest size within 5 % of the best
    images/s (1 if none ran)."""
    budget, base = _available_memory() // 2, _rss()
    rates, b = {}, 1
    while b <= cap:
        if stop is not None and stop.is_set():
            raise _Stopped
        try:
            step = step_for(b)
            step()
            steps, t0 = 0, time.perf_counter()
            while True:
                step()
                steps += 1
                elapsed = time.perf_counter() - t0
                if elapsed >= min_seconds:
                    break
        except MemoryError:
            break
        except HOperatorError as e:
            if e.error_code in _MEMORY_CODES:
                break
            raise
        rates[b] = b * steps / elapsed
        if 2 * max(_rss() - base, 1) > budget or elapsed / steps > 3.0:
            break
        b *= 2
    if not rates:
        return 1
    best = max(rates.values())
    return min(k for k, r in rates.items() if r >= 0.95 * best)


class _Tool:
    """What every training tool shares: settings, background training, progress, early stopping, automatic batch
    size, inference model, files. A subclass sets TYPE (the model type), DEFAULT_MODEL and TASK (the Dataset
    task) and provides the task's labels, samples, validation measures and results."""

    TYPE = ""
    TASK = ""
    DEFAULT_MODEL = ""
    LABEL_IMAGES = False      # labels are images moved along by geometric augmentation
    BOXES = False             # labels are box dicts moved along by geometric augmentation

    def __init__(self, model=None, image_size=None, image_num_channels=None, solver_type: str = "adam",
                 learning_rate=None, early_stopping_patience: int = 10, max_iterations: int = 200):
        op = type(self).__name__
        model = self.DEFAULT_MODEL if model is None else model
        if not isinstance(model, (str, os.PathLike)):
            raise HOperatorError(1201, f"model must be a built-in model name or a file name, got {model!r}", op)
        if image_size is not None and (not isinstance(image_size, (list, tuple)) or len(image_size) != 2 or
                                       not all(_proc.is_int(v) and 8 <= v <= 65535 for v in image_size)):
            raise HOperatorError(1302, f"image_size must be (width, height) with values >= 8, got {image_size!r}", op)
        if image_num_channels is not None and (not _proc.is_int(image_num_channels) or
                                               image_num_channels not in (1, 3)):
            raise HOperatorError(1303, f"image_num_channels must be 1 or 3, got {image_num_channels!r}", op)
        if solver_type not in ("adam", "sgd"):
            raise HOperatorError(1304, f"solver_type must be 'adam' or 'sgd', got {solver_type!r}", op)
        if learning_rate is not None and (not _proc.is_number(learning_rate) or not 0 < learning_rate < math.inf):
            raise HOperatorError(1305, f"learning_rate must be a finite number > 0, got {learning_rate!r}", op)
        _int_at_least(early_stopping_patience, 1, "early_stopping_patience", op, 1306)
        _int_at_least(max_iterations, 1, "max_iterations", op, 1307)
        self._settings = {
            "model": os.fspath(model), "image_size": [int(v) for v in image_size] if image_size else None,
            "image_num_channels": image_num_channels, "solver_type": solver_type,
            "learning_rate": float(learning_rate) if learning_rate else (0.001 if solver_type == "adam" else 0.01),
            "early_stopping_patience": int(early_stopping_patience), "max_iterations": int(max_iterations),
            "batch_size": None, "optimize_batch_size": True, "batch_size_chosen": False, "deterministic": False,
            "seed": 42,
        }
        self._class_names, self._class_ids = None, None
        self._train_bytes = None      # training model at the end of the last completed iteration
        self._best_bytes = None       # inference model (best iteration)
        self._metrics = []            # one dict per iteration
        self._best = None             # (iteration, validation_error, validation_loss)
        self._lock = None             # {'dataset', 'split', 'counts'}
        self._stream_seed = None
        self._auto_run_done = False
        self._inference_batch = None
        self._infer_model, self._infer_key = None, None
        self._best_version = 0
        self._pp = None
        self._cache = {}
        self._thread = None
        self._active = False          # admitted by train() and not yet ended (guarded by _cond)
        self._infer_lock = threading.Lock()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._error = None
        self._run = {"target": 0, "done": 0, "steps": 0, "progress": 0.0}
        self._state_lock = threading.RLock()

    # ------------------------------------------------------------------ settings

    @property
    def class_names(self):
        return list(self._class_names) if self._class_names else None

    @property
    def batch_size(self):
        """The training batch size: the last one used or set (None before the first automatic choice)."""
        return self._settings["batch_size"]

    @batch_size.setter
    def batch_size(self, value):
        self._settings["batch_size"] = _int_at_least(value, 1, "batch_size", f"{type(self).__name__}.batch_size")
        self._settings["optimize_batch_size"] = False

    def optimize_batch_size(self, enable: bool = True) -> None:
        """True: choose the batch size automatically at the next training (the default; later trainings keep
        the size it chose, so that a continued training goes on as one longer run); False: keep the current
        one."""
        enable = _bool(enable, "enable", f"{type(self).__name__}.optimize_batch_size", 1201)
        self._settings["optimize_batch_size"] = enable
        if enable:
            self._settings["batch_size_chosen"] = False

    @property
    def is_batch_size_optimized(self) -> bool:
        return self._settings["optimize_batch_size"]

    @property
    def enable_deterministic_training(self) -> bool:
        return self._settings["deterministic"]

    @enable_deterministic_training.setter
    def enable_deterministic_training(self, value: bool):
        self._settings["deterministic"] = _bool(value, "enable_deterministic_training",
                                                f"{type(self).__name__}.enable_deterministic_training")

    @property
    def deterministic_training_random_seed(self) -> int:
        return self._settings["seed"]

    @deterministic_training_random_seed.setter
    def deterministic_training_random_seed(self, value: int):
        op = f"{type(self).__name__}.deterministic_training_random_seed"
        if _proc.is_int(value) and value >= 2 ** 64:
            raise HOperatorError(1302, f"deterministic_training_random_seed must be an integer in [0, 2^64), got "
                                       f"{value!r}", op)
        self._settings["seed"] = _int_at_least(value, 0, "deterministic_training_random_seed", op)

    @property
    def early_stopping_patience(self) -> int:
        return self._settings["early_stopping_patience"]

    @early_stopping_patience.setter
    def early_stopping_patience(self, value: int):
        self._settings["early_stopping_patience"] = _int_at_least(value, 1, "early_stopping_patience",
                                                                  f"{type(self).__name__}.early_stopping_patience")

    @property
    def max_iterations(self) -> int:
        return self._settings["max_iterations"]

    @max_iterations.setter
    def max_iterations(self, value: int):
        self._settings["max_iterations"] = _int_at_least(value, 1, "max_iterations",
                                                         f"{type(self).__name__}.max_iterations")

    @property
    def image_size(self):
        return tuple(self._settings["image_size"]) if self._settings["image_size"] else None

    # ------------------------------------------------------------------ progress

    @property
    def is_training(self) -> bool:
        """True from train() until the training has ended (also while train() builds the model)."""
        return self._active

    @property
    def current_training_progression(self) -> float:
        """Progress of the current (or last) train() call in [0, 1], never decreasing, 1 when it has ended
        normally. With early stopping the total is estimated as the iteration at which training would stop
        without further improvement; when an improvement extends it, progress slows down instead of going back."""
        with self._cond:
            return self._run["progress"]

    @property
    def current_training_finished_iterations(self) -> int:
        with self._cond:
            return self._run["done"]

    @property
    def current_training_num_iterations(self) -> int:
        with self._cond:
            return self._run["target"]

    @property
    def num_trained_iterations(self) -> int:
        return len(self._metrics)

    @property
    def best_iteration(self):
        """The iteration (1-based) whose weights the tool uses for inference; None before training."""
        return self._best[0] + 1 if self._best else None

    def training_metrics(self, iteration: int) -> dict:
        """The metrics of iteration ``iteration`` (1-based, counting on across train() calls and save/load)."""
        n = len(self._metrics)
        if not _proc.is_int(iteration) or not 1 <= iteration <= n:
            raise HOperatorError(1301, f"iteration must be in 1..{n} (the iterations trained so far), got "
                                       f"{iteration!r}", f"{type(self).__name__}.training_metrics")
        return dict(self._metrics[iteration - 1])

    def _raise_pending(self) -> None:
        with self._cond:
            err, self._error = self._error, None
        if err is not None:
            raise err

    def wait_for_iteration_completion(self, timeout: float = -1) -> bool:
        """Blocks until the running training completes its next iteration or ends. Returns False on timeout
        (seconds; -1: no limit)."""
        timeout = _timeout(timeout, f"{type(self).__name__}.wait_for_iteration_completion")
        with self._cond:
            start = self._run["done"]
            ok = self._cond.wait_for(lambda: self._run["done"] > start or not self._running(), timeout)
        self._raise_pending()
        return bool(ok)

    def wait_for_training_completion(self, timeout: float = -1) -> int:
        """Blocks until the training ends (timeout in seconds; -1: no limit) and returns the number of
        iterations the current train() call has completed. ``is_training`` tells whether it ended."""
        timeout = _timeout(timeout, f"{type(self).__name__}.wait_for_training_completion")
        self._wait_inactive(timeout)
        self._raise_pending()
        return self.current_training_finished_iterations

    def stop_training(self, wait: bool = True) -> None:
        """Asks the training to stop before its next step; with ``wait`` returns when it has stopped."""
        _bool(wait, "wait", f"{type(self).__name__}.stop_training", 1201)
        self._stop.set()
        if wait:
            self._wait_inactive(None)
            self._raise_pending()

    def _wait_inactive(self, timeout) -> bool:
        # A wait on the tool's condition, not Thread.join: an exception (Ctrl-C) inside join can leave the
        # thread marked as ended while it still trains (CPython 3.11), and then nothing stops it at exit.
        with self._cond:
            return self._cond.wait_for(lambda: not self._active, timeout)

    def _running(self) -> bool:
        return self._active and not self._run.get("finished", False)

    # ------------------------------------------------------------------ training

    def train(self, dataset: Dataset, split: DatasetSplit, augmentation: DataAugmentation = None,
              iterations=None) -> None:
        """Starts training in the background and returns at once. ``iterations``: the number of iterations
        (passes over the training images) to run; None: early stopping decides (see the module notes)."""
        op = f"{type(self).__name__}.train"
        with _START, self._cond:  # admission: one training per tool, none once the interpreter exits
            if _EXITING.is_set():
                raise HOperatorError(7720, "the interpreter is exiting; no training starts", op)
            if self._active:
                raise HOperatorError(7720, "this tool is already training; wait for it or stop it first", op)
            self._active = True
            # From here a stop_training (a TrainingQueue's cancel) stops this training.
            self._stop.clear()
            previous_run = self._run
            self._run = {"target": int(iterations) if iterations else 0, "done": 0, "steps": 0,
                         "progress": 0.0, "finished": False}
        _LIVE.add(self)
        untrained = None
        try:
            self._raise_pending()
            self._check_training(dataset, split, augmentation, iterations, op)
            if self._lock is None:
                # The first training fixes the classes, image size, model and split; if it fails (here, or in
                # the thread before its first iteration completes) the tool returns to this untrained state.
                untrained = self._untrained_state()
                self._check_dataset(dataset, op)
                self._create_model(dataset, op)
                self._lock = {"dataset": dataset.fingerprint, "split": split.fingerprint,
                              "counts": [int(split.train.size), int(split.validation.size), int(split.test.size)]}
            with _START:
                if _EXITING.is_set():
                    raise HOperatorError(7720, "the interpreter is exiting; no training starts", op)
                self._thread = threading.Thread(target=self._train_thread, name="opendl-tool-training",
                                                daemon=True, args=(dataset, split, augmentation, iterations,
                                                                   untrained))
                self._thread.start()
        except BaseException:
            if untrained is not None:
                self._restore_untrained(untrained)
            with self._cond:
                self._active = False
                self._run = previous_run
                self._cond.notify_all()
            raise

    def _check_training(self, dataset, split, augmentation, iterations, op: str) -> None:
        """The checks of train()'s arguments against each other and the tool (also run by TrainingQueue.add)."""
        if not isinstance(dataset, Dataset):
            raise HOperatorError(1201, f"dataset must be an opendl.tools.Dataset, got {type(dataset).__name__}", op)
        if not isinstance(split, DatasetSplit):
            raise HOperatorError(1202, f"split must be an opendl.tools.DatasetSplit, got {type(split).__name__}", op)
        if dataset.task != self.TASK:
            raise HOperatorError(1302, f"a {type(self).__name__} trains on a {self.TASK} dataset, but dataset is a "
                                       f"{dataset.task} dataset", op)
        if split.dataset.fingerprint != dataset.fingerprint:
            raise HOperatorError(1302, "split was made for another dataset", op)
        if augmentation is not None and not isinstance(augmentation, DataAugmentation):
            raise HOperatorError(1203, f"augmentation must be an opendl.tools.DataAugmentation or None, got "
                                       f"{type(augmentation).__name__}", op)
        if iterations is not None and (not _proc.is_int(iterations) or iterations < 1):
            raise HOperatorError(1304, f"iterations must be an integer >= 1 or None (early stopping), got "
                                       f"{iterations!r}", op)
        if split.train.size == 0:
            raise HOperatorError(1302, "split has no training images", op)
        if iterations is None and split.validation.size == 0:
            raise HOperatorError(1302, "early stopping (iterations=None) needs validation images in the split; "
                                       "give iterations, or a split with a validation fraction", op)
        if self._lock is not None:
            if self._lock["dataset"] != dataset.fingerprint:
                raise HOperatorError(1302, "this tool was trained with another dataset (other images, labels or "
                                           "classes); a trained tool is locked to its dataset and split: use "
                                           "them, or a new tool", op)
            if self._lock["split"] != split.fingerprint:
                raise HOperatorError(1302, "this tool was trained with another split of this dataset; a trained "
                                           "tool's split is locked to it: use the same split, or a new tool", op)
            if self._train_bytes is None:
                raise HOperatorError(1301, "this tool was saved without its training model "
                                           "(include_training_model=False) and cannot be trained further", op)
            if iterations is None and self._auto_run_done:
                raise HOperatorError(1304, "continuing after an early-stopping run needs an explicit iterations "
                                           "count", op)

    # Settings the first training fills in (image size and channels where None, the automatic batch size, a
    # Locator's instance type).
    _SET_BY_TRAINING = ("image_size", "image_num_channels", "batch_size", "optimize_batch_size", "batch_size_chosen",
                        "instance_type")

    def _untrained_state(self) -> dict:
        state = {k: getattr(self, k) for k in ("_class_names", "_class_ids", "_train_bytes", "_stream_seed", "_pp")}
        state["settings"] = {k: self._settings[k] for k in self._SET_BY_TRAINING if k in self._settings}
        return state

    def _restore_untrained(self, state: dict) -> None:
        for k, v in state.items():
            if k != "settings":
                setattr(self, k, v)
        self._settings.update(state["settings"])
        self._lock = None

    def _create_model(self, dataset: Dataset, op: str) -> None:
        from ..model import set_dl_model_param
        s = self._settings
        shapes, first = set(), {}
        for i in range(min(len(dataset), 64)):
            im = dataset.image(i)
            shape = (im.shape[1], im.shape[0], 1 if im.ndim == 2 else im.shape[2])
            shapes.add(shape)
            first.setdefault(shape[2], i)
        channels = s["image_num_channels"] or (1 if set(first) == {1} else 3)
        for c, i in sorted(first.items()):
            if c != channels and not (c in (1, 3) and channels in (1, 3)):
                raise HOperatorError(1301, f"dataset image {i} has {c} channels; the tool takes images of "
                                           f"{channels} channels (1 and 3 are converted into each other)", op)
        seed = s["seed"] if s["deterministic"] else int(np.random.SeedSequence().entropy % (2 ** 31))
        _core.set_thread_seed(seed)  # this thread's models only: set_system('seed_rand') and other tools keep theirs
        try:
            model = self._new_model(dataset, shapes, op)
        finally:
            _core.clear_thread_seed()
        set_dl_model_param(model, "class_ids", dataset.class_ids)
        set_dl_model_param(model, "class_names", dataset.class_names)
        set_dl_model_param(model, "solver_type", s["solver_type"])
        set_dl_model_param(model, "learning_rate", s["learning_rate"])
        if s["solver_type"] == "sgd":
            set_dl_model_param(model, "momentum", 0.9)
        self._configure_model(model, dataset, op)
        self._class_names, self._class_ids = list(dataset.class_names), list(dataset.class_ids)
        self._stream_seed = seed
        self._train_bytes = _model_bytes(model)
        self._pp = None

    def _new_model(self, dataset: Dataset, shapes: set, op: str):
        """The untrained model at the tool's image size (``shapes``: (width, height, channels) of the dataset's
        first images); fixes image_size and image_num_channels where they are None."""
        from ..model import get_dl_model_param, read_dl_model, set_dl_model_param
        s = self._settings
        model = read_dl_model(s["model"])
        if get_dl_model_param(model, "type")[0] != self.TYPE:
            raise HOperatorError(1302, f"model {s['model']!r} is not a {self.TYPE} model", op)
        if s["image_size"] is None:
            sizes = {(w, h) for w, h, _ in shapes}
            s["image_size"] = list(sizes.pop()) if len(sizes) == 1 else [get_dl_model_param(model, "image_width")[0],
                                                                         get_dl_model_param(model, "image_height")[0]]
        if s["image_num_channels"] is None:
            s["image_num_channels"] = 1 if all(c == 1 for _, _, c in shapes) else 3
        set_dl_model_param(model, "image_dimensions", [s["image_size"][0], s["image_size"][1],
                                                        s["image_num_channels"]])
        return model

    def _preprocess_param(self) -> dict:
        """The model's DLPreprocessParam values (fixed once the model exists)."""
        if self._pp is None:
            from ..preprocess import _param_values, create_dl_preprocess_param_from_model
            model = _model_from_bytes(self._train_bytes if self._train_bytes is not None else self._best_bytes)
            pp = create_dl_preprocess_param_from_model(model, "none", "full_domain", [], [], [])
            self._pp = _param_values(_proc.content(pp, "opendl.tools", "preprocess"))
            model.clear()
        return self._pp

    def _preprocess(self, images, op: str) -> np.ndarray:
        from ..preprocess import _preprocess_image
        p = self._preprocess_param()
        out = [_preprocess_image(im, p, op, f"images[{i}]") for i, im in enumerate(images)]
        out = np.stack(out).astype(np.float32, copy=False)
        return out[..., None] if out.ndim == 3 else out

    def _check_dataset(self, dataset: Dataset, op: str) -> None:
        """Task checks of the first training's dataset, before anything of the tool changes."""

    def _configure_model(self, model, dataset: Dataset, op: str) -> None:
        """Task settings of a new model (after classes, size and solver are set)."""

    def _cached(self, kind: str, dataset: Dataset, indices, prepare) -> np.ndarray:
        """The preprocessed ``kind`` ('images', 'labels') of ``indices``, kept in memory per tool:
        ``prepare(chunk)`` makes those of a list of indices."""
        key = (dataset.fingerprint, tuple(self._settings["image_size"]), self._settings["image_num_channels"])
        if self._cache.get("key") != key:
            self._cache = {"key": key}
        store = self._cache.setdefault(kind, {})
        missing = [int(i) for i in indices if int(i) not in store]
        for start in range(0, len(missing), 64):
            chunk = missing[start:start + 64]
            for i, x in zip(chunk, prepare(chunk)):
                store[i] = x
        items = [store[int(i)] for i in indices]
        if items and isinstance(items[0], dict):    # boxes: an object array of dicts
            out = np.empty(len(items), dtype=object)
            out[:] = items
            return out
        return np.stack(items) if len(indices) else np.zeros((0,), np.float32)

    def _prepared(self, dataset: Dataset, indices) -> np.ndarray:
        op = f"{type(self).__name__}.train"
        return self._cached("images", dataset, indices,
                            lambda chunk: self._preprocess([dataset.image(i) for i in chunk], op))

    def _labels(self, dataset: Dataset, indices) -> np.ndarray:
        """The training targets of ``indices``, as ``_samples`` takes them."""
        raise NotImplementedError

    def _before_training(self, model, y_train) -> None:
        """Called in the training thread before the first step of every train() call."""

    def _samples(self, images, labels) -> list:
        """The DLSamples of one batch: preprocessed ``images`` (N, H, W, C) with their targets."""
        raise NotImplementedError

    def _validation_metrics(self, model, x, y) -> dict:
        """'validation_error' (lower is better), 'validation_loss' (breaks ties) and the task's measures."""
        raise NotImplementedError

    def _train_thread(self, dataset, split, augmentation, iterations, untrained) -> None:
        deterministic = self._settings["deterministic"]
        _core.set_deterministic(deterministic)
        try:
            x_train = self._prepared(dataset, split.train)
            y_train = self._labels(dataset, split.train)
            x_val = self._prepared(dataset, split.validation)
            y_val = self._labels(dataset, split.validation)
            model = _model_from_bytes(self._train_bytes)
            self._before_training(model, y_train)
            batch = self._training_batch_size(model, x_train, y_train)
            self._train_loop(model, batch, x_train, y_train, x_val, y_val, augmentation, iterations)
            if iterations is None:
                self._auto_run_done = True
        except _Stopped:
            pass
        except BaseException as e:  # surfaces on the next wait/apply/train call
            with self._cond:
                self._error = e
        finally:
            _core.set_deterministic(False)
            if untrained is not None and not self._metrics:  # a first training that completed no iteration
                with self._state_lock:
                    self._restore_untrained(untrained)
            with self._cond:
                self._run["finished"] = True
                if self._error is None and not self._stop.is_set():
                    self._run["progress"] = 1.0
                self._active = False
                self._cond.notify_all()

    def _training_batch_size(self, model, x, y) -> int:
        from ..model import set_dl_model_param
        n = len(x)
        s = self._settings
        if s["batch_size"] is None or s["optimize_batch_size"] and not s.get("batch_size_chosen"):
            cap = min(n, max(2, min(256, n // 8)))
            if s["deterministic"]:
                b = 1
                while b * 2 <= min(32, cap):
                    b *= 2
            else:
                b = self._probe_training_batch(x, y, cap)
            s["batch_size"], s["batch_size_chosen"] = b, True
        b = min(s["batch_size"], n)
        set_dl_model_param(model, "batch_size", b)
        return b

    def _probe_training_batch(self, x, y, cap: int) -> int:
        """Measured images/s per candidate batch size on a copy of the training model (module notes)."""
        from ..model import set_dl_model_param, train_dl_model_batch
        probe = _model_from_bytes(self._train_bytes)

        def step_for(b):
            set_dl_model_param(probe, "batch_size", b)
            samples = self._samples(x[:b], y[:b])
            return lambda: train_dl_model_batch(probe, samples)

        try:
            return _fastest_batch_size(step_for, cap, 0.25, self._stop)
        finally:
            probe.clear()

    def _train_loop(self, model, batch, x_train, y_train, x_val, y_val, augmentation, iterations) -> None:
        from ..model import train_dl_model_batch
        s = self._settings
        n = len(x_train)
        steps = max(1, n // batch)
        first = len(self._metrics)
        auto = iterations is None
        patience, cap = s["early_stopping_patience"], s["max_iterations"]
        lo, hi = self._range()
        seed = self._stream_seed

        def stop_at() -> int:
            """Iterations of this run after which it ends (early stopping: patience after the best one)."""
            if not auto:
                return iterations
            best_it = self._best[0] - first + 1 if self._best and self._best[0] >= first else 0
            return min(cap, best_it + patience)

        def target_now() -> int:
            return max(stop_at(), self._run["done"] + (0 if self._run["done"] >= stop_at() else 1))

        with self._cond:
            self._run["target"] = target_now()
        it = first
        while True:
            if it - first >= stop_at():
                break
            lr = self._scheduled_learning_rate(model)
            t0 = time.perf_counter()
            order = np.random.Generator(np.random.PCG64([seed, it])).permutation(n)
            losses = []
            for k in range(steps):
                if self._stop.is_set():
                    raise _Stopped
                idx = order[k * batch:(k + 1) * batch]
                images, labels = x_train[idx], y_train[idx]
                if augmentation is not None:
                    images, labels = self._augmented(augmentation, images, labels, (seed, it, k * batch), lo, hi)
                res = train_dl_model_batch(model, self._samples(images, labels))
                losses.append(float(res.core(f"{type(self).__name__}.train")["total_loss"][0]))
                with self._cond:
                    # Each step covers its share of what remains by the current estimate: linear when the
                    # estimate holds, slower (never backwards, never 1 early) when early stopping extends it.
                    remaining = max(1, target_now() * steps - self._run["steps"])
                    self._run["steps"] += 1
                    self._run["progress"] += (0.999 - self._run["progress"]) / remaining
            seconds = time.perf_counter() - t0
            metrics = {"training_loss": float(np.mean(losses)), "batch_size": batch,
                       "learning_rate": lr, "seconds": seconds,
                       "images_per_second": steps * batch / seconds if seconds > 0 else 0.0}
            if len(x_val):
                metrics.update(self._validation_metrics(model, x_val, y_val))
            train_bytes = _model_bytes(model)
            with self._state_lock:
                key = (metrics.get("validation_error", 0.0), metrics.get("validation_loss", 0.0))
                if self._best is None or not len(x_val) or key < (self._best[1], self._best[2]):
                    self._best = (it, key[0], key[1])
                    self._best_bytes = train_bytes
                    self._best_version += 1
                self._train_bytes = train_bytes
                self._metrics.append(metrics)
            it += 1
            with self._cond:
                self._run["done"] = it - first
                self._run["target"] = target_now()
                self._cond.notify_all()

    def _augmented(self, augmentation, images, labels, stream, lo, hi):
        """Augments the batch: sample j with a generator seeded by (seed, iteration, stream[2] + j); label
        images (LABEL_IMAGES) and boxes (BOXES) move with their images."""
        seed, it, first = stream
        xs, ys = [], []
        for j in range(len(images)):
            gen = np.random.Generator(np.random.PCG64([seed, it, first + j]))
            if self.LABEL_IMAGES:
                x, y = augmentation.apply(images[j], gen, lo, hi, labels[j])
                ys.append(y)
            elif self.BOXES:
                x, y = augmentation.apply(images[j], gen, lo, hi, boxes=labels[j])
                ys.append(y)
            else:
                x = augmentation.apply(images[j], gen, lo, hi)
            xs.append(x)
        xs = np.stack(xs)
        xs = xs[..., None] if xs.ndim == 3 else xs
        if self.BOXES:
            out = np.empty(len(ys), dtype=object)
            out[:] = ys
            return xs, out
        return xs, (np.stack(ys) if self.LABEL_IMAGES else labels)

    def _scheduled_learning_rate(self, model) -> float:
        """Reduce on plateau: the learning rate drops by 10x when ``plateau`` = max(2, patience // 2)
        iterations have passed since the best iteration and since the last drop, down to 1/1000 of the initial
        value. The decision uses only the saved metrics, so continued training follows the same schedule."""
        from ..model import get_dl_model_param, set_dl_model_param
        lr = float(get_dl_model_param(model, "learning_rate")[0])
        m = self._metrics
        if not m or "validation_error" not in m[-1] or self._best is None:
            return lr
        plateau = max(2, self._settings["early_stopping_patience"] // 2)
        last_drop = max([k for k in range(1, len(m)) if m[k]["learning_rate"] < m[k - 1]["learning_rate"]],
                        default=0)
        since = len(m) - max(self._best[0] + 1, last_drop)
        floor = self._settings["learning_rate"] * 1e-3
        if since >= plateau and lr * 0.1 >= floor * (1 - 1e-9):
            lr *= 0.1
            set_dl_model_param(model, "learning_rate", lr)
        return lr

    def _range(self):
        p = self._preprocess_param()
        return float(p["image_range_min"]), float(p["image_range_max"])

    # ------------------------------------------------------------------ inference

    def _inference_model(self, batch: int) -> HHandle:
        from ..model import set_dl_model_param
        with self._state_lock:
            data, version = self._best_bytes, self._best_version
        if data is None:
            raise HOperatorError(1301, "the tool has not been trained yet", f"{type(self).__name__}.apply")
        if self._infer_key != (version, batch):
            if self._infer_model is None or self._infer_key[0] != version:
                self._infer_model = _model_from_bytes(data)
            set_dl_model_param(self._infer_model, "batch_size", batch)
            self._infer_key = (version, batch)
        return self._infer_model

    def _image_list(self, images, op: str) -> list:
        """One numpy image, a list of them, or an (N, H, W[, C]) stack, as a list of images. A 3-D array is one
        (H, W, C) image when its last axis can be a channel count (1 to 4), else an (N, H, W) stack."""
        if isinstance(images, np.ndarray):
            if images.ndim == 4 or images.ndim == 3 and images.shape[2] > 4:
                return list(images)
            if images.ndim in (2, 3):
                return [images]
            raise HOperatorError(1201, f"images must be an (H, W[, C]) image or an (N, H, W[, C]) stack, got an "
                                       f"array of shape {images.shape}", op)
        if isinstance(images, (list, tuple)):
            return list(images)
        raise HOperatorError(1201, f"images must be a numpy image, a list of them or a stack, got "
                                   f"{type(images).__name__}", op)

    def apply(self, images) -> list:
        """Infers images (one numpy image, a list of them, or an (N, H, W[, C]) stack) with the best
        iteration's weights; one DLResult dict per image (see the tool's class). Can be called while the tool
        trains."""
        op = f"{type(self).__name__}.apply"
        self._raise_pending()
        if self._best_bytes is None:
            raise HOperatorError(1301, "the tool has not been trained yet (train it or load a saved one)", op)
        images = self._image_list(images, op)
        if not images:
            return []
        x = self._preprocess(images, op)
        batch = self._inference_batch or min(len(x), 32)
        with self._infer_lock:  # one shared inference model, whose batch size each call sets
            model = self._inference_model(batch)
            return self._results(model, x, images)

    def _results(self, model, x, images) -> list:
        """The DLResult dicts of the preprocessed images ``x`` (``images``: the images as given)."""
        raise NotImplementedError

    @property
    def batch_size_for_maximum_inference_speed(self) -> int:
        """Measured once per tool (after training or loading): the batch size in 1, 2, 4, ..., 256 with the most
        images/s for ``apply`` (the smallest within 5 % of the best); ``apply`` then uses it."""
        if self._inference_batch is None:
            with self._state_lock:
                data = self._best_bytes
            if data is None:
                raise HOperatorError(1301, "the tool has not been trained yet",
                                     f"{type(self).__name__}.batch_size_for_maximum_inference_speed")
            from ..model import apply_dl_model, set_dl_model_param
            w, h = self._settings["image_size"]
            c = self._settings["image_num_channels"]
            image = np.zeros((h, w) if c == 1 else (h, w, c), np.float32)
            model = _model_from_bytes(data)

            def step_for(b):
                set_dl_model_param(model, "batch_size", b)
                samples = [{"image": image}] * b
                return lambda: apply_dl_model(model, samples, [])

            try:
                self._inference_batch = _fastest_batch_size(step_for, 256, 0.2, None)
            finally:
                model.clear()
        return self._inference_batch

    # ------------------------------------------------------------------ files

    def save(self, path, include_training_model: bool = True) -> None:
        """Writes the tool to one file (a zip archive: tool.json, model.hdl with the best iteration's weights,
        and with ``include_training_model`` training_model.hdl with the last iteration's weights and solver
        state, needed to train further). model.hdl is an ordinary opendl model file (read_dl_model). The file
        is written atomically."""
        op = f"{type(self).__name__}.save"
        _bool(include_training_model, "include_training_model", op, 1202)
        self._raise_pending()
        if self.is_training:
            raise HOperatorError(7720, "cannot save while the tool trains; wait for it or stop it first", op)
        if self._best_bytes is None:
            raise HOperatorError(1301, "the tool has not been trained yet; nothing to save", op)
        if not isinstance(path, (str, os.PathLike)) or "\0" in str(os.fspath(path)):
            raise HOperatorError(1201, f"path must be a file name, got {path!r}", op)
        path = os.fspath(path)
        meta = {"format": _FORMAT, "version": _FORMAT_VERSION, "type": self.TYPE, "settings": self._settings,
                "class_names": self._class_names, "class_ids": self._class_ids, "metrics": self._metrics,
                "best": list(self._best) if self._best else None, "lock": self._lock,
                "stream_seed": self._stream_seed, "auto_run_done": self._auto_run_done,
                "inference_batch": self._inference_batch}
        train_bytes = self._train_bytes if include_training_model else None

        def write(f):
            with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
                z.writestr("tool.json", json.dumps(meta, indent=1))
                z.writestr("model.hdl", self._best_bytes)
                if train_bytes is not None:
                    z.writestr("training_model.hdl", train_bytes)

        # atomically: the target is untouched and no temporary file is left on failure; permissions 0666 & ~umask
        _write_atomically(path, write, op)

    @classmethod
    def load(cls, path) -> "_Tool":
        op = f"{cls.__name__}.load"
        if not isinstance(path, (str, os.PathLike)):
            raise HOperatorError(1201, f"path must be a file name, got {type(path).__name__}", op)
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise HOperatorError(H_ERR_FNF, f"{path!r} is a directory, not a tool file" if os.path.isdir(path) else
                                 f"file {path!r} does not exist", op)
        try:
            with zipfile.ZipFile(path) as z:
                meta = json.loads(z.read("tool.json"))
                best = z.read("model.hdl")
                train = z.read("training_model.hdl") if "training_model.hdl" in z.namelist() else None
        except (zipfile.BadZipFile, zipfile.LargeZipFile, KeyError, ValueError, zlib.error, EOFError,
                NotImplementedError, RuntimeError, OSError) as e:  # damaged, encrypted or unreadable
            raise HOperatorError(H_ERR_WFF, f"{path!r} is not an opendl tool file or is damaged "
                                            f"({type(e).__name__}: {e})", op) from None
        if not isinstance(meta, dict):
            raise HOperatorError(H_ERR_WFF, f"{path!r}: tool.json holds a {type(meta).__name__}, not an object", op)
        if meta.get("format") != _FORMAT or meta.get("type") != cls.TYPE:
            raise HOperatorError(H_ERR_WFF, f"{path!r} holds a {meta.get('type')!r} tool of format "
                                            f"{meta.get('format')!r}, not a {cls.TYPE!r} {_FORMAT!r}", op)
        if not _proc.is_int(meta.get("version", 0)):
            raise HOperatorError(H_ERR_WFF, f"{path!r}: tool.json 'version' must be an integer, got "
                                            f"{meta.get('version')!r}", op)
        if meta.get("version", 0) > _FORMAT_VERSION:
            raise HOperatorError(H_ERR_WFF, f"{path!r} has format version {meta['version']}, newer than this opendl "
                                            f"reads ({_FORMAT_VERSION})", op)
        try:
            models = [_core.deserialize_model(best)] + ([_core.deserialize_model(train)] if train is not None else [])
        except Exception as e:
            raise HOperatorError(H_ERR_WFF, f"{path!r}: a model in it is damaged ({e})", op) from None
        for name, m in zip(("model.hdl", "training_model.hdl"), models):
            kind, ids, names = (m.get_param(k) for k in ("type", "class_ids", "class_names"))
            if (kind[0], ids, names) != (cls.TYPE, meta.get("class_ids"), meta.get("class_names")):
                raise HOperatorError(H_ERR_WFF, f"{path!r}: {name} is a {kind[0]!r} model of class_ids {ids} "
                                                f"(class_names {names}), but tool.json says a {cls.TYPE!r} tool of "
                                                f"class_ids {meta.get('class_ids')} (class_names "
                                                f"{meta.get('class_names')})", op)
        tool = cls._from_meta(meta, path, op)
        tool._class_names, tool._class_ids = meta["class_names"], meta["class_ids"]
        tool._metrics = meta["metrics"]
        tool._best = tuple(meta["best"]) if meta["best"] else None
        tool._lock = meta["lock"]
        tool._stream_seed = meta["stream_seed"]
        tool._auto_run_done = meta["auto_run_done"]
        tool._inference_batch = meta["inference_batch"]
        tool._best_bytes, tool._train_bytes = best, train
        return tool

    @classmethod
    def _from_meta(cls, meta: dict, path: str, op: str) -> "_Tool":
        """A new tool with the settings of a tool.json, every entry checked as the constructor and the setters
        check it (a damaged or hand-edited file raises H_ERR_WFF naming the entry)."""
        import inspect

        def bad(what, value):
            raise HOperatorError(H_ERR_WFF, f"{path!r}: tool.json {what} is not valid, got {value!r}", op)

        missing = [k for k in ("settings", "class_names", "class_ids", "metrics", "best", "lock", "stream_seed",
                               "auto_run_done", "inference_batch") if k not in meta]
        if missing:
            raise HOperatorError(H_ERR_WFF, f"{path!r}: tool.json lacks {missing}", op)
        settings = meta["settings"]
        if not isinstance(settings, dict):
            bad("'settings'", settings)
        names = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        try:
            tool = cls(**{k: settings[k] for k in names if k in settings})
        except HOperatorError as e:
            raise HOperatorError(H_ERR_WFF, f"{path!r}: tool.json 'settings': {e.extended_error_message}",
                                 op) from None
        for k, v in settings.items():
            if k not in tool._settings and k != "instance_type":
                bad(f"'settings' key {k!r}", v)
        is_int = _proc.is_int
        checks = {"batch_size": lambda v: v is None or (is_int(v) and v >= 1),
                  "optimize_batch_size": lambda v: isinstance(v, bool),
                  "batch_size_chosen": lambda v: isinstance(v, bool),
                  "deterministic": lambda v: isinstance(v, bool),
                  "seed": lambda v: is_int(v) and v >= 0,
                  "instance_type": lambda v: v in (None, "rectangle1", "rectangle2")}
        for k, check in checks.items():
            if k in settings and not check(settings[k]):
                bad(f"'settings' {k!r}", settings[k])
        names, ids = meta["class_names"], meta["class_ids"]
        if (names is None) != (ids is None) or (names is not None and (
                not isinstance(names, list) or not isinstance(ids, list) or len(names) != len(ids) or
                not all(isinstance(n, str) for n in names) or not all(is_int(c) for c in ids))):
            bad("'class_names' / 'class_ids'", (names, ids))
        if not isinstance(meta["metrics"], list) or not all(isinstance(m, dict) for m in meta["metrics"]):
            bad("'metrics'", meta["metrics"])
        best = meta["best"]
        if best is not None and (not isinstance(best, list) or len(best) != 3 or not is_int(best[0]) or
                                 not all(_proc.is_number(v) for v in best[1:])):
            bad("'best'", best)
        lock, metrics = meta["lock"], meta["metrics"]
        if not (isinstance(lock, dict) and sorted(lock) == ["counts", "dataset", "split"] and
                all(isinstance(lock[k], str) for k in ("dataset", "split")) and isinstance(lock["counts"], list)
                and len(lock["counts"]) == 3 and all(is_int(c) and c >= 0 for c in lock["counts"])):
            bad("'lock' (the split a trained tool is locked to)", lock)
        if not metrics or best is None or not 0 <= best[0] < len(metrics) or names is None:
            bad("'metrics' / 'best' / 'class_names' (a saved tool has trained iterations, the best among them, "
                "and its classes)", {"iterations": len(metrics), "best": best, "class_names": names})
        if meta["stream_seed"] is not None and not is_int(meta["stream_seed"]):
            bad("'stream_seed'", meta["stream_seed"])
        if not isinstance(meta["auto_run_done"], bool):
            bad("'auto_run_done'", meta["auto_run_done"])
        if meta["inference_batch"] is not None and not (is_int(meta["inference_batch"]) and
                                                        meta["inference_batch"] >= 1):
            bad("'inference_batch'", meta["inference_batch"])
        tool._settings.update(settings)
        return tool

    def __repr__(self) -> str:
        state = "training" if self.is_training else f"{self.num_trained_iterations} iterations trained"
        return f"{type(self).__name__}({self._settings['model']!r}, {state}, best iteration {self.best_iteration})"


class Classifier(_Tool):
    """An image classifier trained in the background. ``model``: a built-in classifier name
    ('pretrained_dl_classifier_compact.hdl' default, '..._enhanced', '..._resnet18', '..._resnet50',
    '..._mobilenet_v2', '..._alexnet') or an opendl model file. ``image_size``: (width, height), default from the
    dataset; ``image_num_channels``: 1 or 3, default from the dataset. ``solver_type`` 'adam' (default,
    learning rate 0.001) or 'sgd' (0.01, momentum 0.9).

    Validation measures per iteration: 'validation_error' (top-1 error), 'validation_loss' (mean
    cross-entropy), 'validation_accuracy', 'mean_precision', 'mean_recall', 'mean_f_score'. ``apply`` gives
    'classification_class_ids', 'classification_class_names' and 'classification_confidences' (all classes, by
    descending confidence)."""

    TYPE = "classification"
    TASK = "classification"
    DEFAULT_MODEL = "pretrained_dl_classifier_compact.hdl"

    def __init__(self, model: str = DEFAULT_MODEL, image_size=None, image_num_channels=None,
                 solver_type: str = "adam", learning_rate=None, early_stopping_patience: int = 10,
                 max_iterations: int = 200):
        super().__init__(model, image_size, image_num_channels, solver_type, learning_rate,
                         early_stopping_patience, max_iterations)

    def _labels(self, dataset: Dataset, indices) -> np.ndarray:
        return dataset.labels[indices]

    def _samples(self, images, labels) -> list:
        ids = self._class_ids
        return [{"image": images[k] if images.shape[-1] > 1 else images[k][:, :, 0],
                 "image_label_id": [ids[int(labels[k])]]} for k in range(len(labels))]

    def _probabilities(self, model, x) -> np.ndarray:
        """Class confidences (N, K) in the order of class_ids, classified with ``model`` in chunks of its
        batch size."""
        from ..model import get_dl_model_param
        b = get_dl_model_param(model, "batch_size")[0]
        col = {c: k for k, c in enumerate(self._class_ids)}
        out = np.zeros((len(x), len(self._class_ids)), np.float64)
        core = model.core(type(self).__name__)
        for start in range(0, len(x), b):
            chunk = x[start:start + b]
            res = core.apply([{"image": im if im.shape[-1] > 1 else im[:, :, 0]} for im in chunk], [])
            for r, d in enumerate(res):
                for cid, conf in zip(d["classification_class_ids"], d["classification_confidences"]):
                    out[start + r, col[int(cid)]] = conf
        return out

    def _validation_metrics(self, model, x, y) -> dict:
        p = self._probabilities(model, x)
        pred = p.argmax(axis=1)
        k = p.shape[1]
        prec, rec, f = [], [], []
        for c in range(k):
            tp = np.sum((pred == c) & (y == c))
            npred, ntrue = np.sum(pred == c), np.sum(y == c)
            pc = tp / npred if npred else 0.0
            rc = tp / ntrue if ntrue else 0.0
            prec.append(pc)
            rec.append(rc)
            f.append(2 * pc * rc / (pc + rc) if pc + rc > 0 else 0.0)
        err = float(np.mean(pred != y))
        return {"validation_error": err, "validation_accuracy": 1.0 - err,
                "validation_loss": float(np.mean(-np.log(np.maximum(p[np.arange(len(y)), y], 1e-30)))),
                "mean_precision": float(np.mean(prec)), "mean_recall": float(np.mean(rec)),
                "mean_f_score": float(np.mean(f))}

    def _results(self, model, x, images) -> list:
        p = self._probabilities(model, x)
        out = []
        for row in p:
            order = np.argsort(-row, kind="stable")
            out.append({"classification_class_ids": [self._class_ids[k] for k in order],
                        "classification_class_names": [self._class_names[k] for k in order],
                        "classification_confidences": [float(row[k]) for k in order]})
        return out
