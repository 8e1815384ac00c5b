"""Evaluation procedures: gen_confusion_matrix against hand-computed matrices (rows predicted, columns ground
truth), create_evaluation_default_param's keys, and evaluate_dl_model on a real compact classifier over a
preprocessed folder dataset, its numbers recomputed here from apply_dl_model's results, plus the error cases."""

import inspect
import os

import numpy as np
import pytest

import opendl as ha
from opendl import evaluation
from procedure_helpers import code_of, py


def test_signatures():
    assert list(inspect.signature(ha.gen_confusion_matrix).parameters) == [
        "ground_truth_labels", "predicted_classes", "gen_param_name", "gen_param_value", "window_handle"]
    assert list(inspect.signature(ha.create_evaluation_default_param).parameters) == [
        "evaluation_type", "class_ids_model"]
    assert list(inspect.signature(ha.evaluate_dl_model).parameters) == [
        "dldataset", "dlmodel_handle", "sample_select_method", "sample_select_values", "gen_param"]


def test_confusion_matrix_rows_predicted_columns_ground_truth():
    gt = [0, 0, 0, 1, 1, 2, 2, 2, 2]
    pred = [0, 1, 1, 1, 1, 2, 0, 2, 2]
    m = ha.gen_confusion_matrix(gt, pred, [], [], [])
    np.testing.assert_array_equal(m, [[1, 0, 1],
                                      [2, 2, 0],
                                      [0, 0, 3]])
    rel = ha.gen_confusion_matrix(gt, pred, ["return_matrix", "display_matrix"], ["relative", "none"], [])
    np.testing.assert_allclose(rel, [[1 / 3, 0, 1 / 4], [2 / 3, 1, 0], [0, 0, 3 / 4]], rtol=1e-6)
    assert ha.gen_confusion_matrix(gt, pred, "return_matrix", "none", []) == []
    names = ha.gen_confusion_matrix(["b", "a", "b"], ["b", "b", "a"], [], [], [])
    np.testing.assert_array_equal(names, [[0, 1], [1, 1]])  # classes sorted: a, b


def test_confusion_matrix_errors():
    assert code_of(ha.gen_confusion_matrix, [0, 1], [0], [], [], []) == 1402
    assert code_of(ha.gen_confusion_matrix, [0, 1], [0, 2], [], [], []) == 1302
    assert code_of(ha.gen_confusion_matrix, [0, 1], [0, 1], "return_matrix", "both", []) == 1304
    assert code_of(ha.gen_confusion_matrix, [0, 1], [0, 1], "colour", "red", []) == 1303
    assert code_of(ha.gen_confusion_matrix, [], [], [], [], []) == 1401
    assert code_of(ha.gen_confusion_matrix, [0, 1], ["0", "1"], [], [], []) == 1201
    # numpy labels (what argmax gives) count like Python ints
    np.testing.assert_array_equal(ha.gen_confusion_matrix(np.array([0, 1, 1]), np.array([0, 1, 0]), [], [], []),
                                  [[1, 1], [0, 1]])


def test_default_params():
    cl = py(ha.create_evaluation_default_param("classification", [0, 1, 2]))
    assert cl == {"evaluation_type": ["classification"], "class_ids": [0, 1, 2], "num_classes": [3],
                  "evaluate_instances": [0], "measures": ["top1_error"], "class_ids_to_evaluate": ["global"]}
    det = py(ha.create_evaluation_default_param("detection", [1, 2]))
    assert det["measures"] == ["mean_ap"] and det["evaluate_instances"] == [1]
    np.testing.assert_allclose(det["iou_threshold"], np.arange(0.5, 0.951, 0.05))
    assert det["area_ranges"] == [{"name": ["all"], "min": [0], "max": [2e8]}]
    assert det["max_num_detections"] == [-1] and det["interpolate_pr_curves"] == [1]
    seg = py(ha.create_evaluation_default_param("segmentation", [0, 1]))
    assert seg["measures"] == ["pixel_accuracy", "mean_accuracy", "mean_iou"]
    assert py(ha.create_evaluation_default_param("anomaly_detection", [0, 1]))["measures"] == \
        ["anomaly_score_histogram"]
    assert code_of(ha.create_evaluation_default_param, "ocr", [0]) == 1301
    assert code_of(ha.create_evaluation_default_param, "anomaly_detection", [0, 1, 2]) == 1302


