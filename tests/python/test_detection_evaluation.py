"""Detection in the workflow procedures: evaluate_dl_model's measures (101-point AP per class and IoU
threshold, area ranges, max_num_detections, SoAP, detailed counts) against hand-computed values, and HALCON's
detection workflow end to end (COCO file -> read_dl_dataset_from_coco -> split_dl_dataset ->
preprocess_dl_dataset -> train_dl_model -> evaluate_dl_model)."""

import json

import numpy as np
import pytest

import opendl as ha
from opendl import _detection_eval as de
from detection_helpers import scene
from procedure_helpers import code_of, py

A, B = [0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]
C, D = [40.0, 0.0, 50.0, 10.0], [0.0, 40.0, 20.0, 60.0]     # D: area 400


def one(res, t="05", num="all", area="all"):
    return res[f"max_num_detections_{num}"][f"area_{area}"], t


def test_average_precision_at_101_recall_points_with_and_without_interpolation():
    # class 1: 4 boxes; detections by confidence: hit, miss, hit, hit -> recall .25 .25 .5 .75,
    # precision 1 .5 .667 .75. 101 points r = k / 100: k <= 25 -> 1; 26..50 -> .667 raw, .75 interpolated
    # (the best precision at any higher recall); 51..75 -> .75; 76..100 -> 0 (recall .75 is the most reached)
    img = de.Image([1, 1, 1, 1], [A, B, C, D], [1, 1, 1, 1], [A, [70, 70, 80, 80], B, C], [0.9, 0.8, 0.7, 0.6],
                   "rectangle1")
    for interp, expect in ((False, (26 + 25 * 2 / 3 + 25 * 0.75) / 101), (True, (26 + 50 * 0.75) / 101)):
        res = de.evaluate([img], [1, 2], [0.5], [-1], [("all", 0, 2e8)], interp, False)
        r = res["max_num_detections_all"]["area_all"]
        assert r["ap_iou_05"]["class_1"] == pytest.approx(expect, abs=1e-12)
        assert r["ap_iou_05"]["class_2"] == -1.0          # no ground truth: -1, left out of the means
        assert r["ap_iou_05"]["mean_class_ap"] == pytest.approx(expect)
        assert r["mean_ap"] == pytest.approx(expect)


def test_thresholds_area_ranges_and_max_num_detections():
    shifted = [1.0, 0.0, 11.0, 10.0]                        # IoU with A: 90 / 110 = 0.818
    img = de.Image([1, 1], [A, D], [1, 1, 2], [shifted, D, C], [0.9, 0.8, 0.95], "rectangle1")
    res = de.evaluate([img], [1, 2], [0.5, 0.85], [-1, 1], [("all", 0, 2e8), ("small", 0, 200)], True, False)
    r = res["max_num_detections_all"]["area_all"]
    assert r["ap_iou_05"]["class_1"] == pytest.approx(1.0)
    # at 0.85 the shifted box misses: recall 0.5 after one false positive at precision 0 -> then 1/2
    assert r["ap_iou_085"]["class_1"] == pytest.approx(51 * 0.5 / 101)
    assert r["mean_iou_ap"]["class_1"] == pytest.approx((1.0 + 51 * 0.5 / 101) / 2)
    assert r["mean_ap"] == pytest.approx((1.0 + 51 * 0.5 / 101) / 2)
    # 'small' (area <= 200): D (400) is ignored, and so is the detection matched to it
    small = res["max_num_detections_all"]["area_small"]
    assert small["ap_iou_05"]["class_1"] == pytest.approx(1.0)
    assert small["ap_iou_085"]["class_1"] == pytest.approx(0.0)
    # one detection per image: the most confident is the class-2 false positive, so class 1 finds nothing
    assert res["max_num_detections_1"]["area_all"]["ap_iou_05"]["class_1"] == 0.0


