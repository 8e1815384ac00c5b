"""opendl.tools.Segmenter: label-image datasets and splits, augmentation that moves label images with their
images, IoU-based validation and early stopping, class weights, continued and deterministic training, results at
the size of the given image, and bad input."""

import numpy as np
import pytest

from opendl import demo
from opendl.errors import HOperatorError
from opendl.tools import Classifier, DataAugmentation, Dataset, DatasetSplit, Segmenter
from segmentation_helpers import confusion, iou_per_class

TIMINGS = ("seconds", "images_per_second")
NAMES = list(demo.SEGMENTATION_CLASS_NAMES)


def scenes(n, size=48, seed=0):
    rng = np.random.default_rng(seed)
    images, labels = zip(*[demo.make_segmentation_scene(rng, size) for _ in range(n)])
    return list(images), list(labels)


@pytest.fixture(scope="module")
def data():
    images, labels = scenes(72)
    ds = Dataset.from_images(images, labels, class_names=NAMES)
    return ds, DatasetSplit(ds, train=0.6, validation=0.25, test=0.15, seed=2)


@pytest.fixture(scope="module")
def trained(data):
    """A Segmenter trained with early stopping (patience 3, at most 14 iterations)."""
    ds, split = data
    tool = Segmenter(early_stopping_patience=3, max_iterations=14)
    tool.batch_size = 6
    tool.enable_deterministic_training = True
    tool.train(ds, split, DataAugmentation(flip_horizontal=True, flip_vertical=True))
    tool.wait_for_training_completion()
    return tool


def learning_metrics(tool):
    return [{k: v for k, v in tool.training_metrics(i).items() if k not in TIMINGS}
            for i in range(1, tool.num_trained_iterations + 1)]


def reference_mean_iou(pred_images, label_images, num_classes=4):
    cm = sum(confusion(p, g, num_classes) for p, g in zip(pred_images, label_images))
    iou = iou_per_class(cm)
    present = cm.sum(axis=0) > 0          # classes with ground-truth pixels
    return float(np.mean(iou[present])), cm


def test_dataset_of_label_images_and_its_split(tmp_path):
    images, labels = scenes(10, size=32)
    ds = Dataset.from_images(images, labels, class_names=NAMES)
    assert ds.task == "segmentation" and ds.labels is None and len(ds) == 10
    assert ds.class_ids == [0, 1, 2, 3]
    np.testing.assert_array_equal(ds.label_image(3), labels[3])
    # class ids default to the values found when no names are given
    assert Dataset.from_images(images, labels).class_ids == sorted(set(np.concatenate(
        [lab.ravel() for lab in labels]).tolist()))
    changed = [lab.copy() for lab in labels]
    changed[0][0, 0] = 1 - changed[0][0, 0] % 2
    assert Dataset.from_images(images, changed, class_names=NAMES).fingerprint != ds.fingerprint
    split = DatasetSplit(ds, train=0.6, validation=0.2, test=0.2, seed=4)
    parts = [set(split.train.tolist()), set(split.validation.tolist()), set(split.test.tolist())]
    assert [len(p) for p in parts] == [6, 2, 2] and set().union(*parts) == set(range(10))
    assert DatasetSplit(ds, train=0.6, validation=0.2, test=0.2, seed=4).fingerprint == split.fingerprint

    root = demo.write_demo_segmentation_dataset(str(tmp_path / "seg"), num_images=6, size=32)
    folders = Dataset.from_segmentation_folders(f"{root}/images", f"{root}/labels", NAMES)
    assert folders.task == "segmentation" and len(folders) == 6
    assert folders.label_image(0).shape == folders.image(0).shape[:2]
    import opendl as ha
    dldataset = ha.read_dl_dataset_segmentation(f"{root}/images", f"{root}/labels", NAMES, [0, 1, 2, 3], [], [], [])
    assert Dataset.from_dldataset(dldataset).fingerprint == folders.fingerprint


