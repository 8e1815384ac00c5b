"""opendl.tools.Locator: box datasets (images with box dicts, COCO files, HALCON DLDatasets), augmentation that
moves boxes with their images, mean-AP validation and early stopping, results in the coordinates of the image
as given, saving and loading, and bad input."""

import json

import numpy as np
import pytest

from opendl import demo
from opendl.errors import HOperatorError
from opendl.tools import DataAugmentation, Dataset, DatasetSplit, Locator
from detection_helpers import KEYS, KEYS2, scene

NAMES = ["ring", "plate", "bracket"]
TIMINGS = ("seconds", "images_per_second")


def scenes(n, seed=0):
    rng = np.random.default_rng(seed)
    return [list(x) for x in zip(*[scene(rng) for _ in range(n)])]


@pytest.fixture(scope="module")
def trained():
    """A low-capacity Locator trained with early stopping (patience 4, at most 18 iterations) on 280 scenes."""
    images, boxes = scenes(280)
    ds = Dataset.from_images(images, boxes, class_names=NAMES)
    split = DatasetSplit(ds, train=0.7, validation=0.2, test=0.1, seed=3)
    tool = Locator(capacity="low", early_stopping_patience=4, max_iterations=18)
    tool.batch_size = 8
    tool.enable_deterministic_training = True
    tool.train(ds, split, DataAugmentation(flip_horizontal=True, flip_vertical=True))
    tool.wait_for_training_completion()
    return tool, ds, split


def test_locator_learns_and_ends_on_its_best_mean_ap(trained):
    tool, ds, split = trained
    m = [tool.training_metrics(i) for i in range(1, tool.num_trained_iterations + 1)]
    aps = [x["mean_ap"] for x in m]
    print("Locator validation mean_ap per iteration", [round(a, 3) for a in aps], "ap_50", m[-1]["ap_50"])
    assert all(x["validation_error"] == pytest.approx(1 - x["mean_ap"]) for x in m)
    assert tool.best_iteration == int(np.argmax(aps)) + 1
    assert max(aps) >= 0.35 and m[tool.best_iteration - 1]["ap_50"] >= 0.7
    assert len(m[0]["class_ap"]) == 3 and tool.instance_type == "rectangle1"
    # results: boxes inside the image, classes and names consistent
    res = tool.apply([ds.image(i) for i in split.test])
    assert len(res) == len(split.test)
    for r in res:
        assert [NAMES[c - 1] for c in r["bbox_class_id"]] == r["bbox_class_name"]
        assert all(0.5 <= c <= 1 for c in r["bbox_confidence"])
        assert all(-0.5 <= v <= 63.5 for k in KEYS for v in r[k])


def test_results_are_in_the_coordinates_of_the_image_as_given(trained):
    tool, ds, split = trained
    img = ds.image(int(split.test[0]))
    small = tool.apply(img)[0]
    big = tool.apply(np.repeat(np.repeat(img, 2, axis=0), 2, axis=1))[0]
    assert small["bbox_class_id"] and big["bbox_class_id"] == small["bbox_class_id"]
    # pixel centres p map to 2 p + 0.5 in the twice larger image; its bilinear zoom back to 64 x 64 samples
    # between two equal pixels, so the model sees the original image and the boxes agree exactly
    for k in KEYS:
        np.testing.assert_allclose(big[k], 2 * np.asarray(small[k]) + 0.5, atol=1e-4)


def test_save_load_and_continue(trained, tmp_path):
    tool, ds, split = trained
    tool.save(tmp_path / "locator")
    again = Locator.load(tmp_path / "locator")
    images = [ds.image(i) for i in split.test[:3]]
    for a, b in zip(tool.apply(images), again.apply(images)):
        assert a == b
    again.train(ds, split, iterations=1)
    again.wait_for_training_completion()
    assert again.num_trained_iterations == tool.num_trained_iterations + 1
    assert "mean_ap" in again.training_metrics(again.num_trained_iterations)


def test_augmentation_moves_boxes_with_their_image():
    img = np.zeros((40, 60), np.float32)
    img[5:15, 10:30] = 100.0         # pixels rows 5..14, cols 10..29: rectangle1 (4.5, 9.5, 14.5, 29.5)
    boxes = {"bbox_label_id": [1], "bbox_row1": [4.5], "bbox_col1": [9.5], "bbox_row2": [14.5], "bbox_col2": [29.5]}
    for aug in (DataAugmentation(flip_horizontal=True, flip_vertical=True), DataAugmentation(rotation=30),
                DataAugmentation(scale=(0.7, 1.2), shift=0.1)):
        for seed in range(4):
            x, b = aug.apply(img, np.random.default_rng(seed), 0.0, 255.0, boxes=boxes)
            rr, cc = np.nonzero(x > 50)
            # the moved box encloses the moved bright pixels (to the half pixel of their extent and a pixel of
            # bilinear blur)
            assert b["bbox_label_id"] == [1]
            assert b["bbox_row1"][0] <= rr.min() - 0.5 + 1.0 and b["bbox_row2"][0] >= rr.max() + 0.5 - 1.0
            assert b["bbox_col1"][0] <= cc.min() - 0.5 + 1.0 and b["bbox_col2"][0] >= cc.max() + 0.5 - 1.0
            if aug.rotation == 0:   # no rotation: the box is tight
                np.testing.assert_allclose([b["bbox_row1"][0], b["bbox_col1"][0], b["bbox_row2"][0],
                                            b["bbox_col2"][0]], [rr.min() - 0.5, cc.min() - 0.5, rr.max() + 0.5,
                                                                 cc.max() + 0.5], atol=1.0)
    # a horizontal flip turns a heading phi into pi - phi; lengths stay
    r2 = {"bbox_label_id": [2], "bbox_row": [20.0], "bbox_col": [20.0], "bbox_phi": [0.3], "bbox_length1": [8.0],
          "bbox_length2": [3.0]}
    flip = DataAugmentation(flip_horizontal=True)
    for seed in range(6):
        gen = np.random.default_rng(seed)
        flipped = gen.random(16)[0] < 0.5           # the draw apply makes first
        _, b = flip.apply(img, np.random.default_rng(seed), 0.0, 255.0, boxes=r2)
        assert b["bbox_phi"][0] == pytest.approx(np.pi - 0.3 if flipped else 0.3)
        assert b["bbox_col"][0] == pytest.approx(59 - 20.0 if flipped else 20.0)
        assert (b["bbox_length1"][0], b["bbox_length2"][0]) == pytest.approx((8.0, 3.0))
    # a box shifted out of the image is dropped
    out = DataAugmentation(shift=0.5)
    kept = [len(out.apply(img, np.random.default_rng(s), 0.0, 255.0, boxes=boxes)[1]["bbox_label_id"])
            for s in range(20)]
    assert 0 in kept and 1 in kept