# ---------------------------------------------------------------- evaluate_dl_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(0)
    for c, n, level in (("dark", 7, 40), ("mid", 6, 120), ("light", 8, 200)):
        os.makedirs(root / "raw" / c)
        for i in range(n):
            img = np.clip(rng.normal(level, 40, (12, 12, 3)), 0, 255).astype(np.uint8)
            ha.write_image(img, "png", 0, str(root / "raw" / c / f"{i}"))
    ds = ha.read_dl_dataset_classification(str(root / "raw"), "last_folder")
    ha.set_system("seed_rand", 3)
    ha.split_dl_dataset(ds, 50, 25, [])
    m = ha.read_dl_model("pretrained_dl_classifier_compact.hdl")
    ha.set_dl_model_param(m, "image_dimensions", [12, 12, 3])
    ha.set_dl_model_param(m, "class_ids", [0, 1, 2])
    ha.set_dl_model_param(m, "batch_size", 4)
    pp = ha.create_dl_preprocess_param_from_model(m, "all_channels", "full_domain", [], [], [])
    ha.preprocess_dl_dataset(ds, str(root / "prep"), pp, [])
    return ds, m


def reference(ds, m, indices):
    """Labels and ranked predictions recomputed with apply_dl_model one sample at a time."""
    labels, ranked = [], []
    for i in indices:
        s = ha.read_dl_samples(ds, [i])
        labels.append(ha.get_dict_tuple_s(s[0], "image_label_id"))
        ranked.append(ha.get_dict_tuple(ha.apply_dl_model(m, s, [])[0], "classification_class_ids"))
    return np.array(labels), ranked


def test_evaluate_matches_a_hand_computed_confusion_matrix(setup):
    ds, m = setup
    samples = py(ds)["samples"]
    indices = [i for i, s in enumerate(samples) if s["split"][0] in ("validation", "test")]
    labels, ranked = reference(ds, m, indices)
    top1 = np.array([r[0] for r in ranked])
    cm = np.zeros((3, 3), int)
    for g, p in zip(labels, top1):
        cm[p, g] += 1
    res_h, params_h = ha.evaluate_dl_model(ds, m, "split", ["validation", "test"],
                                           {"measures": ["all", "top2_error"], "class_ids_to_evaluate": ["global", 2]})
    res = py(res_h)
    assert set(res) == {"global", "class_id_2", "absolute_confusion_matrix", "relative_confusion_matrix",
                        "evaluated_samples"}
    np.testing.assert_array_equal(res["absolute_confusion_matrix"], cm)
    np.testing.assert_allclose(res["relative_confusion_matrix"], cm / cm.sum(axis=0), rtol=1e-6)
    ev = res["evaluated_samples"][0]
    assert ev["image_label_ids"] == list(labels) and ev["top1_predictions"] == list(top1)
    assert ev["image_ids"] == [samples[i]["image_id"][0] for i in indices]
    g = res["global"][0]
    assert g["top1_error"][0] == pytest.approx(np.mean(top1 != labels))
    assert g["top2_error"][0] == pytest.approx(np.mean([lab not in r[:2] for lab, r in zip(labels, ranked)]))
    tp = np.diag(cm)
    prec = np.divide(tp, cm.sum(axis=1), out=np.zeros(3), where=cm.sum(axis=1) > 0)
    rec = tp / cm.sum(axis=0)
    f = np.divide(2 * prec * rec, prec + rec, out=np.zeros(3), where=prec + rec > 0)
    np.testing.assert_allclose(g["precision_per_class"], prec)
    np.testing.assert_allclose(g["recall_per_class"], rec)
    np.testing.assert_allclose(g["f_score_per_class"], f)
    assert g["mean_precision"][0] == pytest.approx(prec.mean())
    assert g["mean_recall"][0] == pytest.approx(rec.mean())
    assert g["mean_f_score"][0] == pytest.approx(f.mean())
    c2 = res["class_id_2"][0]
    assert set(c2) == {"top1_error", "top2_error", "precision", "recall", "f_score"}
    mask = labels == 2
    assert c2["top1_error"][0] == pytest.approx(np.mean(top1[mask] != 2))
    assert (c2["precision"][0], c2["recall"][0]) == (pytest.approx(prec[2]), pytest.approx(rec[2]))
    params = py(params_h)
    assert params["class_ids"] == [0, 1, 2] and params["class_ids_to_evaluate"] == ["global", 2]
    assert params["measures"][:2] == ["top1_error", "precision"] and "top2_error" in params["measures"]
    # class_ids in another order: the matrices still span the ids in ascending order (spec C.10), the
    # per-class tuples follow class_ids
    res = py(ha.evaluate_dl_model(ds, m, "split", ["validation", "test"],
                                  {"measures": "all", "class_ids": [2, 0, 1]})[0])
    np.testing.assert_array_equal(res["absolute_confusion_matrix"], cm)
    np.testing.assert_allclose(res["relative_confusion_matrix"], cm / cm.sum(axis=0), rtol=1e-6)
    np.testing.assert_allclose(res["global"][0]["precision_per_class"], prec[[2, 0, 1]])


