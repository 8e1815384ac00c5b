"""determine_dl_model_detection_param: levels, aspect ratios and subscales from a dataset's boxes (scaled to
the target size), checked against an independent brute-force coverage count; rectangle2 angles; the result
creates a detector as it is; bad input."""

import json
import math

import numpy as np
import pytest

import opendl as ha
from detection_helpers import oriented_scene
from procedure_helpers import code_of, py


def coco_dataset(tmp_path, boxes_per_image, size=(128, 128)):
    """A COCO dataset of blank images of `size` (h, w) with the given (row1, col1, row2, col2, class) boxes."""
    (tmp_path / "images").mkdir(exist_ok=True)
    images, anns = [], []
    for i, boxes in enumerate(boxes_per_image):
        ha.write_image(np.zeros(size, np.uint8), "png", 0, str(tmp_path / "images" / f"{i}"))
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": size[1], "height": size[0]})
        for r1, c1, r2, c2, k in boxes:
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": k, "iscrowd": 0,
                         "bbox": [c1 + 0.5, r1 + 0.5, c2 - c1, r2 - r1]})
    (tmp_path / "coco.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                    "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}))
    return ha.read_dl_dataset_from_coco(str(tmp_path / "coco.json"), str(tmp_path / "images"), [])


def centred_coverage(hw, p, min_iou=0.6):
    """Brute force: the share of (h, w) boxes with a centred anchor of IoU >= min_iou."""
    hit = 0
    for h, w in hw:
        best = 0.0
        for lv in range(p["min_level"][0], p["max_level"][0] + 1):
            for k in range(p["anchor_num_subscales"][0]):
                s = 4 * 2 ** lv * 2 ** (k / p["anchor_num_subscales"][0])
                for q in p["anchor_aspect_ratios"]:
                    ah, aw = s * math.sqrt(q), s / math.sqrt(q)
                    inter = min(h, ah) * min(w, aw)
                    best = max(best, inter / (h * w + ah * aw - inter))
        hit += best >= min_iou
    return hit / len(hw)


def test_levels_ratios_and_subscales_cover_the_boxes(tmp_path):
    rng = np.random.default_rng(0)
    per_image, hw = [], []
    for _ in range(12):
        boxes = []
        for _ in range(4):
            # square boxes and boxes 3 times as wide as high, 32..64 px in the 128 px images
            s = rng.uniform(32, 64)
            h, w = (s, s) if rng.random() < 0.5 else (s / math.sqrt(3), s * math.sqrt(3))
            r, c = rng.uniform(h / 2, 128 - h / 2), rng.uniform(w / 2, 128 - w / 2)
            boxes.append((r - h / 2, c - w / 2, r + h / 2, c + w / 2, 1))
            hw.append((h / 2, w / 2))            # in the 64 x 64 target
        per_image.append(boxes)
    ds = coco_dataset(tmp_path, per_image)
    p = py(ha.determine_dl_model_detection_param(ds, 64, 64, []))
    print(p)
    assert p["image_width"] == [64] and p["image_height"] == [64] and p["instance_type"] == ["rectangle1"]
    # box sizes sqrt(h w) 16..32 in the target: base sizes 16 (level 2) .. 32 (level 3)
    assert p["min_level"] == [2] and p["max_level"] == [3]
    ratios = sorted(p["anchor_aspect_ratios"])
    assert any(abs(math.log(r)) < 0.2 for r in ratios) and any(abs(math.log(r * 3)) < 0.25 for r in ratios)
    assert centred_coverage(hw, p) >= 0.99
    # nothing smaller covers: one subscale less, or a ratio set of one, misses boxes
    fewer = dict(p, anchor_num_subscales=[p["anchor_num_subscales"][0] - 1]) if p["anchor_num_subscales"][0] > 1 \
        else None
    if fewer:
        assert centred_coverage(hw, fewer) < 0.99
    assert centred_coverage(hw, dict(p, anchor_aspect_ratios=[1.0])) < 0.99
    # the result goes to create_dl_model_detection as it is
    m = ha.create_dl_model_detection("pretrained_dl_classifier_compact.hdl", 2, ha.from_python_dict(p))
    assert ha.get_dl_model_param(m, "anchor_aspect_ratios") == p["anchor_aspect_ratios"]
    # 'split' restricts the boxes analysed
    ha.split_dl_dataset(ds, 50, 50, [])
    q = py(ha.determine_dl_model_detection_param(ds, 64, 64, {"split": "train"}))
    assert q["min_level"][0] >= 1


def test_rectangle2_angles(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "images").mkdir()
    samples = []
    for i in range(20):
        img, b = oriented_scene(rng)
        # bars at about 0 and 90 degrees only
        b["bbox_phi"] = [float(rng.choice([0.0, np.pi / 2]) + rng.normal(0, 0.05)) for _ in b["bbox_phi"]]
        ha.write_image(img, "png", 0, str(tmp_path / "images" / f"{i}"))
        samples.append(dict({"image_id": i, "image_file_name": f"{i}.png"}, **b))
    ds = ha.from_python_dict({"image_dir": str(tmp_path / "images"), "class_ids": [1, 2], "class_names": ["a", "b"],
                              "samples": samples})
    p = py(ha.determine_dl_model_detection_param(ds, 64, 64, []))
    assert p["instance_type"] == ["rectangle2"] and p["ignore_direction"] == ["false"]
    angles = sorted(np.mod(p["anchor_angles"], np.pi))
    assert len(angles) == 2 and min(abs(angles[0]), abs(angles[0] - np.pi)) < 0.1 and abs(angles[1] - np.pi / 2) < 0.1
    m = ha.create_dl_model_detection("pretrained_dl_classifier_compact.hdl", 2, ha.from_python_dict(p))
    assert ha.get_dl_model_param(m, "instance_type") == ["rectangle2"]