def test_augmentation_moves_label_images_with_their_images():
    # The image encodes the label (10 grey values per class), so wherever the bilinearly sampled image still
    # holds one class's exact value, the nearest-neighbour label must name that class.
    rng = np.random.default_rng(1)
    label = np.kron(rng.integers(0, 4, (6, 6)), np.ones((8, 8), np.int64)).astype(np.uint8)
    image = label.astype(np.float32) * 10.0 + 5.0
    aug = DataAugmentation(flip_horizontal=True, flip_vertical=True, rotation=40, scale=(0.8, 1.3), shift=0.1,
                           shear=10)
    for k in range(6):
        gen = np.random.default_rng(k)
        out, lab = aug.apply(image, gen, 0.0, 60.0, label)
        assert lab.dtype == label.dtype and lab.shape == label.shape
        assert set(np.unique(lab).tolist()) <= set(np.unique(label).tolist())
        exact = np.abs((out - 5.0) / 10.0 - np.rint((out - 5.0) / 10.0)) < 1e-4
        agree = (np.rint((out - 5.0) / 10.0) == lab)[exact]
        assert agree.mean() > 0.99, agree.mean()
        # same generator state: same image as without a label image
        np.testing.assert_array_equal(aug.apply(image, np.random.default_rng(k), 0.0, 60.0), out)
    # intensity changes leave the label image alone
    noisy = DataAugmentation(brightness=0.2, gaussian_noise=0.1)
    _, lab = noisy.apply(image, np.random.default_rng(0), 0.0, 60.0, label)
    np.testing.assert_array_equal(lab, label)
    with pytest.raises(HOperatorError) as e:
        aug.apply(image, np.random.default_rng(0), 0.0, 60.0, label[:40])
    assert e.value.error_code == 1302


def test_early_stopping_follows_the_validation_mean_iou(trained):
    tool = trained
    m = learning_metrics(tool)
    ious = [x["mean_iou"] for x in m]
    best = tool.best_iteration
    assert ious[best - 1] == max(ious)
    assert len(m) == 14 or len(m) == best + 3
    for x in m:
        assert x["validation_error"] == pytest.approx(1.0 - x["mean_iou"])
        assert len(x["class_iou"]) == 4 and 0.0 <= x["pixel_accuracy"] <= 1.0
    # it learned: all-background gives a mean IoU of about 0.2 here (background IoU ~0.75, the others 0)
    assert max(ious) > 0.45, ious
    assert m[-1]["training_loss"] < m[0]["training_loss"]


def test_validation_measures_match_a_numpy_reference(trained, data):
    ds, split = data
    tool = trained
    images = [ds.image(i) for i in split.validation]
    labels = [ds.label_image(i) for i in split.validation]
    results = tool.apply(images)
    pred = [r["segmentation_image"] for r in results]
    miou, cm = reference_mean_iou(pred, labels)
    best = tool.training_metrics(tool.best_iteration)
    assert best["mean_iou"] == pytest.approx(miou, abs=1e-12)
    assert best["pixel_accuracy"] == pytest.approx(np.trace(cm) / cm.sum(), abs=1e-12)
    for r in results:
        assert r["segmentation_image"].dtype == np.uint8 and r["segmentation_image"].shape == (48, 48)
        assert np.all((r["segmentation_confidence"] >= 0.25) & (r["segmentation_confidence"] <= 1.0))
    # held-out test images
    test_pred = [r["segmentation_image"] for r in tool.apply([ds.image(i) for i in split.test])]
    test_miou, _ = reference_mean_iou(test_pred, [ds.label_image(i) for i in split.test])
    assert test_miou > 0.4, test_miou


def test_results_have_the_size_of_the_given_image(trained, data):
    ds, split = data
    image = ds.image(int(split.test[0]))
    big = np.kron(image, np.ones((2, 2), np.uint8))            # 96 x 96: the same scene, twice the size
    r_small, r_big = trained.apply([image, big])
    assert r_big["segmentation_image"].shape == (96, 96)
    # the model sees (almost) the same 48 x 48 input; the upscaled segmentation agrees with the small one
    up = np.kron(r_small["segmentation_image"], np.ones((2, 2), np.uint8))
    assert np.mean(up == r_big["segmentation_image"]) > 0.9


def test_inverse_frequency_class_weights_from_the_training_pixels(trained, data):
    ds, split = data
    counts = np.zeros(4)
    for i in split.train:
        counts += np.bincount(ds.label_image(int(i)).ravel(), minlength=4)
    expected = np.minimum(1000.0, counts.sum() / (4 * counts))
    np.testing.assert_allclose(trained.class_weights, expected, rtol=1e-12)
    fixed = Segmenter(class_weights=[1, 2, 3, 4])
    fixed.batch_size = 4
    fixed.train(ds, split, iterations=1)
    fixed.wait_for_training_completion()
    assert fixed.class_weights == [1.0, 2.0, 3.0, 4.0]


