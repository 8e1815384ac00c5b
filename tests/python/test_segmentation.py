"""Segmentation models (type 'segmentation', edge extraction): built-in networks, DLSample and DLResult keys,
the per-pixel loss against a numpy reference (class weights, weight images, ignore ids), image sizes that
are not multiples of the network stride, bad input that must change nothing, the model file, and learning
on generated scenes (mean IoU) and thin scratches (edge F-score)."""

import numpy as np
import pytest

import opendl as ha
from opendl.demo import make_edge_scene, make_segmentation_scene

from segmentation_helpers import confusion, iou_per_class


def seg_model(name="pretrained_dl_segmentation_compact.hdl", size=(24, 20, 1), ids=(0, 1, 2, 3), batch=2):
    ha.set_system("seed_rand", 5)
    m = ha.read_dl_model(name)
    ha.set_dl_model_param(m, "image_dimensions", list(size))
    ha.set_dl_model_param(m, "class_ids", list(ids))
    ha.set_dl_model_param(m, "batch_size", batch)
    return m


def plain_model(w=7, h=5, classes=3):
    """image -> conv 3x3 -> softmax -> cross-entropy, made a segmentation model: no batch normalisation, so
    training-mode and inference-mode outputs are the same and the loss can be checked on apply's output."""
    ha.set_system("seed_rand", 2)
    img = ha.create_dl_layer_input("image", [w, h, 2], [], [])
    t = ha.create_dl_layer_input("target", [w, h, 1], [], [])
    wt = ha.create_dl_layer_input("weight", [w, h, 1], [], [])
    conv = ha.create_dl_layer_convolution(img, "scores", 3, 1, 1, classes, 1, "half_kernel_size", "none", [], [])
    sm = ha.create_dl_layer_softmax(conv, "softmax", [], [])
    loss = ha.create_dl_layer_loss_cross_entropy(sm, t, wt, "cross_entropy", 1.0, [], [])
    m = ha.create_dl_model(loss)
    ha.set_dl_model_param(m, "type", "segmentation")
    ha.set_dl_model_param(m, "batch_size", 2)
    ha.set_dl_model_param(m, "learning_rate", 1e-30)
    return m


def random_samples(n, w, h, c, ids, rng, dtype=np.uint8, scale=1.0):
    return [{"image": rng.normal(0, scale, (h, w, c)).astype(np.float32),
             "segmentation_image": rng.choice(ids, size=(h, w)).astype(dtype)} for _ in range(n)]


def test_builtin_models_and_their_defaults():
    for name, names in [("pretrained_dl_segmentation_compact.hdl", ["0", "1"]),
                        ("pretrained_dl_segmentation_enhanced.hdl", ["0", "1"]),
                        ("pretrained_dl_edge_extractor.hdl", ["background", "edge"])]:
        m = ha.read_dl_model(name)
        assert ha.get_dl_model_param(m, "type") == ["segmentation"]
        assert ha.get_dl_model_param(m, "class_ids") == [0, 1]
        assert ha.get_dl_model_param(m, "class_names") == names
        assert ha.get_dl_model_param(m, "image_dimensions") == [224, 224, 3]
        assert ha.get_dl_model_param(m, "ignore_class_ids") == []
    edge = ha.read_dl_model("pretrained_dl_edge_extractor.hdl")
    assert ha.get_dl_model_param(edge, "class_weights") == [1.0, 8.0]


@pytest.mark.parametrize("name", ["pretrained_dl_segmentation_compact.hdl", "pretrained_dl_segmentation_enhanced.hdl"])
@pytest.mark.parametrize("w,h,c", [(37, 29, 1), (33, 50, 3)])
def test_any_image_size_gives_results_of_that_size(name, w, h, c):
    m = seg_model(name, (w, h, c), ids=(0, 4, 9))
    s = random_samples(2, w, h, c, [0, 4, 9], np.random.default_rng(0))
    ha.train_dl_model_batch(m, s)
    res = ha.apply_dl_model(m, s[:1], [])[0]
    assert sorted(ha.get_dict_param(res, "keys", [])) == ["segmentation_confidence", "segmentation_image"]
    ids = ha.get_dict_object(res, "segmentation_image")
    conf = ha.get_dict_object(res, "segmentation_confidence")
    assert ids.shape == (h, w) and ids.dtype == np.uint8
    assert conf.shape == (h, w) and conf.dtype == np.float32
    allc = ha.get_dict_object(ha.apply_dl_model(m, s[:1], ["segmentation_confidences"])[0], "segmentation_confidences")
    assert allc.shape == (h, w, 3)
    np.testing.assert_allclose(allc.sum(axis=2), 1.0, atol=1e-5)
    np.testing.assert_array_equal(ids, np.array([0, 4, 9])[allc.argmax(axis=2)])
    np.testing.assert_allclose(conf, allc.max(axis=2), rtol=1e-6)


