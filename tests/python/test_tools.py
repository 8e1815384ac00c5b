"""opendl.tools: non-blocking training, progress, wait, stop, early stopping, automatic batch size, deterministic
and continued training, the training queue, data augmentation, datasets and splits, files and errors."""

import json
import os
import sys
import threading
import zipfile

import numpy as np
import pytest

import opendl as ha
from opendl import demo
from opendl.errors import HOperatorError
from opendl.tools import Classifier, DataAugmentation, Dataset, DatasetSplit, TrainingQueue

TIMINGS = ("seconds", "images_per_second")


def shapes_dataset(per_class=16, size=32, seed=0):
    """Three easy classes: a horizontal bar, a vertical bar, a square; at random places on noise."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label in ("hbar", "vbar", "square"):
        for _ in range(per_class):
            im = rng.integers(0, 60, (size, size)).astype(np.uint8)
            p = int(rng.integers(4, size - 8))
            if label == "hbar":
                im[p:p + 3, 3:size - 3] = 220
            elif label == "vbar":
                im[3:size - 3, p:p + 3] = 220
            else:
                im[p:p + 6, p:p + 6] = 220
            images.append(im)
            labels.append(label)
    return Dataset.from_images(images, labels)


@pytest.fixture(scope="module")
def data():
    ds = shapes_dataset()
    return ds, DatasetSplit(ds, train=0.5, validation=0.25, test=0.25, seed=3)


def tool_for(batch_size=8, seed=5, **kw):
    tool = Classifier(**kw)
    tool.batch_size = batch_size
    tool.enable_deterministic_training = True
    tool.deterministic_training_random_seed = seed
    return tool


def learning_metrics(tool):
    return [{k: v for k, v in tool.training_metrics(i).items() if k not in TIMINGS}
            for i in range(1, tool.num_trained_iterations + 1)]


class Gate(DataAugmentation):
    """An augmentation that changes nothing, counts the samples it sees, and while closed blocks the training
    thread inside the step in progress."""

    def __init__(self, open_=False):
        super().__init__()
        self.cond = threading.Condition()
        self.open = open_
        self.waiting = False
        self.calls = 0

    def apply(self, image, gen, lo, hi):
        with self.cond:
            self.calls += 1
            self.waiting = True
            self.cond.notify_all()
            assert self.cond.wait_for(lambda: self.open, 60)
            self.waiting = False
        return image

    def hold(self):
        with self.cond:
            self.open = False

    def release(self):
        with self.cond:
            self.open = True
            self.cond.notify_all()

    def wait_blocked(self) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.waiting and not self.open, 60)


class Failing(DataAugmentation):
    def apply(self, image, gen, lo, hi):
        raise RuntimeError("augmentation failed on purpose")


# ---------------------------------------------------------------- non-blocking training and progress


def test_train_returns_while_training_runs_and_progress_is_monotone(data):
    ds, split = data
    tool = tool_for()
    gate = Gate()
    tool.train(ds, split, gate, iterations=3)
    assert gate.wait_blocked()            # the training thread is inside its first step ...
    assert tool.is_training               # ... and train() has returned
    assert tool.current_training_finished_iterations == 0
    assert tool.current_training_num_iterations == 3
    assert tool.wait_for_training_completion(timeout=0.05) == 0 and tool.is_training
    gate.release()
    seen = [tool.current_training_progression]
    while tool.is_training:
        tool.wait_for_iteration_completion()
        seen.append(tool.current_training_progression)
    assert tool.wait_for_training_completion() == 3
    seen.append(tool.current_training_progression)
    assert all(b >= a for a, b in zip(seen, seen[1:])) and seen[-1] == 1.0
    assert tool.num_trained_iterations == 3 and tool.current_training_finished_iterations == 3
    m = tool.training_metrics(3)
    for key in ("training_loss", "validation_error", "validation_loss", "validation_accuracy", "mean_precision",
                "mean_recall", "mean_f_score", "learning_rate", "batch_size"):
        assert key in m
    assert m["validation_accuracy"] == pytest.approx(1 - m["validation_error"])
    with pytest.raises(HOperatorError) as e:
        tool.training_metrics(4)
    assert e.value.error_code == 1301


def test_stop_is_prompt_and_leaves_a_consistent_tool(data):
    ds, split = data
    tool = tool_for(batch_size=4)
    gate = Gate(open_=True)
    tool.train(ds, split, gate, iterations=50)
    tool.wait_for_iteration_completion()
    gate.hold()
    assert gate.wait_blocked()            # blocked inside a step of iteration >= 2
    calls_at_stop = gate.calls
    stopper = threading.Thread(target=tool.stop_training)
    stopper.start()
    while not tool._stop.is_set():
        pass
    gate.release()
    stopper.join(60)
    assert not tool.is_training
    # At most the rest of the step in progress ran after the stop request (batch size 4).
    assert gate.calls - calls_at_stop <= 3
    n = tool.num_trained_iterations
    assert 1 <= n < 50 and tool.current_training_finished_iterations == n
    assert tool.current_training_progression < 1.0
    # The discarded partial iteration left no trace: continuing trains on from iteration n.
    assert len(tool.apply([ds.image(0)])) == 1
    tool.train(ds, split, None, iterations=1)
    assert tool.wait_for_training_completion() == 1
    assert tool.num_trained_iterations == n + 1


def test_errors_of_the_training_thread_surface_on_the_next_wait(data):
    ds, split = data
    tool = tool_for()
    tool.train(ds, split, Failing(), iterations=2)
    with pytest.raises(RuntimeError, match="on purpose"):
        tool.wait_for_training_completion()
    assert tool.num_trained_iterations == 0
    tool.wait_for_training_completion()   # raised once only
    tool.train(ds, split, None, iterations=1)
    assert tool.wait_for_training_completion() == 1


def test_a_first_training_that_fails_leaves_the_tool_untrained(data):
    ds, split = data
    tool = Classifier()
    tool.enable_deterministic_training = True
    tool.train(ds, split, Failing(), iterations=1)  # fails in the thread, before its first iteration completes
    with pytest.raises(RuntimeError, match="on purpose"):
        tool.wait_for_training_completion()
    assert (tool.image_size, tool.class_names, tool.batch_size, tool.is_batch_size_optimized) == \
        (None, None, None, True)
    # neither the split nor the image size was fixed: another dataset of another size trains
    other = shapes_dataset(per_class=4, size=24, seed=1)
    tool.train(other, DatasetSplit(other, 0.5, 0.5), iterations=1)
    assert tool.wait_for_training_completion() == 1 and tool.image_size == (24, 24)

    # images of 2 channels are refused by train() itself, naming the image, and change nothing
    rng = np.random.default_rng(0)
    two = Dataset.from_images([rng.integers(0, 255, (16, 16, 2)).astype(np.uint8) for _ in range(8)], [0, 1] * 4)
    fresh = Classifier()
    with pytest.raises(HOperatorError, match="image 0 has 2 channels") as e:
        fresh.train(two, DatasetSplit(two, 0.5, 0.5), iterations=1)
    assert e.value.error_code == 1301 and fresh.image_size is None and fresh.class_names is None


# ---------------------------------------------------------------- early stopping and best iteration


def test_early_stopping_ends_on_the_best_iteration(data):
    ds, split = data
    tool = tool_for(early_stopping_patience=3, max_iterations=25)
    tool.train(ds, split)                 # iterations=None: early stopping
    tool.wait_for_training_completion()
    metrics = [tool.training_metrics(i) for i in range(1, tool.num_trained_iterations + 1)]
    keys = [(m["validation_error"], m["validation_loss"]) for m in metrics]
    best = min(range(len(keys)), key=lambda i: keys[i]) + 1
    assert tool.best_iteration == best
    n = tool.num_trained_iterations
    assert n == min(25, best + 3)
    # The tool answers with the best iteration's weights: its validation figures come back from apply.
    res = tool.apply([ds.image(i) for i in split.validation])
    names = np.array([r["classification_class_names"][0] for r in res])
    truth = np.array([ds.class_names[k] for k in ds.labels[split.validation]])
    assert np.mean(names != truth) == pytest.approx(metrics[best - 1]["validation_error"])
    p_true = [dict(zip(r["classification_class_names"], r["classification_confidences"]))[t]
              for r, t in zip(res, truth)]
    assert np.mean(-np.log(p_true)) == pytest.approx(metrics[best - 1]["validation_loss"], rel=1e-5)
    # Continuing after an automatic run needs a count.
    with pytest.raises(HOperatorError) as e:
        tool.train(ds, split)
    assert e.value.error_code == 1304


def test_early_stopping_needs_a_validation_split(data):
    ds, _ = data
    with pytest.raises(HOperatorError) as e:
        tool_for().train(ds, DatasetSplit(ds, train=0.8, seed=1))
    assert e.value.error_code == 1302 and "validation" in str(e.value)


def test_the_tool_learns(data):
    ds, split = data
    tool = tool_for(batch_size=4)
    tool.train(ds, split, DataAugmentation(flip_horizontal=True, flip_vertical=True), iterations=12)
    tool.wait_for_training_completion()
    res = tool.apply(np.stack([ds.image(i) for i in split.test]))
    pred = [r["classification_class_names"][0] for r in res]
    truth = [ds.class_names[k] for k in ds.labels[split.test]]
    assert np.mean([p == t for p, t in zip(pred, truth)]) >= 0.75
    for r in res:
        assert sorted(r["classification_class_names"]) == sorted(ds.class_names)
        assert sum(r["classification_confidences"]) == pytest.approx(1.0, abs=1e-5)


# ---------------------------------------------------------------- determinism and continued training


def test_deterministic_training_is_bit_identical_whatever_the_thread_count(data):
    ds, split = data
    aug = DataAugmentation(flip_horizontal=True, rotation=10, brightness=0.05, gaussian_noise=0.02)
    runs = []
    before = ha.get_system("thread_num")
    try:
        for threads in (1, 3):
            ha.set_system("thread_num", threads)
            tool = Classifier()
            tool.enable_deterministic_training = True
            tool.deterministic_training_random_seed = 42
            tool.train(ds, split, aug, iterations=2)
            tool.wait_for_training_completion()
            runs.append(tool)
    finally:
        ha.set_system("thread_num", before[0])
    a, b = runs
    assert a.batch_size == b.batch_size > 1
    assert learning_metrics(a) == learning_metrics(b)
    assert a._train_bytes == b._train_bytes
    # Another seed gives another model.
    c = tool_for(batch_size=a.batch_size, seed=43)
    c.train(ds, split, aug, iterations=2)
    c.wait_for_training_completion()
    assert learning_metrics(c) != learning_metrics(a)


def test_two_plus_two_iterations_after_save_and_load_equal_four(data, tmp_path):
    ds, split = data
    aug = DataAugmentation(flip_vertical=True, shift=0.1, contrast=0.2)
    whole = tool_for()
    whole.train(ds, split, aug, iterations=4)
    whole.wait_for_training_completion()

    first = tool_for()
    first.train(ds, split, aug, iterations=2)
    first.wait_for_training_completion()
    first.save(tmp_path / "tool.odt")
    again = Classifier.load(tmp_path / "tool.odt")
    assert again.num_trained_iterations == 2 and again.batch_size == 8
    again.train(ds, split, aug, iterations=2)
    assert again.wait_for_training_completion() == 2
    assert again.num_trained_iterations == 4
    assert learning_metrics(again) == learning_metrics(whole)
    assert again._train_bytes == whole._train_bytes
    assert again.best_iteration == whole.best_iteration
    probe = [ds.image(i) for i in split.test[:4]]
    assert again.apply(probe) == whole.apply(probe)


def test_split_is_locked_and_files_without_training_model_cannot_continue(data, tmp_path):
    ds, split = data
    tool = tool_for()
    tool.train(ds, split, None, iterations=1)
    tool.wait_for_training_completion()
    with pytest.raises(HOperatorError) as e:
        tool.train(ds, DatasetSplit(ds, train=0.5, validation=0.25, test=0.25, seed=4), None, iterations=1)
    assert e.value.error_code == 1302 and "split" in str(e.value)
    other = shapes_dataset(seed=9)
    with pytest.raises(HOperatorError) as e:
        tool.train(ds, DatasetSplit(other, train=0.5, validation=0.5), None, iterations=1)
    assert e.value.error_code == 1302
    assert tool.num_trained_iterations == 1
    tool.save(tmp_path / "inference_only.odt", include_training_model=False)
    with zipfile.ZipFile(tmp_path / "inference_only.odt") as z:
        assert sorted(z.namelist()) == ["model.hdl", "tool.json"]
        (tmp_path / "model.hdl").write_bytes(z.read("model.hdl"))
    plain = ha.read_dl_model(str(tmp_path / "model.hdl"))     # an ordinary model file
    assert ha.get_dl_model_param(plain, "class_names") == ds.class_names
    loaded = Classifier.load(tmp_path / "inference_only.odt")
    assert loaded.apply([ds.image(3)]) == tool.apply([ds.image(3)])
    with pytest.raises(HOperatorError) as e:
        loaded.train(ds, split, None, iterations=1)
    assert e.value.error_code == 1301 and "include_training_model" in str(e.value)


# ---------------------------------------------------------------- batch size


def test_automatic_batch_size_is_measured_and_greater_than_one_on_the_cpu(data):
    ds, split = data
    tool = Classifier()
    assert tool.is_batch_size_optimized and tool.batch_size is None
    tool.train(ds, split, None, iterations=1)
    tool.wait_for_training_completion()
    assert 1 < tool.batch_size <= max(2, split.train.size // 8)
    assert tool.training_metrics(1)["batch_size"] == tool.batch_size
    b = tool.batch_size_for_maximum_inference_speed
    assert b >= 1 and b & (b - 1) == 0
    tool.batch_size = 3
    assert not tool.is_batch_size_optimized
    tool.train(ds, split, None, iterations=1)
    tool.wait_for_training_completion()
    assert tool.training_metrics(2)["batch_size"] == 3
    with pytest.raises(HOperatorError):
        tool.batch_size = 0


# ---------------------------------------------------------------- queue


def test_training_queue_runs_in_order_with_reorder_and_cancel(data):
    ds, split = data
    tools = [tool_for() for _ in range(4)]
    gate = Gate()
    queue = TrainingQueue()
    jobs = [queue.add(tools[0], ds, split, gate, iterations=1)]
    assert gate.wait_blocked()           # job 0 is running and held
    jobs += [queue.add(t, ds, split, None, iterations=1) for t in tools[1:]]
    assert queue.running is jobs[0] and queue.pending == jobs[1:]
    queue.move(jobs[3], 0)
    queue.cancel(jobs[2])
    assert queue.pending == [jobs[3], jobs[1]]
    with pytest.raises(HOperatorError):
        queue.move(jobs[0], 0)            # running, not pending
    gate.release()
    assert queue.wait(300)
    assert [j.id for j in queue.finished] == [jobs[2].id, jobs[0].id, jobs[3].id, jobs[1].id]
    assert [j.state for j in jobs] == ["done", "done", "cancelled", "done"]
    assert [t.num_trained_iterations for t in tools] == [1, 1, 0, 1]


# ---------------------------------------------------------------- data augmentation


def test_augmentation_ranges_and_reproducibility():
    rng = np.random.default_rng(1)
    image = rng.uniform(-100, 100, (20, 24, 3)).astype(np.float32)
    assert np.array_equal(DataAugmentation().apply(image, np.random.default_rng(0), -127, 128), image)
    flips = DataAugmentation(flip_horizontal=True, flip_vertical=True)
    outs = [flips.apply(image, np.random.default_rng(s), -127, 128) for s in range(12)]
    allowed = [image, image[:, ::-1], image[::-1], image[::-1, ::-1]]
    for o in outs:
        assert any(np.allclose(o, a, atol=1e-4) for a in allowed)
    assert len({tuple(np.round(o[0, :2, 0], 3)) for o in outs}) > 1
    b = DataAugmentation(brightness=0.1)
    out = b.apply(image, np.random.default_rng(3), -127, 128)
    offset = out - image
    assert np.allclose(offset, offset.flat[0], atol=1e-4) and abs(offset.flat[0]) <= 0.1 * 255 + 1e-4
    noisy = DataAugmentation(gaussian_noise=0.5, salt_and_pepper=0.5, speckle_noise=0.5)
    out = noisy.apply(image, np.random.default_rng(4), -127, 128)
    assert out.min() >= -127 and out.max() <= 128 and out.dtype == np.float32
    everything = DataAugmentation(True, True, 20, (0.8, 1.2), 0.1, 10, 0.1, 0.2, 30, 0.3, 0.05, 0.05, 0.01)
    a = everything.apply(image, np.random.default_rng(7), -127, 128)
    assert np.array_equal(a, everything.apply(image, np.random.default_rng(7), -127, 128))
    assert a.shape == image.shape
    grey = image[:, :, 0]
    assert everything.apply(grey, np.random.default_rng(7), -127, 128).shape == grey.shape


def test_augmentation_keeps_the_values_of_images_outside_the_byte_range():
    """The tools preprocess with normalization 'none', which leaves 16-bit and real images at their own values;
    the augmentation cut every result to [lo, hi], so a flip alone turned a uint16 image into a constant 128."""
    rng = np.random.default_rng(2)
    wide = rng.integers(1000, 4000, (12, 10)).astype(np.float32)
    flipped = DataAugmentation(flip_horizontal=True).apply(wide, np.random.default_rng(0), -127, 128)
    assert any(np.array_equal(flipped, w) for w in (wide, wide[:, ::-1]))
    out = DataAugmentation(brightness=0.1).apply(wide, np.random.default_rng(3), -127, 128)
    offset = out - wide  # R = the range widened to the image's values: 3999 - (-127) at most
    assert np.allclose(offset, offset.flat[0], atol=1e-2) and 1 < abs(offset.flat[0]) <= 0.1 * (4000 + 127)
    noisy = DataAugmentation(salt_and_pepper=0.5).apply(wide, np.random.default_rng(4), -127, 128)
    assert set(np.unique(noisy[noisy != wide])) <= {-127.0, float(wide.max())}


def test_augmentation_geometry_against_numpy():
    image = np.arange(7 * 9, dtype=np.float32).reshape(7, 9)
    # A shift of exactly one pixel to the right: draw u[4] so that (2u - 1) * shift * w == 1.
    aug = DataAugmentation(shift=1.0 / 9)

    class Fixed:
        def random(self, n):
            u = np.full(n, 0.5)
            u[4] = 1.0
            return u

    out = aug.apply(image, Fixed(), 0, 1000)
    assert np.allclose(out[:, 1:], image[:, :-1]) and np.allclose(out[:, 0], image[:, 0])
    rot = DataAugmentation(rotation=90.0)

    class Quarter:
        def random(self, n):
            u = np.full(n, 0.5)
            u[2] = 1.0          # +90 degrees
            return u

    square = np.arange(25, dtype=np.float32).reshape(5, 5)
    turned = rot.apply(square, Quarter(), 0, 1000)
    assert np.allclose(turned, np.rot90(square, 1)) or np.allclose(turned, np.rot90(square, -1))


@pytest.mark.parametrize("kw", [{"rotation": -1}, {"scale": (1.2, 1.0)}, {"brightness": 2},
                                {"flip_horizontal": "yes"}, {"salt_and_pepper": "0.1"}])
def test_augmentation_rejects_bad_ranges(kw):
    with pytest.raises(HOperatorError) as e:
        DataAugmentation(**kw)
    assert e.value.error_code == 1302 and list(kw)[0] in str(e.value)


# ---------------------------------------------------------------- datasets and splits


def test_split_is_stratified_disjoint_and_seeded(data):
    ds, split = data
    parts = [split.train, split.validation, split.test]
    assert sum(p.size for p in parts) == len(ds)
    assert len(set(np.concatenate(parts).tolist())) == len(ds)
    for c in range(ds.num_classes):
        assert [int(np.sum(ds.labels[p] == c)) for p in parts] == [8, 4, 4]
    again = DatasetSplit(ds, train=0.5, validation=0.25, test=0.25, seed=3)
    assert again.fingerprint == split.fingerprint
    assert DatasetSplit(ds, train=0.5, validation=0.25, test=0.25, seed=4).fingerprint != split.fingerprint
    partial = DatasetSplit(ds, train=0.5)
    assert partial.validation.size == 0 and partial.test.size == 0 and partial.train.size == 24
    for kw, code in (({"train": 0.8, "validation": 0.3}, 1302), ({"validation": -0.1}, 1303),
                     ({"test": 2}, 1304), ({"seed": -1}, 1305)):
        with pytest.raises(HOperatorError) as e:
            DatasetSplit(ds, **kw)
        assert e.value.error_code == code


def test_dataset_from_folder_and_from_dldataset(tmp_path):
    root = demo.write_demo_dataset(str(tmp_path / "images"), num_per_class=3, seed=1, size=32)
    a = Dataset.from_folder(root)
    b = Dataset.from_dldataset(ha.read_dl_dataset_classification(root, "last_folder"))
    assert len(a) == 12 and a.class_names == sorted(demo.CLASS_NAMES)
    assert a.fingerprint == b.fingerprint
    assert a.image(0).shape == (32, 32)
    with pytest.raises(HOperatorError) as e:
        Dataset.from_images([np.zeros((8, 8))], ["a", "b"])
    assert e.value.error_code == 1302
    with pytest.raises(HOperatorError) as e:
        Dataset.from_images([np.zeros((8, 8)), np.zeros((8, 8))], [0, "x"], class_names=["a"])
    assert e.value.error_code == 1302


# ---------------------------------------------------------------- files and threads


def test_load_and_save_errors_leave_files_as_they_were(data, tmp_path):
    ds, split = data
    with pytest.raises(HOperatorError) as e:
        Classifier.load(tmp_path / "missing.odt")
    assert e.value.error_code == 5200
    junk = tmp_path / "junk.odt"
    junk.write_bytes(b"not a tool")
    with pytest.raises(HOperatorError) as e:
        Classifier.load(junk)
    assert e.value.error_code == 5238
    with pytest.raises(HOperatorError) as e:
        Classifier().save(tmp_path / "untrained.odt")
    assert e.value.error_code == 1301 and not (tmp_path / "untrained.odt").exists()
    tool = tool_for()
    tool.train(ds, split, None, iterations=1)
    tool.wait_for_training_completion()
    with pytest.raises(HOperatorError) as e:
        tool.save(tmp_path / "no_such_dir" / "tool.odt")
    assert e.value.error_code == 3142 and not (tmp_path / "no_such_dir").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.odt"]


def test_damaged_tool_files_and_untrained_tools_raise_clear_errors(data, tmp_path):
    """A tool.json that is not an object, lacks entries or holds values of the wrong kind (hand-edited or
    damaged) raised KeyError / TypeError / AttributeError, or loaded and failed later; apply before training
    raised a TypeError from the preprocessing."""
    with pytest.raises(HOperatorError) as e:
        Classifier().apply(np.zeros((32, 32), np.float32))
    assert e.value.error_code == 1301 and "not been trained" in str(e.value)
    for kw, code in (({"image_size": 5}, 1302), ({"learning_rate": float("inf")}, 1305)):
        with pytest.raises(HOperatorError) as e:
            Classifier(**kw)
        assert e.value.error_code == code
    with pytest.raises(HOperatorError) as e:
        Dataset.from_images([np.zeros((8, 8), np.float32)] * 2, 5)
    assert e.value.error_code == 1202 and "labels" in str(e.value)
    with pytest.raises(HOperatorError) as e:
        Classifier.load(5)
    assert e.value.error_code == 1201
    ds, split = data
    tool = tool_for()
    tool.train(ds, split, None, iterations=1)
    tool.wait_for_training_completion()
    good = tmp_path / "good.odt"
    tool.save(good)
    with zipfile.ZipFile(good) as z:
        files = {n: z.read(n) for n in z.namelist()}
    meta = json.loads(files["tool.json"])
    variants = {"list": [1, 2], "no_settings": {k: v for k, v in meta.items() if k != "settings"},
                "version": dict(meta, version="x"), "settings": dict(meta, settings={"image_size": "x"}),
                "setting_key": dict(meta, settings=dict(meta["settings"], colour=1)),
                "batch": dict(meta, settings=dict(meta["settings"], batch_size=0)),
                "names": dict(meta, class_names=5), "best": dict(meta, best=[1]), "metrics": dict(meta, metrics=5),
                "inference_batch": dict(meta, inference_batch="x"),
                # loaded before and failed later: KeyError at train, KeyError at apply, best iteration 100 of 1
                "lock": dict(meta, lock={}), "best_beyond": dict(meta, best=[99, 0.1, 0.2]),
                "one_class": dict(meta, class_names=meta["class_names"][:1], class_ids=meta["class_ids"][:1])}
    for name, m in variants.items():
        path = tmp_path / f"{name}.odt"
        with zipfile.ZipFile(path, "w") as z:
            for n, b in files.items():
                z.writestr(n, json.dumps(m) if n == "tool.json" else b)
        with pytest.raises(HOperatorError) as e:
            Classifier.load(path)
        assert e.value.error_code == 5238 and "tool.json" in str(e.value), (name, str(e.value))
    # a damaged deflate stream (was a raw zlib.error)
    data = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as z:
        info = z.getinfo("tool.json")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    for k in range(start + 5, start + 40):
        data[k] ^= 0x5A
    (tmp_path / "deflate.odt").write_bytes(bytes(data))
    with pytest.raises(HOperatorError) as e:
        Classifier.load(tmp_path / "deflate.odt")
    assert e.value.error_code == 5238
    assert len(Classifier.load(good).apply(np.zeros((32, 32), np.float32))) == 1


def test_model_trained_in_a_thread_can_be_applied_in_another():
    """Regression: oneDNN primitives created in the training thread crashed when run from the main thread."""
    ha.set_system("seed_rand", 3)
    m = ha.read_dl_model("pretrained_dl_classifier_compact.hdl")
    ha.set_dl_model_param(m, "image_dimensions", [32, 32, 1])
    ha.set_dl_model_param(m, "class_ids", [0, 1])
    ha.set_dl_model_param(m, "batch_size", 4)
    x = np.random.default_rng(0).random((6, 32, 32)).astype(np.float32)
    t = threading.Thread(target=ha.train_dl_model_batch,
                         args=(m, [{"image": im, "image_label_id": [k % 2]} for k, im in enumerate(x[:4])]))
    t.start()
    t.join()
    assert len(ha.apply_dl_model(m, [{"image": im} for im in x[:4]], [])) == 4
    assert len(ha.apply_dl_model(m, [{"image": im} for im in x[4:]], [])) == 2


def test_thread_num_applies_in_every_thread():
    before = ha.get_system("thread_num")
    seen = []
    try:
        ha.set_system("thread_num", 1)
        t = threading.Thread(target=lambda: seen.append(ha.get_system("thread_num")))
        t.start()
        t.join()
    finally:
        ha.set_system("thread_num", before[0])
    assert seen == [[1]]


_SCRIPT_START = (
    "import os, signal, threading, time\n"
    "import numpy as np\n"
    "from opendl.tools import Classifier, Dataset, DatasetSplit, TrainingQueue\n"
    "rng = np.random.default_rng(0)\n"
    "ds = Dataset.from_images([rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(16)],\n"
    "                         [i % 2 for i in range(16)])\n"
    "split = DatasetSplit(ds, 0.5, 0.5)\n"
    "tool = Classifier()\n"
    "tool.batch_size = 2\n"
    "tool.train(ds, split, iterations=1000)\n")


def run_training_script(tmp_path, body: str):
    """Runs a script that starts a long training (tool, ds, split) and then ``body``, in a fresh interpreter;
    its exit must be clean (no SIGABRT from a training thread left inside the core)."""
    import subprocess
    script = tmp_path / "training_script.py"
    script.write_text(_SCRIPT_START + body)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600,
                          cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "terminate" not in done.stderr
    return done


def test_interpreter_exit_while_a_tool_trains_stops_the_training_cleanly(tmp_path):
    # a training thread left inside the C++ core at interpreter shutdown used to abort the process (SIGABRT)
    done = run_training_script(tmp_path,
                               "while tool.current_training_finished_iterations < 1:\n"
                               "    tool.wait_for_iteration_completion(60)\n"
                               "print('leaving', flush=True)\n")
    assert "leaving" in done.stdout


def test_tool_inputs_are_checked_when_given(data, tmp_path):
    from opendl.tools import Segmenter
    ds, split = data
    tool = tool_for(image_size=(np.int64(32), np.int64(32)))  # numpy integers are stored as Python ints
    with pytest.raises(HOperatorError) as e:
        tool.deterministic_training_random_seed = 2 ** 80
    assert e.value.error_code == 1302
    tool.train(ds, split, iterations=1)
    tool.wait_for_training_completion()
    tool.save(str(tmp_path / "np.tool"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["np.tool"]
    image = np.zeros((32, 32), np.uint8)
    # a single (H, W, 1) image is one image, not a stack of H images
    assert len(tool.apply(image[:, :, None])) == 1 and len(tool.apply(np.stack([image] * 5))) == 5
    for bad in (5, None):
        with pytest.raises(HOperatorError) as e:
            tool.apply(bad)
        assert e.value.error_code == 1201
    for kw, code in (({"max_class_weight": float("inf")}, 1310), ({"class_weights": [float("inf"), 1.0]}, 1309)):
        with pytest.raises(HOperatorError) as e:
            Segmenter(**kw)
        assert e.value.error_code == code


def test_dataset_builders_refuse_bad_input_with_halcon_errors(tmp_path):
    ims = [np.zeros((8, 8), np.uint8)] * 2
    cases = [
        (lambda: Dataset.from_images(ims, [2 ** 70, 0]), 1302, "class indices"),   # was a MemoryError
        (lambda: Dataset.from_images(ims, [10 ** 9, 0]), 1302, "class indices"),   # was 10^9 class names
        (lambda: Dataset.from_images(ims, ["a", "b"], class_names=["a", "b", "a"]), 1302, "'a' appears"),
        (lambda: Dataset.from_images(ims, [np.zeros((8, 8), int)] * 2, class_ids=[0, 70000]), 1303, "65535"),
        (lambda: Dataset.from_folder(None), 1201, "path"),
        (lambda: Dataset.from_folder(5), 1201, "path"),
        (lambda: Dataset.from_coco(str(tmp_path / "c.json"), 5), 1202, "image_dir"),
        (lambda: Dataset.from_dldataset({"class_names": ["a"], "class_ids": ["x"],
                                         "samples": [{"image_file_name": "a.png", "image_label_id": 0}]}),
         1303, "class_ids"),
        (lambda: Dataset.from_dldataset({"class_names": ["a"], "class_ids": [0],
                                         "samples": [{"image_file_name": 5, "image_label_id": 0}]}),
         1301, "sample 0: 'image_file_name'"),
        (lambda: Dataset.from_dldataset({"class_names": ["a"], "class_ids": [0], "image_dir": 5,
                                         "samples": [{"image_file_name": "a.png", "image_label_id": 0}]}),
         1301, "image_dir"),
    ]
    for fn, code, text in cases:
        with pytest.raises(HOperatorError) as e:
            fn()
        assert (e.value.error_code, text in str(e.value)) == (code, True), str(e.value)


def test_settings_waits_queue_and_augmentation_dicts_check_their_arguments(data):
    ds, split = data
    tool = Classifier()
    for fn, code, text in (
            (lambda: setattr(tool, "enable_deterministic_training", "false"), 1302, "True or False"),
            (lambda: tool.optimize_batch_size("false"), 1201, "True or False"),
            (lambda: tool.wait_for_iteration_completion("x"), 1201, "timeout"),
            (lambda: tool.wait_for_training_completion(float("nan")), 1201, "timeout"),
            (lambda: Dataset.from_images([np.zeros((8, 8), np.uint8)], [dict.fromkeys(
                ("bbox_label_id", "bbox_row1", "bbox_col1", "bbox_row2", "bbox_col2"), [])]), 1303, "0 class_ids"),
            (lambda: TrainingQueue().wait("x"), 1201, "timeout"),
            (lambda: TrainingQueue().add(tool, 5, split), 1201, "dataset"),
            (lambda: TrainingQueue().add(tool, ds, split, iterations=0), 1304, "iterations"),
            (lambda: TrainingQueue().add(object(), ds, split), 1201, "tool"),
            (lambda: DataAugmentation.from_dict({"foo": 1}), 1301, "'foo'"),
            (lambda: DataAugmentation.from_dict(None), 1201, "dict"),
            (lambda: DataAugmentation.from_dict({"rotation": "x"}), 1302, "rotation")):
        with pytest.raises(HOperatorError) as e:
            fn()
        assert (e.value.error_code, text in str(e.value)) == (code, True), str(e.value)
    # the settings are unchanged, and a valid dict round-trips (a scalar scale as the constructor takes it)
    assert tool.enable_deterministic_training is False and tool.is_batch_size_optimized is True
    assert tool.wait_for_training_completion(float("inf")) == 0  # no limit, as -1 (threading refuses inf)
    aug = DataAugmentation(rotation=10, scale=(0.9, 1.1))
    assert DataAugmentation.from_dict(aug.as_dict()) == aug
    assert DataAugmentation.from_dict({"scale": 2}).scale == (2.0, 2.0)


# ---------------------------------------------------------------- what an audit of the tools found (audit 7)


class SlowStart(Classifier):
    """A Classifier whose model building (the first train() call's slow part) waits until ``proceed`` is set."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.entered, self.proceed = threading.Event(), threading.Event()
        self.batch_size = 8
        self.enable_deterministic_training = True

    def _create_model(self, dataset, op):
        self.entered.set()
        assert self.proceed.wait(60)
        super()._create_model(dataset, op)


def test_a_training_counts_from_train_and_a_stop_while_the_model_is_built_is_kept(data):
    """train() checked 'already training' by the thread, which starts only after the model is built: a second
    train() in that time started a second training, and a stop (a queue's cancel) was cleared by the first."""
    ds, split = data
    tool = SlowStart()
    first = threading.Thread(target=tool.train, args=(ds, split), kwargs={"iterations": 2})
    first.start()
    assert tool.entered.wait(60)
    assert tool.is_training
    with pytest.raises(HOperatorError) as e:
        tool.train(ds, split, iterations=2)
    assert e.value.error_code == 7720
    tool.stop_training(wait=False)
    tool.proceed.set()
    first.join(60)
    tool.wait_for_training_completion()
    assert not tool.is_training and tool.num_trained_iterations == 0


def test_a_queue_job_cancelled_while_it_starts_does_not_train(data):
    ds, split = data
    tool = SlowStart()
    queue = TrainingQueue()
    job = queue.add(tool, ds, split, iterations=3)
    assert tool.entered.wait(60)
    queue.cancel(job)
    tool.proceed.set()
    assert queue.wait(120)
    assert job.state == "cancelled" and job.iterations_trained == 0 and tool.num_trained_iterations == 0


class FailAfter(DataAugmentation):
    """Changes nothing for ``n`` images, then fails."""

    def __init__(self, n):
        super().__init__()
        self.n = n

    def apply(self, image, gen, lo, hi):
        self.n -= 1
        if self.n < 0:
            raise RuntimeError("augmentation failed on purpose")
        return image


def test_a_failed_queue_job_counts_the_iterations_it_completed(data):
    ds, split = data
    tool = tool_for(batch_size=8)
    per_iteration = (split.train.size // 8) * 8
    queue = TrainingQueue()
    job = queue.add(tool, ds, split, FailAfter(2 * per_iteration), iterations=5)
    assert queue.wait(300)
    assert job.state == "failed" and "on purpose" in str(job.error)
    assert job.iterations_trained == 2 == tool.num_trained_iterations


def test_a_wait_longer_than_threading_takes_means_no_limit(data):
    """A timeout beyond threading.TIMEOUT_MAX raised OverflowError inside Thread.join, which also marked the
    running training as ended."""
    ds, split = data
    tool = tool_for()
    gate = Gate()
    tool.train(ds, split, gate, iterations=1)
    assert gate.wait_blocked()
    threading.Timer(0.2, gate.release).start()
    assert tool.wait_for_iteration_completion(1e10)
    assert tool.wait_for_training_completion(sys.maxsize) == 1 and not tool.is_training


def test_model_building_seeds_only_its_own_thread():
    """The tools seeded a new model through the process-wide 'seed_rand': two tools starting at once got each
    other's seeds, and the user's seed_rand could be left changed."""
    def weights(m):
        return np.concatenate([np.ravel(w) for name in ha.get_dl_model_param(m, "layer_names")[:3]
                               for w in _layer_weights(m, name)])

    ha.set_system("seed_rand", 5)
    with_5 = weights(ha.read_dl_model("pretrained_dl_classifier_compact.hdl"))
    ha.set_system("seed_rand", 77)
    with_77 = weights(ha.read_dl_model("pretrained_dl_classifier_compact.hdl"))
    assert not np.array_equal(with_5, with_77)
    seen = {}

    def build():
        ha._core.set_thread_seed(5)
        try:
            seen["thread"] = weights(ha.read_dl_model("pretrained_dl_classifier_compact.hdl"))
        finally:
            ha._core.clear_thread_seed()
        seen["after"] = weights(ha.read_dl_model("pretrained_dl_classifier_compact.hdl"))

    t = threading.Thread(target=build)
    t.start()
    t.join()
    np.testing.assert_array_equal(seen["thread"], with_5)
    np.testing.assert_array_equal(seen["after"], with_77)
    assert ha.get_system("seed_rand") == [77]
    np.testing.assert_array_equal(weights(ha.read_dl_model("pretrained_dl_classifier_compact.hdl")), with_77)


def _layer_weights(model, name):
    out = []
    for kind in ("weights", "bias"):
        try:
            out.append(np.asarray(ha.get_dl_model_layer_weights(model, name, kind)))
        except HOperatorError:
            pass
    return out


def test_apply_from_two_threads_at_once(data):
    """Both calls set the batch size of one shared inference model: one of them failed with 7784."""
    ds, split = data
    tool = tool_for()
    tool.train(ds, split, iterations=1)
    tool.wait_for_training_completion()
    images = [ds.image(i) for i in range(12)]
    errors = []

    def run(n):
        try:
            for _ in range(15):
                assert len(tool.apply(images[:n])) == n
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(n,)) for n in (12, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def test_dataset_fingerprints_do_not_depend_on_how_the_folder_is_named(tmp_path, monkeypatch):
    """'images', './images' and the absolute path gave three fingerprints, so a saved tool could not continue
    after a change of working directory or a moved folder ('trained with another split')."""
    import shutil
    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            ha.write_image(rng.integers(0, 255, (8, 8), dtype=np.uint8), "png", 0, str(root / c / str(i)))
    monkeypatch.chdir(tmp_path)
    prints = {Dataset.from_folder(p).fingerprint for p in (str(root), "images", "./images", "images/")}
    shutil.copytree(root, tmp_path / "moved" / "elsewhere")
    prints.add(Dataset.from_folder(str(tmp_path / "moved" / "elsewhere")).fingerprint)
    assert len(prints) == 1
    (root / "b" / "2.png").rename(root / "b" / "3.png")  # other files: another dataset
    assert Dataset.from_folder("images").fingerprint not in prints


def test_save_gives_the_file_the_usual_permissions_and_arguments_are_checked(data, tmp_path):
    import stat
    ds, split = data
    tool = tool_for()
    tool.train(ds, split, iterations=1)
    tool.wait_for_training_completion()
    umask = os.umask(0o022)
    try:
        tool.save(str(tmp_path / "t.odt"))
    finally:
        os.umask(umask)
    assert stat.S_IMODE(os.stat(tmp_path / "t.odt").st_mode) == 0o644  # was 0600 (mkstemp)
    with pytest.raises(HOperatorError) as e:
        tool.save(str(tmp_path / "u.odt"), include_training_model="no")  # was taken as True
    assert e.value.error_code == 1202 and not (tmp_path / "u.odt").exists()
    with pytest.raises(HOperatorError) as e:
        Classifier(image_num_channels=True)
    assert e.value.error_code == 1303
    from opendl.tools import Locator
    Locator(detection_param={"max_num_detections": np.int64(50), "min_confidence": np.float32(0.25)})


def test_ctrl_c_in_a_wait_keeps_the_training_counted_and_the_exit_clean(tmp_path):
    """Ctrl-C inside wait_for_training_completion (a Thread.join) marked the running thread as ended: is_training
    read False while it trained on, and at exit nothing stopped it (SIGABRT). A queue starting a job at exit
    aborted the same way."""
    done = run_training_script(tmp_path,
                               "threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()\n"
                               "try:\n"
                               "    tool.wait_for_training_completion()\n"
                               "except KeyboardInterrupt:\n"
                               "    print('interrupted, training', tool.is_training, flush=True)\n"
                               "other = Classifier()\n"
                               "other.batch_size = 2\n"
                               "TrainingQueue().add(other, ds, split, iterations=1000)\n"
                               "time.sleep(0.03)\n")
    assert "interrupted, training True" in done.stdout


def test_the_automatic_batch_size_is_chosen_once_and_kept_by_continued_trainings(data, tmp_path):
    """Every train() timed the batch sizes again, so a continued training could take another batch size than
    the run it continues."""
    ds, split = data
    tool = Classifier()
    probes = []
    original = tool._probe_training_batch

    def probe(x, y, cap):
        probes.append(cap)
        return original(x, y, cap)

    tool._probe_training_batch = probe
    tool.train(ds, split, iterations=1)
    tool.wait_for_training_completion()
    chosen = tool.batch_size
    tool.train(ds, split, iterations=1)
    tool.wait_for_training_completion()
    assert len(probes) == 1 and tool.batch_size == chosen and tool.is_batch_size_optimized
    tool.save(str(tmp_path / "t.odt"))
    loaded = Classifier.load(str(tmp_path / "t.odt"))
    assert loaded._settings["batch_size_chosen"] and loaded.batch_size == chosen
    tool.optimize_batch_size(True)  # asked for again: the next training times the sizes again
    tool.train(ds, split, iterations=1)
    tool.wait_for_training_completion()
    assert len(probes) == 2 and tool.num_trained_iterations == 3