def test_two_plus_two_iterations_after_save_and_load_equal_four(tmp_path):
    images, labels = scenes(20, size=32, seed=5)
    ds = Dataset.from_images(images, labels, class_names=NAMES)
    split = DatasetSplit(ds, train=0.7, validation=0.3, seed=1)
    aug = DataAugmentation(flip_horizontal=True, rotation=15)

    def tool():
        t = Segmenter()
        t.batch_size = 4
        t.enable_deterministic_training = True
        t.deterministic_training_random_seed = 9
        return t

    whole = tool()
    whole.train(ds, split, aug, iterations=4)
    whole.wait_for_training_completion()
    first = tool()
    first.train(ds, split, aug, iterations=2)
    first.wait_for_training_completion()
    first.save(tmp_path / "seg.odt")
    again = Segmenter.load(tmp_path / "seg.odt")
    assert again.ignore_class_ids == [] and again.num_trained_iterations == 2
    again.train(ds, split, aug, iterations=2)
    again.wait_for_training_completion()
    assert learning_metrics(again) == learning_metrics(whole)
    assert again._train_bytes == whole._train_bytes
    for a, b in zip(again.apply(images[:3]), whole.apply(images[:3])):
        np.testing.assert_array_equal(a["segmentation_image"], b["segmentation_image"])
    with pytest.raises(HOperatorError) as e:
        Classifier.load(tmp_path / "seg.odt")
    assert e.value.error_code == 5238


def test_ignored_pixels_take_no_part(tmp_path):
    images, labels = scenes(16, size=32, seed=7)
    marked = []
    for lab in labels:
        lab = lab.copy()
        lab[:, :4] = 255                                       # an uncertain border strip
        marked.append(lab)
    ds = Dataset.from_images(images, marked, class_names=NAMES, class_ids=[0, 1, 2, 3])
    split = DatasetSplit(ds, train=0.5, validation=0.5, seed=1)
    tool = Segmenter(ignore_class_ids=[255])
    tool.batch_size = 4
    tool.enable_deterministic_training = True
    tool.train(ds, split, iterations=2)
    tool.wait_for_training_completion()
    pred = [r["segmentation_image"] for r in tool.apply([ds.image(i) for i in split.validation])]
    gt = [ds.label_image(i) for i in split.validation]
    miou, _ = reference_mean_iou([p[:, 4:] for p in pred], [g[:, 4:] for g in gt])
    assert tool.training_metrics(tool.best_iteration)["mean_iou"] == pytest.approx(miou, abs=1e-12)
    assert 255 not in set(np.concatenate([p.ravel() for p in pred]).tolist())


def test_automatic_batch_size_is_measured_for_segmentation():
    images, labels = scenes(32, size=32, seed=3)
    ds = Dataset.from_images(images, labels, class_names=NAMES)
    split = DatasetSplit(ds, train=1.0, seed=1)
    tool = Segmenter()
    tool.train(ds, split, iterations=1)
    tool.wait_for_training_completion()
    assert tool.is_batch_size_optimized and tool.batch_size in (2, 4)
    assert tool.training_metrics(1)["batch_size"] == tool.batch_size


def test_bad_input_gets_halcon_errors(data):
    ds, split = data
    images, labels = scenes(8, size=32, seed=11)
    with pytest.raises(HOperatorError) as e:
        Dataset.from_images(images, [lab[:30] for lab in labels])
    assert e.value.error_code == 1302 and "labels[0]" in str(e.value)
    with pytest.raises(HOperatorError) as e:
        Segmenter(ignore_class_ids=[-1])
    assert e.value.error_code == 1308
    with pytest.raises(HOperatorError) as e:
        Segmenter(class_weights="balanced")
    assert e.value.error_code == 1309

    overlapping = Segmenter(ignore_class_ids=[2])
    with pytest.raises(HOperatorError) as e:
        overlapping.train(ds, split, iterations=1)
    assert e.value.error_code == 1308 and not overlapping.is_training and overlapping.num_trained_iterations == 0
    assert overlapping.image_size is None and overlapping.class_names is None    # the tool is as it was
    with pytest.raises(HOperatorError) as e:
        Segmenter(class_weights=[1, 2]).train(ds, split, iterations=1)
    assert e.value.error_code == 1309 and "4 classes" in str(e.value)

    classification = Dataset.from_images(images, [0, 1] * 4)
    with pytest.raises(HOperatorError) as e:
        Segmenter().train(classification, DatasetSplit(classification, train=1.0), iterations=1)
    assert e.value.error_code == 1302 and "segmentation dataset" in str(e.value)
    with pytest.raises(HOperatorError) as e:
        Classifier().train(ds, split, iterations=1)
    assert e.value.error_code == 1302 and "classification dataset" in str(e.value)

    # a label value that is no class id: the training thread stops with the error, named on the next wait
    wrong = [lab.copy() for lab in labels]
    wrong[5][3, 3] = 7
    bad = Dataset.from_images(images, wrong, class_ids=[0, 1, 2, 3])
    tool = Segmenter()
    tool.batch_size = 2
    tool.train(bad, DatasetSplit(bad, train=1.0), iterations=1)
    with pytest.raises(HOperatorError) as e:
        tool.wait_for_training_completion()
    assert e.value.error_code == 7791 and "label image 5" in str(e.value) and "[7]" in str(e.value)
    assert tool.num_trained_iterations == 0
