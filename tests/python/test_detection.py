"""Object detection (create_dl_model_detection, rectangle1; rectangle2 in test_detection_rectangle2.py): learning to mAP@0.5 >= 0.8 on held-out generated
scenes, decoding and NMS against a numpy brute-force reference built from the documented anchors and box
encoding, DLTrainResult keys, parameters, files, and bad input leaving the model unchanged."""

import numpy as np
import pytest

import opendl as ha
from opendl.errors import HOperatorError
from detection_helpers import KEYS, detections, iou, mean_ap, samples, scene, train_detector

RESULT_KEYS = ("bbox_class_id", "bbox_confidence") + KEYS


def make_model(**param):
    p = {"image_dimensions": [64, 64, 1], "class_ids": [1, 2, 3], "class_names": ["ring", "plate", "bracket"],
         "capacity": "low"}
    p.update(param)
    return ha.create_dl_model_detection("pretrained_dl_classifier_compact.hdl", 3, p)


@pytest.fixture(scope="module")
def trained():
    """A low-capacity detector trained for 9 passes over 400 generated scenes (about 35 s on 2 cores)."""
    rng = np.random.default_rng(0)
    return train_detector(make_model(), [scene(rng) for _ in range(400)])


def test_detector_learns_to_map50_over_0_8_on_held_out_scenes(trained):
    test = [scene(np.random.default_rng(5000 + i)) for i in range(64)]
    ha.set_dl_model_param(trained, "min_confidence", 0.05)
    dets = detections(trained, test, RESULT_KEYS + ("bbox_class_name",))
    truths = [b for _, b in test]
    map50 = mean_ap(dets, truths, [1, 2, 3])
    map_coco = mean_ap(dets, truths, [1, 2, 3], np.arange(0.5, 0.96, 0.05))
    print(f"mAP@0.5 {map50:.3f}  mAP@[0.5:0.95] {map_coco:.3f}")
    assert map50 >= 0.8, (map50, map_coco)
    names = {1: "ring", 2: "plate", 3: "bracket"}
    for d in dets:
        assert [names[c] for c in d["bbox_class_id"]] == d["bbox_class_name"]
        assert d["bbox_confidence"] == sorted(d["bbox_confidence"], reverse=True)


def reference_anchors(level, map_h, map_w, image_h, image_w, subscales=3, ratios=(1.0, 2.0, 0.5)):
    out = []
    sr, sc = image_h / map_h, image_w / map_w
    for i in range(map_h):
        for j in range(map_w):
            r, c = (i + 0.5) * sr, (j + 0.5) * sc
            for k in range(subscales):
                size = 4 * 2 ** level * 2 ** (k / subscales)
                for q in ratios:
                    h, w = size * np.sqrt(q), size / np.sqrt(q)
                    out.append([r - h / 2, c - w / 2, r + h / 2, c + w / 2])
    return np.asarray(out)


