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
    # one detection per image and class (COCO's maxDets): class 1 keeps 'shifted' (0.9), which finds A; D stays
    # unfound -> precision 1 up to recall 0.5: the 51 recall points 0 .. 0.5. (The class-2 detection, the
    # most confident of the image, does not take class 1's place.) Class 2 has no ground truth: -1.
    one_per_class = res["max_num_detections_1"]["area_all"]
    assert one_per_class["ap_iou_05"]["class_1"] == pytest.approx(51 / 101)
    assert one_per_class["ap_iou_05"]["class_2"] == -1.0
    # mean_ap: class 1's mean over both thresholds (at 0.85 'shifted' misses: AP 0); class 2 is left out
    assert one_per_class["mean_ap"] == pytest.approx((51 / 101 + 0.0) / 2)


def test_max_num_detections_counts_per_image_and_class():
    # one box of each class, both found exactly; with max_num_detections 1 each class keeps its own most
    # confident detection (COCO's maxDets, HALCON's procedure), so both APs are 1 (one kept detection over all
    # classes would leave class 2 without any: AP 0)
    img = de.Image([1, 2], [A, B], [1, 2], [A, B], [0.9, 0.8], "rectangle1")
    r = de.evaluate([img], [1, 2], [0.5], [1], [("all", 0, 2e8)], True, False)["max_num_detections_1"]["area_all"]
    assert (r["ap_iou_05"]["class_1"], r["ap_iou_05"]["class_2"], r["mean_ap"]) == (1.0, 1.0, 1.0)
    # two class-1 detections of A: with max_num 1 the less confident duplicate is dropped, not a false positive
    img = de.Image([1], [A], [1, 1], [A, A], [0.9, 0.8], "rectangle1")
    d = de.evaluate([img], [1], [0.5], [1, -1], [("all", 0, 2e8)], True, False, detailed=True, image_ids=[3])
    assert d["max_num_detections_1"]["area_all"]["detailed_evaluation_iou_05"]["num_fp"] == 0
    assert d["max_num_detections_all"]["area_all"]["detailed_evaluation_iou_05"]["num_fp_duplicate"] == 1


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


def test_detailed_counts_use_the_matching_of_the_ap_on_iou_ties():
    # G0 = [0, 0, 10, 10], G1 = [0, 4, 10, 14] (class 1). d0 = [0, 2, 10, 12] (0.9) overlaps both by
    # 80 / 120 = 2/3: a tie; the AP's matcher (COCO's) takes the last box, G1, which leaves G0 to
    # d1 = [0, -2, 10, 8] (0.8; IoU 80 / 120 with G0, 40 / 160 with G1): two true positives, AP 1. The detailed
    # counts come from that matching: 2 TP, no FN, no FP (the first best box, G0, would make d1 a duplicate
    # and G1 a miss).
    img = de.Image([1, 1], [[0, 0, 10, 10], [0, 4, 10, 14]], [1, 1], [[0, 2, 10, 12], [0, -2, 10, 8]], [0.9, 0.8],
                   "rectangle1")
    r = de.evaluate([img], [1], [0.5], [-1], [("all", 0, 2e8)], True, False)["max_num_detections_all"]["area_all"]
    assert r["ap_iou_05"]["class_1"] == 1.0
    d = de.detailed([img], [1], [0.5], [4])["detailed_evaluation_iou_05"]
    assert (d["num_tp"], d["num_fn"], d["num_fp"], d["num_fp_duplicate"]) == (2, 0, 0, 0)
    assert d["image_ids_with_false_negatives"] == [] and d["image_ids_with_false_positives"] == []
    np.testing.assert_array_equal(d["detection_confusion_matrix"], [[2, 0, 0, 0, 0], [0, 0, 0, 0, 0]])


# one image (id 7): a small class-1 box S (area 100) and a large one L (area 900); the model finds both and
# adds a small background box (area 25)
S, L, BG = [0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 80.0, 80.0], [200.0, 200.0, 205.0, 205.0]
AREAS = [("all", 0, 2e8), ("small", 0, 200), ("large", 200, 2e8)]