def test_soap_and_detailed_counts():
    gt = [[10.0, 10.0, 0.0, 6.0, 2.0], [40.0, 40.0, 1.0, 6.0, 2.0]]
    det = [[10.0, 10.0, np.pi, 6.0, 2.0], [40.0, 40.0, 1.1 - 2 * np.pi, 6.0, 2.0]]
    img = de.Image([1, 1], gt, [1, 1], det, [0.9, 0.8], "rectangle2")
    r = de.evaluate([img], [1], [0.5], [-1], [("all", 0, 2e8)], True, True)["max_num_detections_all"]["area_all"]
    # the same rectangle turned by pi (IoU 1), and one turned by 0.1 (IoU > 0.5; the 2 pi is no error):
    # SoAP = 1 - mean(pi, 0.1) / pi
    assert r["ap_iou_05"]["class_1"] == pytest.approx(1.0)
    assert r["soap_tp_iou_05"]["class_1"] == pytest.approx(1 - (np.pi + 0.1) / 2 / np.pi)
    assert r["mean_soap_tp"] == pytest.approx(1 - (np.pi + 0.1) / 2 / np.pi)

    near = [3.0, 0.0, 13.0, 10.0]                          # IoU with A 70 / 130 = 0.54
    img = de.Image([1, 2], [A, B], [1, 1, 1, 2, 2], [A, A, B, near, [90, 90, 99, 99]], [0.9, 0.8, 0.7, 0.6, 0.5],
                   "rectangle1")
    d = de.detailed([img], [1, 2], [0.5, 0.6], [7])
    assert d["detailed_evaluation_iou_05"]["num_tp"] == 1 and d["detailed_evaluation_iou_05"]["num_fn"] == 1
    c1 = d["detailed_evaluation_iou_05"]["class_1"]
    # A twice (duplicate), B as class 1 (class confusion)
    assert (c1["num_tp"], c1["num_fp"], c1["num_fp_duplicate"], c1["num_fp_class"]) == (1, 2, 1, 1)
    c2 = d["detailed_evaluation_iou_06"]["class_2"]
    # 'near' overlaps A (class 1) by 0.54 < 0.6: multiple; the far box: background; B missed
    assert (c2["num_fp_multiple"], c2["num_fp_background"], c2["num_fn"]) == (1, 1, 1)
    assert d["detailed_evaluation_iou_05"]["image_ids_with_false_negatives"] == [7]
    # rows: predicted class 1, 2, not detected; columns: ground-truth class 1, 2, background, duplicate,
    # localization, multiple. At 0.5 'near' is a class confusion with A (class 1), at 0.6 a 'multiple'.
    m05 = d["detailed_evaluation_iou_05"]["detection_confusion_matrix"]
    m06 = d["detailed_evaluation_iou_06"]["detection_confusion_matrix"]
    assert m05.dtype == np.int32 and m05.shape == (3, 6)
    np.testing.assert_array_equal(m05, [[1, 1, 0, 1, 0, 0], [1, 0, 1, 0, 0, 0], [0, 1, 0, 0, 0, 0]])
    np.testing.assert_array_equal(m06, [[1, 1, 0, 1, 0, 0], [0, 0, 1, 0, 0, 1], [0, 1, 0, 0, 0, 0]])
    assert "soap_tp" not in d["detailed_evaluation_iou_05"]          # rectangle1: no SoAP


def test_detailed_soap_of_true_and_false_positives_by_cause():
    g1, g2 = [10.0, 10.0, 0.0, 6.0, 2.0], [40.0, 40.0, 1.0, 6.0, 2.0]
    dets = [[10.0, 10.0, 0.1, 6.0, 2.0],       # true positive on g1 (IoU 0.85), angle error 0.1
            [10.0, 10.0, -0.2, 6.0, 2.0],      # duplicate of g1 (IoU 0.74), error 0.2
            [10.0, 16.0, 0.1, 6.0, 2.0],       # localization on g1 (IoU 0.30), error 0.1
            [40.0, 40.0, 1.3, 6.0, 2.0],       # class 1 on the class-2 box: class confusion, error 0.3
            [80.0, 80.0, 2.0, 6.0, 2.0]]       # class 2 far from everything: background, no angle to compare
    img = de.Image([1, 2], [g1, g2], [1, 1, 1, 1, 2], dets, [0.9, 0.8, 0.7, 0.6, 0.5], "rectangle2")
    d = de.detailed([img], [1, 2], [0.5], [0], soap=True)["detailed_evaluation_iou_05"]
    s = lambda *e: 1 - np.mean(e) / np.pi  # noqa: E731
    assert d["soap_tp"] == pytest.approx(s(0.1))
    assert d["soap_fp_duplicate"] == pytest.approx(s(0.2))
    assert d["soap_fp_localization"] == pytest.approx(s(0.1))
    assert d["soap_fp_class"] == pytest.approx(s(0.3))
    assert d["soap_fp_multiple"] == -1.0
    assert d["mean_soap_all"] == pytest.approx(s(0.1, 0.2, 0.1, 0.3))
    assert d["class_1"]["mean_soap_all"] == pytest.approx(s(0.1, 0.2, 0.1, 0.3))
    assert d["class_2"]["mean_soap_all"] == -1.0 and d["class_2"]["num_fp_background"] == 1
    np.testing.assert_array_equal(d["detection_confusion_matrix"],
                                  [[1, 1, 0, 1, 1, 0], [0, 0, 1, 0, 0, 0], [0, 1, 0, 0, 0, 0]])