def test_confusion_matrices_in_ascending_class_id_order():
    # class_ids [7, 3, 5]; samples (label -> prediction): 3->3, 3->7, 5->5, 7->7, 7->7, 7->5. Ascending ids
    # 3, 5, 7; rows predicted, columns ground truth: column 3 = {3: 1, 7: 1}, column 5 = {5: 1},
    # column 7 = {5: 1, 7: 2}
    labels = np.array([3, 3, 5, 7, 7, 7])
    ranked = [[3, 5, 7], [7, 3, 5], [5, 3, 7], [7, 5, 3], [7, 3, 5], [5, 7, 3]]
    r = evaluation._classification_result(labels, ranked, [7, 3, 5], ["global"], ["top1_error", "precision",
                                          "absolute_confusion_matrix", "relative_confusion_matrix"], "t")
    np.testing.assert_array_equal(r["absolute_confusion_matrix"], [[1, 0, 0], [0, 1, 1], [1, 0, 2]])
    np.testing.assert_allclose(r["relative_confusion_matrix"], [[0.5, 0, 0], [0, 1, 1 / 3], [0.5, 0, 2 / 3]],
                               rtol=1e-6)
    # precision in class_ids order 7, 3, 5: 7 predicted 3 times (2 right), 3 once (right), 5 twice (1 right)
    np.testing.assert_allclose(r["global"]["precision_per_class"], [2 / 3, 1.0, 0.5])


def test_topk_error_of_a_class_without_samples_is_undefined():
    # labels 0, 0, 1; every top-1 prediction wrong; the top-2 lists hold the label of both class-0 samples
    # only. Class 2 has no sample: its top-k error is undefined, -1 (not 0, a perfect score)
    labels = np.array([0, 0, 1])
    ranked = [[1, 0, 2], [1, 0, 2], [0, 2, 1]]
    r = evaluation._classification_result(labels, ranked, [0, 1, 2], ["global", 0, 2],
                                          ["top1_error", "top2_error"], "t")
    assert (r["global"]["top1_error"], r["global"]["top2_error"]) == (1.0, pytest.approx(1 / 3))
    assert (r["class_id_0"]["top1_error"], r["class_id_0"]["top2_error"]) == (1.0, 0.0)
    assert (r["class_id_2"]["top1_error"], r["class_id_2"]["top2_error"]) == (-1.0, -1.0)