def test_requested_outputs_only():
    m = seg_model(size=(16, 16, 1))
    s = random_samples(1, 16, 16, 1, [0, 1], np.random.default_rng(1))
    r = ha.apply_dl_model(m, s, ["segmentation_image", "segmentation_confidences"])[0]
    assert sorted(ha.get_dict_param(r, "keys", [])) == ["segmentation_confidences", "segmentation_image"]
    # A layer name still gives that layer's output.
    r = ha.apply_dl_model(m, s, ["class_scores"])[0]
    assert ha.get_dict_object(r, "class_scores").shape == (16, 16, 4)


def test_class_ids_above_255_give_int4_images():
    m = seg_model(size=(12, 10, 1), ids=(0, 300))
    s = random_samples(1, 12, 10, 1, [0, 300], np.random.default_rng(2), np.int32)
    img = ha.get_dict_object(ha.apply_dl_model(m, s, [])[0], "segmentation_image")
    assert img.dtype == np.int32 and set(np.unique(img)) <= {0, 300}


def reference_loss(m, samples, class_ids, ignore, class_weights=None):
    """-(1/(N H W)) sum w log p_target on apply's probabilities, with w from the weight image, else the class
    weight w_k * K / sum(w); 0 on ignored pixels."""
    total, count = 0.0, 0
    for s, r in zip(samples, ha.apply_dl_model(m, samples, ["segmentation_confidences"])):
        p = ha.get_dict_object(r, "segmentation_confidences").astype(np.float64)
        lab = s["segmentation_image"].astype(np.int64)
        idx = np.zeros_like(lab)
        for k, cid in enumerate(class_ids):
            idx[lab == cid] = k
        if "weight_image" in s:
            w = s["weight_image"].astype(np.float64).copy()
        else:
            cw = np.ones(len(class_ids)) if class_weights is None else np.asarray(class_weights, np.float64)
            w = (cw * len(class_ids) / cw.sum())[idx]
        w[np.isin(lab, ignore)] = 0.0
        total += -(w * np.log(np.take_along_axis(p, idx[..., None], 2)[..., 0])).sum()
        count += lab.size
    return total / count


def test_loss_matches_numpy_reference_with_class_weights_and_ignore_ids():
    m = plain_model()
    ha.set_dl_model_param(m, "class_ids", [0, 2, 5])
    ha.set_dl_model_param(m, "ignore_class_ids", [9])
    ha.set_dl_model_param(m, "class_weights", [1.0, 2.0, 3.0])
    rng = np.random.default_rng(3)
    s = random_samples(2, 7, 5, 2, [0, 2, 5, 9], rng)
    ref = reference_loss(m, s, [0, 2, 5], [9], [1.0, 2.0, 3.0])
    got = ha.get_dict_tuple(ha.train_dl_model_batch(m, s), "cross_entropy")[0]
    # float32 probabilities, float64 accumulation: agreement to float32 rounding.
    assert got == pytest.approx(ref, rel=1e-5)


def test_weight_image_replaces_class_weights_and_ignore_ids_weigh_zero():
    m = plain_model()
    ha.set_dl_model_param(m, "class_ids", [0, 2, 5])
    ha.set_dl_model_param(m, "ignore_class_ids", [9])
    ha.set_dl_model_param(m, "class_weights", [5.0, 1.0, 1.0])
    rng = np.random.default_rng(4)
    s = random_samples(2, 7, 5, 2, [0, 2, 5, 9], rng)
    for x in s:
        x["weight_image"] = rng.uniform(0, 3, (5, 7)).astype(np.float32)
    ref = reference_loss(m, s, [0, 2, 5], [9])
    got = ha.get_dict_tuple(ha.train_dl_model_batch(m, s), "cross_entropy")[0]
    assert got == pytest.approx(ref, rel=1e-5)
    # Only ignored pixels: no loss at all.
    for x in s:
        x["segmentation_image"][:] = 9
    assert ha.get_dict_tuple(ha.train_dl_model_batch(m, s), "cross_entropy")[0] == 0.0