def reference_results(model, raw, min_conf, max_overlap, max_overlap_ca, max_num):
    """Decoding, per-class and class-agnostic greedy NMS by brute force from the raw head outputs."""
    boxes, scores, classes = [], [], []
    lim = np.log(1000 / 16)
    for level in (2, 3, 4):
        cs = ha.get_dict_object(raw, f"class_scores_{level}").astype(np.float64)   # (h, w, A * K)
        bd = ha.get_dict_object(raw, f"box_deltas_{level}").astype(np.float64)     # (h, w, A * 4)
        h, w = cs.shape[:2]
        anchors = reference_anchors(level, h, w, 64, 64)
        logits = cs.reshape(-1, 3)
        deltas = bd.reshape(-1, 4)
        prob = 1 / (1 + np.exp(-logits))
        cand = [(prob[a, k], a, k) for a in range(len(anchors)) for k in range(3) if prob[a, k] >= min_conf]
        cand = sorted(cand, key=lambda x: -x[0])[:1000]
        for p, a, k in cand:
            an = anchors[a]
            ha_, wa = an[2] - an[0], an[3] - an[1]
            r = (an[0] + an[2]) / 2 + deltas[a, 0] * ha_
            c = (an[1] + an[3]) / 2 + deltas[a, 1] * wa
            hh = ha_ * np.exp(min(deltas[a, 2], lim))
            ww = wa * np.exp(min(deltas[a, 3], lim))
            b = np.clip([r - hh / 2, c - ww / 2, r + hh / 2, c + ww / 2], -0.5, 63.5)
            if b[2] > b[0] and b[3] > b[1]:
                boxes.append(b)
                scores.append(p)
                classes.append(k)
    boxes, scores, classes = np.asarray(boxes).reshape(-1, 4), np.asarray(scores), np.asarray(classes)

    def greedy(idx, thr):
        idx = sorted(idx, key=lambda i: -scores[i])
        keep = []
        for i in idx:
            if all(iou(boxes[i], boxes[[j]])[0] <= thr for j in keep):
                keep.append(i)
        return keep

    kept = [i for k in range(3) for i in greedy([i for i in range(len(boxes)) if classes[i] == k], max_overlap)]
    if max_overlap_ca < 1:
        kept = greedy(kept, max_overlap_ca)
    kept = sorted(kept, key=lambda i: -scores[i])[:max_num]
    return boxes[kept], scores[kept], classes[kept]


@pytest.mark.parametrize("max_overlap, max_overlap_ca, max_num", [(0.5, 1.0, 100), (0.3, 0.5, 5)])
def test_decoding_and_nms_match_a_brute_force_reference(trained, max_overlap, max_overlap_ca, max_num):
    m = trained
    ha.set_dl_model_param(m, "min_confidence", 0.02)
    ha.set_dl_model_param(m, "max_overlap", max_overlap)
    ha.set_dl_model_param(m, "max_overlap_class_agnostic", max_overlap_ca)
    ha.set_dl_model_param(m, "max_num_detections", max_num)
    try:
        data = [scene(np.random.default_rng(77 + i)) for i in range(3)]
        outs = [f"{n}_{lv}" for lv in (2, 3, 4) for n in ("class_scores", "box_deltas")]
        for s in samples(data):
            raw = ha.apply_dl_model(m, [s], outs)[0]
            res = ha.apply_dl_model(m, [s], [])[0]
            boxes, scores, classes = reference_results(m, raw, 0.02, max_overlap, max_overlap_ca, max_num)
            got = np.stack([np.asarray(ha.get_dict_tuple(res, k), np.float64) for k in KEYS], axis=1) \
                if ha.get_dict_tuple(res, "bbox_row1") else np.zeros((0, 4))
            assert len(got) == len(boxes) and len(got) > 0
            # float32 activations, float64 reference arithmetic on them: agreement to 1e-6 relative
            np.testing.assert_allclose(got, boxes, rtol=1e-6, atol=1e-5)
            np.testing.assert_allclose(ha.get_dict_tuple(res, "bbox_confidence"), scores, rtol=1e-6)
            assert ha.get_dict_tuple(res, "bbox_class_id") == [int(c) + 1 for c in classes]
    finally:
        ha.set_dl_model_param(m, "max_overlap", 0.5)
        ha.set_dl_model_param(m, "max_overlap_class_agnostic", 1.0)
        ha.set_dl_model_param(m, "max_num_detections", 100)


def test_train_result_keys_and_images_without_objects():
    m = make_model(min_level=3, max_level=5)
    ha.set_dl_model_param(m, "batch_size", 2)
    img, boxes = scene(np.random.default_rng(3))
    empty = {k: [] for k in boxes}
    r = ha.train_dl_model_batch(m, samples([(img, boxes), (img, empty)]))
    keys = set(ha.get_dict_param(r, "keys", []))
    assert keys == {"total_loss", "regularization"} | {f"loss_{t}_{lv}" for t in ("class", "box") for lv in (3, 4, 5)}
    total = ha.get_dict_tuple(r, "total_loss")[0]
    parts = sum(ha.get_dict_tuple(r, k)[0] for k in keys if k != "total_loss")
    assert total == pytest.approx(parts, rel=1e-6) and np.isfinite(total)
    # level 5 is deeper than the compact backbone (stride 16): an extra stride-2 convolution makes it
    assert ha.get_dl_model_param(m, "backbone_docking_layers") == ["bn_12", "bn_14"]
    r = ha.train_dl_model_batch(m, samples([(img, empty), (img, empty)]))
    assert ha.get_dict_tuple(r, "loss_box_3")[0] == 0.0