def test_box_datasets_from_coco_and_dldataset(tmp_path):
    (tmp_path / "images").mkdir()
    demo.write_demo_detection_dataset(str(tmp_path), num_images=6, seed=1)
    ds = Dataset.from_coco(tmp_path / "annotations.json", tmp_path / "images")
    assert ds.task == "detection" and ds.instance_type == "rectangle1" and len(ds) == 6
    assert ds.class_ids == [1, 2, 3] and ds.class_names == NAMES
    coco = json.loads((tmp_path / "annotations.json").read_text())
    first = [a for a in coco["annotations"] if a["image_id"] == 1]
    b = ds.boxes(0)
    assert b["bbox_label_id"] == [a["category_id"] for a in first]
    assert b["bbox_col1"] == [a["bbox"][0] - 0.5 for a in first]
    assert "boxes" in repr(ds)
    split = DatasetSplit(ds, train=0.5, validation=0.5, seed=1)
    assert split.train.size == 3 and split.validation.size == 3
    # rectangle2 boxes from images
    img = np.zeros((32, 32), np.uint8)
    r2 = {"bbox_label_id": [4], "bbox_row": [10.0], "bbox_col": [12.0], "bbox_phi": [0.5], "bbox_length1": [6.0],
          "bbox_length2": [2.0]}
    d2 = Dataset.from_images([img, img], [r2, {k: [] for k in r2}])
    assert d2.instance_type == "rectangle2" and d2.class_ids == [4] and d2.boxes(1)["bbox_row"] == []
    assert set(d2.boxes(0)) == {"bbox_label_id"} | set(KEYS2)


def test_bad_box_input():
    img = np.zeros((32, 32), np.uint8)
    good = {"bbox_label_id": [1], "bbox_row1": [1.0], "bbox_col1": [1.0], "bbox_row2": [9.0], "bbox_col2": [9.0]}
    with pytest.raises(HOperatorError) as e:
        Dataset.from_images([img], [dict(good, bbox_row2=[9.0, 4.0])])
    assert "'bbox_row2' has 2 values" in str(e.value)
    with pytest.raises(HOperatorError) as e:
        Dataset.from_images([img], [good], class_names=["a"], class_ids=[2])
    assert "not among the class_ids" in str(e.value)
    with pytest.raises(HOperatorError) as e:
        Dataset.from_images([img], [{k: v for k, v in good.items() if k != "bbox_col2"}])
    assert "bbox_col2" in str(e.value)
    with pytest.raises(HOperatorError) as e:
        Locator(detection_param={"image_width": 64})
    assert e.value.error_code == 1309
    with pytest.raises(HOperatorError) as e:
        Locator(capacity="huge")
    assert e.value.error_code == 1308
    # boxes of no area or with coordinates that are no finite numbers are refused when the dataset is built
    for bad, text in (({"bbox_row2": [1.0]}, "no area"), ({"bbox_col1": [float("nan")]}, "finite numbers"),
                      ({"bbox_label_id": [1.5]}, "integers")):
        with pytest.raises(HOperatorError, match=text) as e:
            Dataset.from_images([img] * 2, [good, dict(good, **bad)])
        assert e.value.error_code == 1302 and "labels[1]" in str(e.value)
    with pytest.raises(HOperatorError, match="distinct") as e:
        Dataset.from_images([img], [good], class_names=["a", "b"], class_ids=[1, 1])
    # detection_param is checked when the model is built, before the tool's settings change
    ds = Dataset.from_images([img] * 4, [good] * 4)
    tool = Locator(capacity="low", detection_param={"min_confidence": 5})
    with pytest.raises(HOperatorError, match="detection_param.*min_confidence") as e:
        tool.train(ds, DatasetSplit(ds, train=0.5, validation=0.5), iterations=1)
    assert e.value.error_code == 1303 and e.value.operator_name == "Locator.train"
    assert (tool.image_size, tool.instance_type, tool.class_names) == (None, None, None)


def test_deterministic_training_repeats_exactly():
    images, boxes = scenes(32, seed=4)
    ds = Dataset.from_images(images, boxes, class_names=NAMES)
    split = DatasetSplit(ds, train=0.75, validation=0.25, seed=1)
    runs = []
    for _ in range(2):
        tool = Locator(capacity="low")
        tool.batch_size = 4
        tool.enable_deterministic_training = True
        tool.train(ds, split, DataAugmentation(rotation=10, shift=0.1), iterations=2)
        tool.wait_for_training_completion()
        runs.append(([{k: v for k, v in tool.training_metrics(i).items() if k not in TIMINGS} for i in (1, 2)],
                     tool.apply(images[:4])))
    assert runs[0] == runs[1]