def test_real_label_images_are_accepted():
    m = plain_model()
    rng = np.random.default_rng(5)
    s = random_samples(2, 7, 5, 2, [0, 1, 2], rng, np.float32)
    ref = reference_loss(m, s, [0, 1, 2], [])
    assert ha.get_dict_tuple(ha.train_dl_model_batch(m, s), "cross_entropy")[0] == pytest.approx(ref, rel=1e-5)


def weights_of(m):
    return ha.get_dl_model_layer_weights(m, "class_scores", "weights").copy()


@pytest.mark.parametrize("change,code,needle", [
    (lambda s: s.pop("segmentation_image"), 7783, "'segmentation_image'"),
    (lambda s: s.update(segmentation_image=np.zeros((10, 12), np.uint8)), 7789, "width 12, height 10"),
    (lambda s: s.update(segmentation_image=np.zeros((20, 24, 2), np.uint8)), 7789, "2 channel"),
    (lambda s: s.update(segmentation_image=[0, 1]), 7790, "not a tuple"),
    (lambda s: s["segmentation_image"].__setitem__((3, 4), 7), 7791, "value 7 at row 3, column 4"),
    (lambda s: s.update(segmentation_image=np.full((20, 24), 0.5, np.float32)), 7791, "value 0.5"),
    (lambda s: s.update(weight_image=np.full((20, 24), np.nan, np.float32)), 7791, "'weight_image'"),
    (lambda s: s.update(weight_image=np.full((20, 24), -1, np.float32)), 7791, "'weight_image'"),
    (lambda s: s.update(weight_image=np.ones((20, 23), np.float32)), 7789, "'weight_image'"),
])
def test_bad_samples_raise_and_change_nothing(change, code, needle):
    m = seg_model()
    good = random_samples(2, 24, 20, 1, [0, 1, 2, 3], np.random.default_rng(6))
    before = weights_of(m)
    bad = [dict(good[0]), dict(good[1])]
    bad[1]["segmentation_image"] = good[1]["segmentation_image"].copy()
    change(bad[1])
    with pytest.raises(ha.HOperatorError) as e:
        ha.train_dl_model_batch(m, bad)
    assert e.value.error_code == code and needle in str(e.value) and "sample 1" in str(e.value)
    np.testing.assert_array_equal(weights_of(m), before)


def test_model_parameters_are_checked():
    m = seg_model(ids=(0, 1, 2))
    ha.set_dl_model_param(m, "ignore_class_ids", [255])
    with pytest.raises(ha.HOperatorError) as e:
        ha.set_dl_model_param(m, "class_ids", [0, 255])
    assert e.value.error_code == 1303 and "255" in str(e.value)
    with pytest.raises(ha.HOperatorError) as e:
        ha.set_dl_model_param(m, "ignore_class_ids", [1])
    assert e.value.error_code == 1303
    with pytest.raises(ha.HOperatorError) as e:
        ha.set_dl_model_param(m, "ignore_class_ids", [-1])
    assert e.value.error_code == 7793
    assert ha.get_dl_model_param(m, "class_ids") == [0, 1, 2]
    assert ha.get_dl_model_param(m, "ignore_class_ids") == [255]
    with pytest.raises(ha.HOperatorError) as e:
        ha.set_dl_model_param(m, "image_num_channels", 2)
    assert e.value.error_code == 7724


def test_a_model_without_a_per_pixel_head_cannot_become_segmentation():
    img = ha.create_dl_layer_input("image", [8, 8, 1], [], [])
    t = ha.create_dl_layer_input("t", [1, 1, 1], [], [])
    w = ha.create_dl_layer_input("w", [1, 1, 1], [], [])
    d = ha.create_dl_layer_dense(img, "d", 3, [], [])
    loss = ha.create_dl_layer_loss_cross_entropy(ha.create_dl_layer_softmax(d, "sm", [], []), t, w, "l", 1.0, [], [])
    m = ha.create_dl_model(loss)
    with pytest.raises(ha.HOperatorError) as e:
        ha.set_dl_model_param(m, "type", "segmentation")
    assert e.value.error_code == 7912
    assert ha.get_dl_model_param(m, "type") == ["generic"]