def test_detailed_evaluation_per_max_num_detections_and_area_range():
    img = de.Image([1, 1], [S, L], [1, 1, 1], [S, L, BG], [0.9, 0.8, 0.7], "rectangle1")
    res = de.evaluate([img], [1], [0.5], [-1, 1], AREAS, True, False, detailed=True, image_ids=[7])
    assert set(res) == {"max_num_detections_all", "max_num_detections_1"}
    counts = {(num, area): res[f"max_num_detections_{num}"][f"area_{area}"]["detailed_evaluation_iou_05"]
              for num in ("all", 1) for area in ("all", "small", "large")}
    tp_fn_fp = {k: (d["num_tp"], d["num_fn"], d["num_fp"]) for k, d in counts.items()}
    # all detections, whole range: S and L found, BG a background false positive
    assert tp_fn_fp["all", "all"] == (2, 0, 1) and counts["all", "all"]["num_fp_background"] == 1
    # 'small': L is ignored, and so is its detection; BG (area 25) lies inside the range: still a false positive
    assert tp_fn_fp["all", "small"] == (1, 0, 1)
    # 'large': S is ignored with its detection, and the unmatched BG outside the range is ignored too
    assert tp_fn_fp["all", "large"] == (1, 0, 0)
    # one detection per image and class: only S's (0.9) is kept, so L is missed (not in 'small')
    assert tp_fn_fp[1, "all"] == (1, 1, 0)
    assert tp_fn_fp[1, "small"] == (1, 0, 0)
    assert tp_fn_fp[1, "large"] == (0, 1, 0)
    assert counts[1, "all"]["image_ids_with_false_negatives"] == [7]
    assert counts[1, "all"]["image_ids_with_false_positives"] == []
    assert counts["all", "small"]["image_ids_with_false_positives"] == [7]
    # rows: class 1, not detected; columns: class 1, background, duplicate, localization, multiple
    np.testing.assert_array_equal(counts["all", "small"]["detection_confusion_matrix"],
                                  [[1, 1, 0, 0, 0], [0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(counts[1, "large"]["detection_confusion_matrix"],
                                  [[0, 0, 0, 0, 0], [1, 0, 0, 0, 0]])


def test_evaluate_dl_model_puts_the_detailed_evaluation_into_each_area_dict(monkeypatch):
    # spec C.10: EvaluationResult['max_num_detections_<N|all>']['area_<name>']['detailed_evaluation_iou_<t>'];
    # the model's results are replaced by the boxes above (apply_dl_model is not what is tested here)
    import opendl.evaluation as ev
    m = ha.create_dl_model_detection("pretrained_dl_classifier_compact.hdl", 1,
                                     {"image_dimensions": [64, 64, 1], "class_ids": [1], "capacity": "low"})
    corners = ("bbox_row1", "bbox_col1", "bbox_row2", "bbox_col2")
    sample = dict({"bbox_label_id": [1, 1], "image_id": [7]}, **{k: [S[j], L[j]] for j, k in enumerate(corners)})
    result = dict({"bbox_class_id": [1, 1, 1], "bbox_confidence": [0.9, 0.8, 0.7]},
                  **{k: [S[j], L[j], BG[j]] for j, k in enumerate(corners)})
    monkeypatch.setattr(ev, "_batches", lambda ds, model, selected: iter([(selected, [sample], [result])]))
    ds = {"samples": [{"image_id": [7]}], "preprocess_param": {}, "dlsample_dir": "unused"}
    areas = {"name": [a[0] for a in AREAS], "min": [a[1] for a in AREAS], "max": [a[2] for a in AREAS]}
    res, _ = ha.evaluate_dl_model(ds, m, "sample_indices", [0], {"iou_threshold": 0.5, "detailed_evaluation": 1,
                                                                 "max_num_detections": [-1, 1], "area_ranges": areas})
    res = py(res)
    assert set(res) == {"max_num_detections_all", "max_num_detections_1"}  # nothing at the top level
    d = res["max_num_detections_1"][0]["area_small"][0]["detailed_evaluation_iou_05"][0]
    assert (d["num_tp"], d["num_fn"], d["num_fp"]) == ([1], [0], [0])       # as in the test above
    d = res["max_num_detections_all"][0]["area_all"][0]["detailed_evaluation_iou_05"][0]
    assert (d["num_tp"], d["num_fn"], d["num_fp"]) == ([2], [0], [1]) and d["image_ids_with_false_positives"] == [7]
    without = py(ha.evaluate_dl_model(ds, m, "sample_indices", [0], {"iou_threshold": 0.5})[0])
    assert "detailed_evaluation_iou_05" not in without["max_num_detections_all"][0]["area_all"][0]


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
    d = py(res)["max_num_detections_all"][0]["area_all"][0]["detailed_evaluation_iou_05"][0]
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