def test_parameters_files_and_class_changes(tmp_path):
    m = make_model()
    assert ha.get_dl_model_param(m, "type") == ["detection"]
    assert ha.get_dl_model_param(m, "instance_type") == ["rectangle1"]
    assert ha.get_dl_model_param(m, "class_weights") == [0.25] * 3
    assert ha.get_dl_model_param(m, "anchor_aspect_ratios") == [1.0, 2.0, 0.5]
    assert ha.get_dl_model_param(m, "image_dimensions") == [64, 64, 1]
    ha.set_dl_model_param(m, "min_confidence", 0.2)
    ha.set_dl_model_param(m, "max_num_detections", 7)
    ha.set_dl_model_param(m, "class_weights", [0.5, 0.25, 0.75])
    ha.write_dl_model(m, str(tmp_path / "det.hdl"))
    again = ha.read_dl_model(str(tmp_path / "det.hdl"))
    for k in ("min_confidence", "max_num_detections", "class_weights", "class_names", "class_ids", "min_level"):
        assert ha.get_dl_model_param(again, k) == ha.get_dl_model_param(m, k)
    s = samples([scene(np.random.default_rng(9))])
    assert [ha.get_dict_tuple(r, "bbox_row1") for r in ha.apply_dl_model(again, s, [])] == \
        [ha.get_dict_tuple(r, "bbox_row1") for r in ha.apply_dl_model(m, s, [])]
    ha.set_dl_model_param(m, "class_ids", [4, 7])
    assert ha.get_dl_model_param(m, "num_classes") == [2] and ha.get_dl_model_param(m, "class_weights") == [0.25] * 2
    ha.set_dl_model_param(m, "batch_size", 1)
    img, b = scene(np.random.default_rng(4))
    b = {"bbox_label_id": [7], "bbox_row1": [2.0], "bbox_col1": [3.0], "bbox_row2": [30.0], "bbox_col2": [20.0]}
    ha.train_dl_model_batch(m, samples([(img, b)]))


def test_bad_input_gets_halcon_errors_and_leaves_the_model_unchanged():
    m = make_model()
    ha.set_dl_model_param(m, "batch_size", 1)
    img, _ = scene(np.random.default_rng(2))
    before = ha.get_dl_model_layer_weights(m, "class_scores_2", "weights")
    good = {"bbox_label_id": [1], "bbox_row1": [2.0], "bbox_col1": [3.0], "bbox_row2": [30.0], "bbox_col2": [20.0]}
    cases = [
        ({"bbox_row2": [70.0]}, 7791, "outside"),
        ({"bbox_col2": [3.0]}, 7791, "area"),
        ({"bbox_row1": [2.0, 4.0]}, 7789, "'bbox_row1' has 2 values"),
        ({"bbox_label_id": [9]}, 7791, "class_ids"),
    ]
    for change, code, text in cases:
        b = dict(good, **change)
        with pytest.raises(HOperatorError) as e:
            ha.train_dl_model_batch(m, samples([(img, b)]))
        assert e.value.error_code == code and text in str(e.value), str(e.value)
    missing = {k: v for k, v in good.items() if k != "bbox_col2"}
    with pytest.raises(HOperatorError) as e:
        ha.train_dl_model_batch(m, samples([(img, missing)]))
    assert "bbox_col2" in str(e.value)
    np.testing.assert_array_equal(ha.get_dl_model_layer_weights(m, "class_scores_2", "weights"), before)

    with pytest.raises(HOperatorError) as e:
        make_model(instance_type="polygon")
    assert e.value.error_code == 7824
    with pytest.raises(HOperatorError) as e:
        make_model(min_level=4, max_level=3)
    assert e.value.error_code == 7813
    with pytest.raises(HOperatorError) as e:
        make_model(anchor_num_scales=2)
    assert "anchor_num_scales" in str(e.value)
    with pytest.raises(HOperatorError) as e:
        ha.set_dl_model_param(m, "min_level", 3)
    assert "creation" in str(e.value)
    with pytest.raises(HOperatorError) as e:
        ha.set_dl_model_param(m, "min_confidence", 1.5)
    with pytest.raises(HOperatorError):
        ha.create_dl_model_detection("pretrained_dl_segmentation_compact.hdl", 2, [])
    # class_ids / class_names of another count than num_classes used to resize the heads silently.
    for key, value in (("class_ids", [1, 2]), ("class_names", ["a", "b", "c", "d"])):
        with pytest.raises(HOperatorError) as e:
            make_model(**{key: value})
        assert e.value.error_code == 1303 and f"'{key}'" in str(e.value) and "num_classes is 3" in str(e.value)
    with pytest.raises(HOperatorError) as e:
        make_model(image_dimensions=[64, 64, 2])
    assert e.value.error_code == 7724 and "backbone" in str(e.value)