def test_model_file_keeps_type_classes_and_outputs(tmp_path):
    m = seg_model(size=(20, 18, 1), ids=(0, 3, 7))
    ha.set_dl_model_param(m, "ignore_class_ids", [255])
    ha.set_dl_model_param(m, "class_weights", [1.0, 4.0, 2.0])
    ha.set_dl_model_param(m, "class_names", ["bg", "a", "b"])
    s = random_samples(2, 20, 18, 1, [0, 3, 7, 255], np.random.default_rng(7))
    ha.train_dl_model_batch(m, s)
    path = str(tmp_path / "seg.hdl")
    ha.write_dl_model(m, path)
    m2 = ha.read_dl_model(path)
    for k in ("type", "class_ids", "class_names", "class_weights", "ignore_class_ids", "image_dimensions"):
        assert ha.get_dl_model_param(m2, k) == ha.get_dl_model_param(m, k), k
    a = ha.get_dict_object(ha.apply_dl_model(m, s, [])[0], "segmentation_confidence")
    b = ha.get_dict_object(ha.apply_dl_model(m2, s, [])[0], "segmentation_confidence")
    np.testing.assert_array_equal(a, b)
    la = ha.get_dict_tuple(ha.train_dl_model_batch(m, s), "total_loss")
    lb = ha.get_dict_tuple(ha.train_dl_model_batch(m2, s), "total_loss")
    assert la == lb  # training continues bit-exactly from the file


def scenes(gen, n, size, rng):
    out = []
    for _ in range(n):
        img, lab = gen(rng, size)
        out.append({"image": img.astype(np.float32)[..., None] - 127.0, "segmentation_image": lab})
    return out


def train_on_fresh_scenes(m, gen, epochs, per_epoch, size, batch, seed):
    """Adam, a new set of generated scenes every epoch (as augmentation would give), the last epoch at a
    tenth of the learning rate."""
    rng = np.random.default_rng(seed)
    ha.set_dl_model_param(m, "solver_type", "adam")
    ha.set_dl_model_param(m, "learning_rate", 0.002)
    for ep in range(epochs):
        if ep == epochs - 1:
            ha.set_dl_model_param(m, "learning_rate", 0.0002)
        data = scenes(gen, per_epoch, size, rng)
        for k in range(0, per_epoch - batch + 1, batch):
            ha.train_dl_model_batch(m, data[k:k + batch])


def predict_confusion(m, data, num_classes, batch):
    conf = np.zeros((num_classes, num_classes), np.int64)
    for k in range(0, len(data), batch):
        part = data[k:k + batch]
        for s, r in zip(part, ha.apply_dl_model(m, part, [])):
            conf += confusion(ha.get_dict_object(r, "segmentation_image"), s["segmentation_image"], num_classes)
    return conf


def test_compact_model_learns_generated_scenes():
    """Rings, plates and brackets on textured surfaces (4 classes with background), 48 x 48: mean IoU on 80
    held-out scenes >= 0.85 (issue 5). About 25 s on 2 cores."""
    size = 48
    m = seg_model(size=(size, size, 1), ids=(0, 1, 2, 3), batch=8)
    train_on_fresh_scenes(m, make_segmentation_scene, epochs=10, per_epoch=240, size=size, batch=8, seed=11)
    test = scenes(make_segmentation_scene, 80, size, np.random.default_rng(999))
    iou = iou_per_class(predict_confusion(m, test, 4, 8))
    print("segmentation IoU per class", np.round(iou, 3), "mean", np.nanmean(iou))
    assert np.nanmean(iou) >= 0.85, iou