@pytest.fixture(scope="module")
def workflow(tmp_path_factory):
    """HALCON's detection workflow on 160 generated 64 x 64 scenes (COCO annotations), 24 epochs."""
    root = tmp_path_factory.mktemp("detwf")
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    images, anns = [], []
    for i in range(160):
        img, b = scene(rng)
        ha.write_image(img, "png", 0, str(root / "images" / f"{i:04d}"))
        images.append({"id": i + 1, "file_name": f"{i:04d}.png", "width": 64, "height": 64})
        for k, r1, c1, r2, c2 in zip(*(b[key] for key in ("bbox_label_id", "bbox_row1", "bbox_col1", "bbox_row2",
                                                          "bbox_col2"))):
            # COCO boxes: [x, y, width, height] from the pixel corner
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": k,
                         "bbox": [c1 + 0.5, r1 + 0.5, c2 - c1, r2 - r1], "iscrowd": 0})
    cats = [{"id": 1, "name": "ring"}, {"id": 2, "name": "plate"}, {"id": 3, "name": "bracket"}]
    (root / "coco.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    ds = ha.read_dl_dataset_from_coco(str(root / "coco.json"), str(root / "images"), [])
    ha.set_system("seed_rand", 1)
    ha.split_dl_dataset(ds, 70, 15, [])
    m = ha.create_dl_model_detection("pretrained_dl_classifier_compact.hdl", 3,
                                     {"image_dimensions": [64, 64, 1], "class_ids": [1, 2, 3], "capacity": "low",
                                      "min_confidence": 0.05})
    ha.set_dl_model_param(m, "batch_size", 8)
    ha.set_dl_model_param(m, "solver_type", "adam")
    ha.set_dl_model_param(m, "learning_rate", 0.001)
    pp = ha.create_dl_preprocess_param_from_model(m, "none", "full_domain", [], [], [])
    ha.preprocess_dl_dataset(ds, str(root / "prep"), pp, [])
    tp = ha.create_dl_train_param(m, 24, 8, "false", 1, ["serialize"],
                                  [{"type": "best", "basename": str(root / "best")}])
    _, _, evaluation_infos = ha.train_dl_model(ds, m, tp, 0)
    return ds, m, evaluation_infos, root


def test_detection_workflow_trains_and_evaluates(workflow):
    ds, m, infos, root = workflow
    # one validation evaluation every 8 epochs, each holding HALCON's nested mean_ap
    values = [py(info)["result"][0]["max_num_detections_all"][0]["area_all"][0]["mean_ap"][0] for info in infos]
    assert len(values) == 3 and values[-1] > values[0]
    res, ep = ha.evaluate_dl_model(ds, m, "split", "test", {"iou_threshold": [0.5, 0.75]})
    r = py(res)["max_num_detections_all"][0]["area_all"][0]
    ap50 = r["ap_iou_05"][0]["mean_class_ap"][0]
    print(f"workflow: test mAP@0.5 {ap50:.3f}, mAP@[0.5, 0.75] {r['mean_ap'][0]:.3f}, validation mean_ap {values}")
    assert ap50 >= 0.5
    assert r["mean_ap"][0] == pytest.approx(np.mean([r["mean_iou_ap"][0][f"class_{c}"][0] for c in (1, 2, 3)]))
    assert py(ep)["measures"] == ["mean_ap"] and py(ep)["instance_type"] == ["rectangle1"]
    # the detailed evaluation's confusion matrix agrees with its counts
    res, _ = ha.evaluate_dl_model(ds, m, "split", "test", {"iou_threshold": 0.5, "detailed_evaluation": 1})
    d = py(res)["detailed_evaluation_iou_05"][0]
    cm = np.asarray(d["detection_confusion_matrix"])
    assert cm.shape == (4, 7) and cm.dtype == np.int32
    for i, c in enumerate((1, 2, 3)):
        k = d[f"class_{c}"][0]
        assert cm[i].sum() == k["num_tp"][0] + k["num_fp"][0] and cm[i, i] == k["num_tp"][0]
        assert cm[3, i] == k["num_fn"][0]
        assert list(cm[i, 3:]) == [k[f"num_fp_{x}"][0] for x in ("background", "duplicate", "localization",
                                                                 "multiple")]
    assert np.trace(cm) == d["num_tp"][0] and cm[3].sum() == d["num_fn"][0]
    # the best evaluation's model was written
    best = ha.read_dl_model(str(root / "best.hdl"))
    assert ha.get_dl_model_param(best, "type") == ["detection"]


def test_detection_evaluation_errors(workflow):
    ds, m, _, _ = workflow
    assert code_of(ha.evaluate_dl_model, ds, m, "split", "test", {"iou_threshold": [1.5]}) == 1305
    assert code_of(ha.evaluate_dl_model, ds, m, "split", "test", {"measures": "soap"}) == 1305
    assert code_of(ha.evaluate_dl_model, ds, m, "split", "test", {"measures": "top1_error"}) == 1305
    assert code_of(ha.evaluate_dl_model, ds, m, "split", "test", {"max_num_detections": [0]}) == 1305
    assert code_of(ha.evaluate_dl_model, ds, m, "split", "test",
                   {"area_ranges": {"name": ["a", "b"], "min": [0], "max": [10]}}) == 1305
    # NaN bounds compare false both ways and duplicate names would collide in the result: both refused
    for ranges in ({"name": ["a"], "min": [float("nan")], "max": [5]},
                   {"name": ["a", "a"], "min": [0, 10], "max": [10, 20]}):
        assert code_of(ha.evaluate_dl_model, ds, m, "split", "test", {"area_ranges": ranges}) == 1305
    assert code_of(ha.evaluate_dl_model, ds, m, "split", "test", {"measures": []}) == 1305
    assert code_of(ha.evaluate_dl_model, ds, m, "split", "test", {"instance_type": "rectangle2"}) == 1305