def test_segmentation_refuses_negative_ids_and_results_of_another_shape(monkeypatch):
    m = ha.read_dl_model("pretrained_dl_segmentation_compact.hdl")  # classes 0, 1
    gt = np.array([[0, 1], [1, 0]], np.uint8)
    ds = {"samples": [{"image_id": [0]}], "preprocess_param": {}, "dlsample_dir": "unused"}

    def evaluate(pred):
        # the model's result replaced by pred (apply_dl_model is not what is tested here)
        monkeypatch.setattr(evaluation, "_batches", lambda d, model, selected: iter(
            [(selected, [{"segmentation_image": gt}], [{"segmentation_image": pred}])]))
        return ha.evaluate_dl_model(ds, m, "sample_indices", [0], {"measures": "all"})[0]

    # one pixel of class 1 predicted as 0: class 0 IoU 2 / 3, class 1 IoU 1 / 2, 3 of 4 pixels right;
    # a one-channel result given as (2, 2, 1) is the same image
    for pred in (np.array([[0, 1], [0, 0]], np.int32), np.array([[[0], [1]], [[0], [0]]], np.int32)):
        r = py(evaluate(pred))
        assert r["pixel_accuracy"] == [0.75] and r["mean_iou"][0] == pytest.approx((2 / 3 + 1 / 2) / 2)
    # -1 is no evaluated class id (it used to wrap around to the last id, 1, and count as right)
    assert code_of(evaluate, np.array([[0, -1], [-1, 0]], np.int32)) == 1302
    # a result of another size, or of the same pixel count in another shape, cannot be compared pixel by pixel
    assert code_of(evaluate, np.zeros((3, 3), np.int32)) == 1301
    assert code_of(evaluate, np.array([[0, 1, 1, 0]], np.int32)) == 1301


def test_evaluate_selection_methods_and_default_measure(setup):
    ds, m = setup
    res = py(ha.evaluate_dl_model(ds, m, "sample_indices", [0, 7, 20], [])[0])
    assert set(res) == {"global", "evaluated_samples"} and set(res["global"][0]) == {"top1_error"}
    labels, ranked = reference(ds, m, [0, 7, 20])
    assert res["global"][0]["top1_error"][0] == pytest.approx(np.mean([r[0] != g for g, r in zip(labels, ranked)]))
    by_id = py(ha.evaluate_dl_model(ds, m, "image_ids", [7, 0, 20], [])[0])
    assert by_id["global"] == res["global"]
    assert by_id["evaluated_samples"][0]["image_ids"] == [0, 7, 20]


def test_evaluate_errors(setup):
    ds, m = setup
    assert code_of(ha.evaluate_dl_model, ds, m, "split", [], []) == 1404
    assert code_of(ha.evaluate_dl_model, ds, m, "random", ["train"], []) == 1303
    assert code_of(ha.evaluate_dl_model, ds, m, "split", ["holdout"], []) == 1304
    assert code_of(ha.evaluate_dl_model, ds, m, "sample_indices", [99], []) == 1304
    with pytest.raises(ha.HOperatorError, match="must be integers"):
        ha.evaluate_dl_model(ds, m, "sample_indices", [1.0], [])
    for method, values in (("image_ids", [[1]]), ("image_ids", ["1"]), ("split", [1])):
        assert code_of(ha.evaluate_dl_model, py(ds), m, method, values, []) == 1304
    for gen in ({"class_ids": [0, 1, 1]}, {"class_ids_to_evaluate": []}, {"measures": []}):
        assert code_of(ha.evaluate_dl_model, ds, m, "split", ["test"], gen) == 1305
    assert code_of(ha.evaluate_dl_model, ds, m, "split", ["test"], {"speed": 1}) == 1305
    assert code_of(ha.evaluate_dl_model, ds, m, "split", ["test"], {"measures": "top4_error"}) == 1305
    assert code_of(ha.evaluate_dl_model, ds, m, "split", ["test"],
                   {"class_ids_to_evaluate": [1], "class_names_to_evaluate": ["1"]}) == 1305
    # one sample cannot show every class: confusion matrices need them all
    assert code_of(ha.evaluate_dl_model, ds, m, "sample_indices", [0],
                   {"measures": "absolute_confusion_matrix"}) == 1302
    raw = ha.read_dl_dataset_classification(os.path.dirname(py(ds)["image_dir"][0] + "/"), "last_folder")
    assert code_of(ha.evaluate_dl_model, raw, m, "sample_indices", [0], []) == 2894  # not preprocessed


def test_evaluate_refuses_models_other_than_classification(setup):
    ds, _ = setup
    image = ha.create_dl_layer_input("image", [12, 12, 3], [], [])
    generic = ha.create_dl_model(ha.create_dl_layer_dense(image, "dense", 2, [], []))
    with pytest.raises(ha.HOperatorError) as e:
        ha.evaluate_dl_model(ds, generic, "split", ["test"], [])
    assert e.value.error_code == 7912 and "generic" in str(e.value)