def test_edge_extractor_learns_thin_scratches():
    """One-pixel-wide lines and arcs on textured surfaces; the F-score of the edge class (pixel-exact, no
    tolerance) on 40 held-out images."""
    size = 48
    m = seg_model("pretrained_dl_edge_extractor.hdl", size=(size, size, 1), ids=(0, 1), batch=8)
    train_on_fresh_scenes(m, make_edge_scene, epochs=5, per_epoch=240, size=size, batch=8, seed=12)
    conf = predict_confusion(m, scenes(make_edge_scene, 40, size, np.random.default_rng(998)), 2, 8)
    precision = conf[1, 1] / conf[1].sum()
    recall = conf[1, 1] / conf[:, 1].sum()
    f = 2 * precision * recall / (precision + recall)
    print(f"edge precision {precision:.3f} recall {recall:.3f} F {f:.3f}")
    assert f >= 0.8, (precision, recall)


def test_workflow_read_preprocess_train_evaluate(tmp_path):
    """read_dl_dataset_segmentation -> split -> preprocess (weight images) -> train_dl_model (validation
    mean_iou, 'best' snapshot) -> evaluate_dl_model, whose measures match a numpy reference on the test split."""
    from opendl.images import write_image
    rng = np.random.default_rng(21)
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    for i in range(40):
        img, lab = make_segmentation_scene(rng, 32)
        lab[:2, :2] = 255  # a corner nobody labelled
        write_image(img, "png", 0, str(tmp_path / "img" / f"s{i:02d}.png"))
        write_image(lab, "png", 0, str(tmp_path / "lab" / f"s{i:02d}.png"))
    ds = ha.read_dl_dataset_segmentation(str(tmp_path / "img"), str(tmp_path / "lab"), ["bg", "ring", "plate", "bracket"],
                                         [0, 1, 2, 3], [], [], [])
    ha.split_dl_dataset(ds, 60, 20, [])
    m = seg_model(size=(32, 32, 1), ids=(0, 1, 2, 3), batch=4)
    ha.set_dl_model_param(m, "ignore_class_ids", [255])
    ha.set_dl_model_param(m, "solver_type", "adam")
    pp = ha.create_dl_preprocess_param_from_model(m, "none", "full_domain", [], [], [])
    ds = ha.read_dict(ha.preprocess_dl_dataset(ds, str(tmp_path / "prep"), pp, {"overwrite_files": "true"}), [], [])
    s0 = ha.read_dl_samples(ds, [0])[0]
    assert ha.get_dict_object(s0, "weight_image")[:2, :2].max() == 0  # ignored pixels weigh nothing
    tp = ha.create_dl_train_param(m, 2, 1, "false", 7, ["serialize"],
                                  [{"type": "best", "basename": str(tmp_path / "best")}])
    assert ha.get_dict_tuple(tp, "evaluation_comparison_keys") == ["mean_iou"]
    _, _, evals = ha.train_dl_model(ds, m, tp, 0)
    assert "mean_iou" in ha.as_python_dict(evals[-1])["result"][0]
    assert (tmp_path / "best.hdl").exists()
    result, params = ha.evaluate_dl_model(ds, m, "split", "test", {"measures": "all"})
    r = ha.as_python_dict(result)
    assert ha.get_dict_tuple(params, "ignore_class_ids") == [255]
    # Reference: apply on the test samples, confusion over pixels whose ground truth is not ignored.
    samples = ha.as_python_dict(ds)["samples"]
    test_idx = [i for i, s in enumerate(samples) if s["split"] == ["test"]]
    conf = np.zeros((4, 4), np.int64)
    for i in test_idx:
        s = ha.read_dl_samples(ds, [i])[0]
        gt = ha.get_dict_object(s, "segmentation_image").astype(np.int64)
        pred = ha.get_dict_object(ha.apply_dl_model(m, [s], [])[0], "segmentation_image").astype(np.int64)
        keep = gt != 255
        conf += confusion(pred[keep], gt[keep], 4)
    iou = iou_per_class(conf)
    np.testing.assert_array_equal(r["pixel_confusion_matrix"], conf)
    assert r["mean_iou"][0] == pytest.approx(np.nanmean(iou))
    assert r["pixel_accuracy"][0] == pytest.approx(np.trace(conf) / conf.sum())
    np.testing.assert_allclose(r["class_iou"], np.where(conf.sum(0) > 0, iou, -1.0))
    gt_share = conf.sum(0) / conf.sum()
    assert r["frequency_weighted_iou"][0] == pytest.approx(np.nansum(gt_share * iou))