def test_freeze_backbone_level_keeps_early_backbone_layers_fixed(tmp_path):
    m = make_model(freeze_backbone_level=2)
    assert ha.get_dl_model_param(m, "freeze_backbone_level") == [2]
    ha.set_dl_model_param(m, "batch_size", 4)
    ha.set_dl_model_param(m, "solver_type", "adam")
    ha.set_dl_model_param(m, "learning_rate", 0.01)
    names = ha.get_dl_model_param(m, "layer_names")
    convs = [n for n in names if n.startswith("conv_")]
    bns = [n for n in names if n.startswith("bn_")]
    layer = {n: ha.get_dl_model_layer(m, n)[0] for n in convs + bns}
    frozen = [n for n in convs + bns if ha.get_dl_layer_param(layer[n], "learning_rate_multiplier") == [0.0]]
    free = [n for n in convs + bns if n not in frozen]
    # the compact backbone's layers down to level 2 (stride 4) are frozen, the deeper ones train
    assert frozen and free and all(ha.get_dl_layer_param(layer[n], "use_global_stats") == ["true"]
                                   for n in frozen if n.startswith("bn_"))
    kinds = ("weights", "bias", "batchnorm_mean", "batchnorm_variance")

    def blobs(model, layers):
        out = {}
        for n in layers:
            for t in kinds:
                try:
                    out[n, t] = ha.get_dl_model_layer_weights(model, n, t).copy()
                except ha.HOperatorError:
                    pass
        return out

    before = blobs(m, convs + bns)
    data = [scene(np.random.default_rng(40 + i)) for i in range(4)]
    for _ in range(3):
        ha.train_dl_model_batch(m, samples(data))
    after = blobs(m, convs + bns)
    for key in before:
        same = np.array_equal(before[key], after[key])
        assert same == (key[0] in frozen), key
    ha.write_dl_model(m, str(tmp_path / "frozen.hdl"))
    again = ha.read_dl_model(str(tmp_path / "frozen.hdl"))
    assert ha.get_dl_model_param(again, "freeze_backbone_level") == [2]
    # unfreezing restores multipliers 1 and batch statistics; the weights stay
    ha.set_dl_model_param(again, "freeze_backbone_level", 0)
    lay = ha.get_dl_model_layer(again, frozen[0])[0]
    assert ha.get_dl_layer_param(lay, "learning_rate_multiplier") == [1.0]
    np.testing.assert_array_equal(ha.get_dl_model_layer_weights(again, frozen[0], "weights"),
                                  after[frozen[0], "weights"])
    with pytest.raises(HOperatorError):
        ha.set_dl_model_param(again, "freeze_backbone_level", -1)