def test_bad_input(tmp_path):
    ds = coco_dataset(tmp_path, [[(2, 2, 20, 30, 1)]])
    op = ha.determine_dl_model_detection_param
    assert code_of(op, ds, 4, 64, []) == 1302  # an integer of a wrong value
    assert code_of(op, ds, 64, "x", []) == 1203
    assert code_of(op, ds, 64, 64, {"colour": 1}) == 1304
    assert code_of(op, ds, 64, 64, {"split": "test"}) == 1304
    assert code_of(op, ds, 64, 64, {"coverage": 2.0}) == 1304
    cls = ha.from_python_dict({"image_dir": "", "class_ids": [0], "class_names": ["a"],
                               "samples": [{"image_id": 0, "image_file_name": "x.png", "image_label_id": 0}]})
    with pytest.raises(ha.HOperatorError) as e:
        op(cls, 64, 64, [])
    assert "bbox_label_id" in str(e.value)


def test_detection_parameters_an_audit_found_ignored_or_unchecked():
    B = "pretrained_dl_classifier_compact.hdl"
    base = {"image_dimensions": [64, 64, 3], "min_level": 2, "max_level": 3}
    m = ha.create_dl_model_detection(B, 2, base)
    # num_classes follows class_ids; setting it was silently ignored
    for value in (5, -1, "abc"):
        assert code_of(ha.set_dl_model_param, m, "num_classes", value) == 1302
    assert ha.get_dl_model_param(m, "num_classes") == [2]
    # a backbone key that differs from the backbone argument was ignored
    assert code_of(ha.create_dl_model_detection, B, 2, dict(base, backbone="pretrained_dl_classifier_resnet50.hdl")) \
        == 1303
    assert code_of(ha.create_dl_model_detection, B, 2, dict(base, backbone=12345)) == 1303
    ha.create_dl_model_detection(B, 2, dict(base, backbone=B))
    # NaN focal weights passed the range check; 200 aspect ratios failed in an internal layer operator
    for bad in ([math.nan, 0.5], [0.5, math.nan]):
        with pytest.raises(ha.HOperatorError) as e:
            ha.create_dl_model_detection(B, 2, dict(base, class_weights=bad))
        assert (e.value.error_code, e.value.operator_name) == (1303, "create_dl_model_detection")
        assert "nan" in str(e.value) and "0.5, nan, 0.5" not in str(e.value)
        assert code_of(ha.set_dl_model_param, m, "class_weights", bad) == 1303
    with pytest.raises(ha.HOperatorError) as e:
        ha.create_dl_model_detection(B, 2, dict(base, anchor_aspect_ratios=[1.0] * 200))
    assert (e.value.error_code, e.value.operator_name) == (1403, "create_dl_model_detection")
    assert "at most 64" in str(e.value)


def test_bad_box_values_name_the_sample_and_key(tmp_path):
    """Non-finite, non-numeric or missing box values escaped as OverflowError / ValueError from numpy."""
    ds = coco_dataset(tmp_path, [[(2, 2, 20, 30, 1)], [(4, 4, 12, 40, 2), (1, 1, 9, 9, 1)]])
    samples = ha.get_dict_tuple(ds, "samples")
    for value in ([math.inf, 9.0], [math.nan, 9.0], ["x", 9.0], [], [9.0], [10**400, 9.0]):
        # 10**400 (beyond a float) no operator stores: set directly, as a plain-dict dataset may hold it
        samples[1].core("test")["bbox_row2"] = value
        with pytest.raises(ha.HOperatorError) as e:
            ha.determine_dl_model_detection_param(ds, 64, 64, [])
        assert (e.value.error_code, e.value.operator_name) == (1301, "determine_dl_model_detection_param")
        assert "sample 1" in str(e.value) and "'bbox_row2'" in str(e.value), value
    # finite values whose scaled size overflows, and boxes without area, name the sample too
    ha.set_dict_tuple(samples[1], "bbox_row2", [1e308, 9.0])
    ha.set_dict_tuple(samples[1], "bbox_row1", [-1e308, 1.0])
    with pytest.raises(ha.HOperatorError) as e:
        ha.determine_dl_model_detection_param(ds, 64, 64, [])
    assert e.value.error_code == 1301 and "sample 1" in str(e.value) and "out of range" in str(e.value)
    ha.set_dict_tuple(samples[1], "bbox_row2", [4.0, 9.0])
    ha.set_dict_tuple(samples[1], "bbox_row1", [4.0, 1.0])
    with pytest.raises(ha.HOperatorError) as e:
        ha.determine_dl_model_detection_param(ds, 64, 64, [])
    assert e.value.error_code == 1301 and "sample 1" in str(e.value) and "no area" in str(e.value)


def test_target_size_and_levels_stay_within_create_dl_model_detection_limits(tmp_path):
    """image_width_target 2^40 gave anchor_aspect_ratios [0.0]; large targets gave levels beyond 8, which
    create_dl_model_detection refuses."""
    ds = coco_dataset(tmp_path, [[(2, 2, 20, 30, 1)]])
    op = ha.determine_dl_model_detection_param
    assert code_of(op, ds, 2**40, 64, []) == 1302
    assert code_of(op, ds, 64, 2**31, []) == 1303
    p = py(op(ds, 2**31 - 1, 64, []))
    assert all(r > 0 for r in p["anchor_aspect_ratios"]), p  # 4 significant digits, not 4 decimals
    (tmp_path / "big").mkdir()
    big = coco_dataset(tmp_path / "big", [[(0, 0, 120, 120, 1)]])
    p = py(op(big, 4096, 4096, []))  # boxes of about 3840 pixels: base size 4 * 2^10
    assert p["min_level"] == [8] and p["max_level"] == [8]
