"""The generic detection layers (create_dl_layer_anchors, create_dl_layer_box_targets, create_dl_layer_box_proposals)
in a small detector built layer by layer: anchors against the documented grid, targets and proposals against
numpy brute-force references of the documented rules (cpp/src/layers/box_layers.cpp), training end to end,
files, and bad input raising HALCON errors that leave the model unchanged."""

import numpy as np
import pytest

import opendl as ha
from opendl.errors import HOperatorError

K = 2          # classes
G = 6          # ground-truth records per image (allow_smaller_tuple pads the rest with zeros)
RATIOS = [1.0, 2.0]
SUB = 2
A = len(RATIOS) * SUB
TARGETS = ["ct", "cw", "bt", "bw", "nfg", "idx"]


def build(size=32, gen_targets=((), ()), gen_props=((), ()), angles=(), anchor_gen=((), ()), deltas=True):
    img = ha.create_dl_layer_input("image", [size, size, 1], [], [])
    h = ha.create_dl_layer_convolution(img, "c1", 3, 1, 2, 8, 1, "half_kernel_size", "relu", [], [])
    f = ha.create_dl_layer_convolution(h, "c2", 3, 1, 2, 16, 1, "half_kernel_size", "relu", [], [])
    anc = ha.create_dl_layer_anchors(f, img, "anchors", RATIOS, SUB, list(angles), *anchor_gen)
    P = 5 if angles else 4
    D = 4 if not angles else 6
    n = A * max(1, len(angles))
    gt = ha.create_dl_layer_input("gt", [P + 1, G, 1], ["allow_smaller_tuple"], ["true"])
    cls = ha.create_dl_layer_convolution(f, "cls", 3, 1, 1, n * K, 1, "half_kernel_size", "none", [], [])
    box = ha.create_dl_layer_convolution(f, "box", 3, 1, 1, n * D, 1, "half_kernel_size", "none", [], [])
    ct, cw, bt, bw, nfg, idx, mask = ha.create_dl_layer_box_targets(
        anc, gt, [], TARGETS, "anchors", ["cls_target", "cls_weight", "box_target", "box_weight", "num_fg_instances",
                                          "assigned_idxs"], K, *gen_targets)
    assert mask == [] and len(ct) == 1
    lc = ha.create_dl_layer_loss_focal(cls, ct, cw, nfg, "loss_cls", 1.0, 2.0, [0.25], "focal_binary", [], [])
    lb = ha.create_dl_layer_loss_huber(box, bt, bw, nfg, "loss_box", 1.0, 0.11, [], [])
    props = ha.create_dl_layer_box_proposals(cls, box if deltas else [], anc, img, "props", *gen_props)
    m = ha.create_dl_model([lc, lb, props, idx])
    ha.set_dl_model_param(m, "batch_size", 2)
    return m


def square_scene(rng, size=32):
    """A dark image with 1-3 bright squares (class 0) or wide bars (class 1), and their boxes as gt records."""
    img = rng.normal(0.0, 0.05, (size, size, 1)).astype(np.float32)
    recs = []
    for _ in range(rng.integers(1, 4)):
        c = int(rng.integers(K))
        h = int(rng.integers(6, 12))
        w = h if c == 0 else 2 * h
        w = min(w, size - 2)
        r0, c0 = int(rng.integers(0, size - h)), int(rng.integers(0, size - w))
        img[r0:r0 + h, c0:c0 + w] = 1.0 if c == 0 else -1.0
        recs.append([r0 - 0.5, c0 - 0.5, r0 + h - 0.5, c0 + w - 0.5, c])
    return img, recs


def sample(img, recs):
    return {"image": img, "gt": [float(v) for r in recs for v in r]}


def reference_anchors(level, mh, mw, ih, iw, ratios=RATIOS, sub=SUB, scale=4.0):
    out = []
    for i in range(mh):
        for j in range(mw):
            r, c = (i + 0.5) * ih / mh, (j + 0.5) * iw / mw
            for k in range(sub):
                s = scale * 2 ** level * 2 ** (k / sub)
                for q in ratios:
                    hh, ww = s * np.sqrt(q), s / np.sqrt(q)
                    out.append([r - hh / 2, c - ww / 2, r + hh / 2, c + ww / 2])
    return np.asarray(out)


def get(res, key):
    return np.asarray(ha.get_dict_object(res, key), np.float64)


@pytest.mark.parametrize("size, level, mh", [(32, 2, 8), (30, 2, 8), (27, 2, 7)])
def test_anchors_follow_the_documented_grid_and_sizes(size, level, mh):
    m = build(size)
    res = ha.apply_dl_model(m, [{"image": np.zeros((size, size, 1), np.float32)}], ["anchors"])[0]
    got = get(res, "anchors")                       # (H, W, A * 4): anchor a at depth a * 4 + p
    assert got.shape == (mh, mh, A * 4)
    ref = reference_anchors(level, mh, mh, size, size)
    np.testing.assert_allclose(got.reshape(-1, 4), ref, rtol=1e-6, atol=1e-5)


def test_rectangle2_anchors_take_length_ratios_and_angles():
    m = build(32, angles=(0.0, np.pi / 4, 4.0), anchor_gen=(["scale"], [3.0]))
    res = ha.apply_dl_model(m, [{"image": np.zeros((32, 32, 1), np.float32)}], ["anchors"])[0]
    got = get(res, "anchors").reshape(-1, 5)         # (row, col, phi, length1, length2)
    angles = [0.0, np.pi / 4, 4.0 - 2 * np.pi]     # headings in (-pi, pi]
    ref = []
    for i in range(8):
        for j in range(8):
            for k in range(SUB):
                s = 3.0 * 4 * 2 ** (k / SUB)
                for q in RATIOS:                   # length1 / length2
                    for phi in angles:
                        ref.append([(i + 0.5) * 4, (j + 0.5) * 4, phi, s * np.sqrt(q) / 2, s / np.sqrt(q) / 2])
    np.testing.assert_allclose(got, np.asarray(ref), rtol=1e-6, atol=1e-5)


def iou_matrix(a, b):
    """IoU of rectangle1 boxes a (N, 4) and b (M, 4), in the operation order of the C++ code."""
    h = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    w = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = h * w
    u = ((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]))[:, None] + ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))[None] - inter
    return np.where((h > 0) & (w > 0) & (u > 0), inter / np.where(u > 0, u, 1), 0.0)


def reference_targets(anchors, recs, fg=0.5, bg=0.4, low=True):
    """Assignment and targets by the documented rules; recs as fed (float32), padding records skipped."""
    recs = np.asarray(recs, np.float32).astype(np.float64).reshape(-1, 5)
    valid = [i for i, r in enumerate(recs) if r[4] >= 0 and np.any(r != 0)]
    gt = recs[valid, :4]
    q = iou_matrix(anchors, gt) if len(valid) else np.zeros((len(anchors), 0))
    best = q.max(axis=1) if len(valid) else np.zeros(len(anchors))
    match = np.where(best >= fg, q.argmax(axis=1) if len(valid) else -1, np.where(best >= bg, -2, -1))
    if low:
        for b in range(len(valid)):
            top = q[:, b].max()
            if top > 0:
                match[q[:, b] == top] = b
    n = len(anchors)
    ct, cw = np.zeros((n, K)), np.ones((n, K))
    bt, bw = np.zeros((n, 4)), np.zeros((n, 4))
    idx = np.full(n, -1.0)
    for i, mi in enumerate(match):
        if mi == -2:
            cw[i] = 0
            idx[i] = -2
        elif mi >= 0:
            g = gt[mi]
            ct[i, int(recs[valid[mi], 4])] = 1
            an = anchors[i]
            ha_, wa = an[2] - an[0], an[3] - an[1]
            bt[i] = [((g[0] + g[2]) / 2 - (an[0] + an[2]) / 2) / ha_, ((g[1] + g[3]) / 2 - (an[1] + an[3]) / 2) / wa,
                     np.log((g[2] - g[0]) / ha_), np.log((g[3] - g[1]) / wa)]
            bw[i] = 1
            idx[i] = valid[mi]
    return ct, cw, bt, bw, idx


@pytest.mark.parametrize("fg, bg, low", [(0.5, 0.4, "true"), (0.6, 0.3, "false")])
def test_box_targets_match_a_brute_force_reference(fg, bg, low):
    m = build(32, gen_targets=(["fg_iou_threshold", "bg_iou_threshold", "low_quality_matches"], [fg, bg, low]))
    rng = np.random.default_rng(1)
    for t in range(4):
        img, recs = square_scene(rng)
        if t == 1:
            recs = recs + [[0.0, 0.0, 0.0, 0.0, 0]]               # explicit zero record: padding
        if t == 2:
            recs = recs + [[3.0, 3.0, 20.0, 20.0, -1]]            # negative class: padding
        if t == 3:
            recs = []                                              # an image without objects
        res = ha.apply_dl_model(m, [sample(img, recs)], TARGETS + ["anchors"])[0]
        anchors = get(res, "anchors").reshape(-1, 4)
        ct, cw, bt, bw, idx = reference_targets(anchors, recs, fg, bg, low == "true")
        # outputs (H, W, A * X): box a of position p at depth a * X + x, positions row-major
        np.testing.assert_array_equal(get(res, "ct").reshape(-1, K), ct)
        np.testing.assert_array_equal(get(res, "cw").reshape(-1, K), cw)
        np.testing.assert_array_equal(get(res, "bw").reshape(-1, 4), bw)
        # float32 outputs of float64 arithmetic on the same float32 inputs
        np.testing.assert_allclose(get(res, "bt").reshape(-1, 4), bt, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(get(res, "idx").reshape(-1), idx)
        assert get(res, "nfg").item() == np.sum(idx >= 0)
        if recs and low == "true":   # every box has its best anchors
            assert np.sum(idx >= 0) > 0


def test_box_targets_of_a_batch_do_not_depend_on_the_thread_count():
    """The assignment runs in parallel over the boxes of all images (the best IoU of each ground-truth record is a
    maximum, every output element has one writer): 1 and 2 threads give identical targets for a batch of 4 images,
    each image's as when it is alone in the batch."""
    m = build(32)
    ha.set_dl_model_param(m, "batch_size", 4)
    rng = np.random.default_rng(11)
    scenes = [square_scene(rng) for _ in range(4)]
    batch = [sample(img, recs) for img, recs in scenes]
    threads = ha.get_system("thread_num")
    out = {}
    try:
        for n in (1, 2):
            ha.set_system("thread_num", n)
            out[n] = [{k: get(r, k) for k in TARGETS} for r in ha.apply_dl_model(m, batch, TARGETS)]
    finally:
        ha.set_system("thread_num", threads[0] if isinstance(threads, list) else threads)
    for a, b in zip(out[1], out[2]):
        for k in TARGETS:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    for i, (img, recs) in enumerate(scenes):
        alone = ha.apply_dl_model(m, [sample(img, recs)], TARGETS)[0]
        for k in TARGETS:
            np.testing.assert_array_equal(get(alone, k), out[2][i][k], err_msg=k)


def test_training_steps_skip_the_proposals_and_their_activations_are_then_refused():
    """A training step runs the layers the losses depend on: the box proposals (an inference output) are not
    computed, so reading their activations after the step names the layer and the remedy; after an
    apply_dl_model call that returns them they are readable again, and the losses' inputs after training."""
    m = build(32)
    img, recs = square_scene(np.random.default_rng(5))
    batch = [sample(img, recs), sample(img, [])]
    ha.apply_dl_model(m, batch, ["props"])
    assert ha.get_dl_model_layer_activations(m, "props").shape[0] == 2
    ha.train_dl_model_batch(m, batch)
    with pytest.raises(HOperatorError) as e:
        ha.get_dl_model_layer_activations(m, "props")
    assert e.value.error_code == 7788 and "'props'" in str(e.value) and "apply_dl_model" in str(e.value)
    assert ha.get_dl_model_layer_activations(m, "cls").shape[0] == 2
    ha.apply_dl_model(m, batch, ["props"])
    assert ha.get_dl_model_layer_activations(m, "props").shape[0] == 2
    with pytest.raises(HOperatorError) as e:      # not needed for the proposals: not computed by that call
        ha.get_dl_model_layer_activations(m, "nfg")
    assert e.value.error_code == 7788


def greedy_nms(boxes, scores, idx, thr):
    idx = sorted(idx, key=lambda i: -scores[i])
    keep = []
    for i in idx:
        if all(iou_matrix(boxes[[i]], boxes[[j]])[0, 0] <= thr for j in keep):
            keep.append(i)
    return keep


def reference_proposals(res, anchors, deltas, min_conf, top, max_overlap, max_overlap_ca, max_num):
    """The documented proposal rules in numpy for one image of one level: the candidates >= min_conf by descending
    score (a stable sort: equal scores in index order (position * A + anchor) * K + class), the first `top` of them
    decoded and clipped, greedy NMS per class, then class-agnostic, the first max_num by descending score."""
    logits = get(res, "cls").reshape(-1, K)
    d = get(res, "box").reshape(-1, 4) if deltas else None
    lim = np.log(1000 / 16)
    cand = [(a, k) for a in range(len(anchors)) for k in range(K) if 1 / (1 + np.exp(-logits[a, k])) >= min_conf]
    cand = sorted(cand, key=lambda q: -logits[q])[:top]
    boxes, scores, classes = [], [], []
    for a, k in cand:
        an = anchors[a]
        if deltas:
            ha_, wa = an[2] - an[0], an[3] - an[1]
            r = (an[0] + an[2]) / 2 + d[a, 0] * ha_
            c = (an[1] + an[3]) / 2 + d[a, 1] * wa
            hh, ww = ha_ * np.exp(min(d[a, 2], lim)), wa * np.exp(min(d[a, 3], lim))
            b = [r - hh / 2, c - ww / 2, r + hh / 2, c + ww / 2]
        else:
            b = list(an)
        b = np.clip(b, -0.5, 31.5)
        if b[2] > b[0] and b[3] > b[1]:
            boxes.append(b), scores.append(1 / (1 + np.exp(-logits[a, k]))), classes.append(k)
    boxes, scores = np.asarray(boxes).reshape(-1, 4), np.asarray(scores)
    kept = sorted(i for k in range(K) for i in greedy_nms(boxes, scores, [i for i in range(len(boxes))
                                                                          if classes[i] == k], max_overlap))
    if max_overlap_ca < 1:
        kept = greedy_nms(boxes, scores, kept, max_overlap_ca)
    kept = sorted(kept, key=lambda i: -scores[i])[:max_num]
    return boxes[kept], scores[kept], np.asarray(classes, int)[kept]


@pytest.mark.parametrize("deltas, top, ties", [(True, 1000, False), (False, 1000, False), (True, 9, False),
                                               (True, 1000, True)])
def test_box_proposals_match_a_brute_force_reference(deltas, top, ties):
    """A batch of three images against the reference, also with max_num_pre_nms cutting the candidates (top 9) and
    with every class score equal (ties: the order of the documented index decides selection and suppression)."""
    names = ["min_confidence", "max_overlap", "max_overlap_class_agnostic", "max_num_detections", "max_num_pre_nms"]
    values = [0.45, 0.4, 0.7, 12, top]
    m = build(32, gen_props=(names, values), deltas=deltas)
    ha.set_dl_model_param(m, "batch_size", 3)
    if ties:   # logits = bias 0.25 everywhere
        w = ha.get_dl_model_layer_weights(m, "cls", "weights")
        ha.set_dl_model_layer_weights(np.zeros_like(w), m, "cls", "weights")
        b = ha.get_dl_model_layer_weights(m, "cls", "bias")
        ha.set_dl_model_layer_weights(np.full_like(b, 0.25), m, "cls", "bias")
    rng = np.random.default_rng(2)
    images = [square_scene(rng)[0] for _ in range(3)]
    results = ha.apply_dl_model(m, [{"image": img} for img in images],
                                ["props", "cls", "anchors"] + (["box"] if deltas else []))
    anchors = get(results[0], "anchors").reshape(-1, 4)   # the same for all images (batch 1): in the first result
    for res in results:
        boxes, scores, classes = reference_proposals(res, anchors, deltas, 0.45, top, 0.4, 0.7, 12)
        rec = get(res, "props")                       # (P + 2, 1, records)
        assert rec.shape == (6, 1, 12)
        rec = rec[:, 0, :].T
        n = len(boxes)
        assert n > 0
        np.testing.assert_allclose(rec[:n, :4], boxes, rtol=1e-6, atol=1e-5)
        np.testing.assert_array_equal(rec[:n, 4], classes)
        np.testing.assert_allclose(rec[:n, 5], scores, rtol=1e-6)
        assert np.all(rec[n:, :4] == 0) and np.all(rec[n:, 4] == -1) and np.all(rec[n:, 5] == 0)


def test_box_proposals_of_a_batch_do_not_depend_on_the_thread_count():
    """The proposals run in parallel over the images: 1 and 2 threads give identical records for a batch of 4,
    each image's as when it is alone in the batch."""
    m = build(32, gen_props=(["min_confidence", "max_overlap_class_agnostic"], [0.4, 0.6]))
    ha.set_dl_model_param(m, "batch_size", 4)
    rng = np.random.default_rng(21)
    batch = [{"image": square_scene(rng)[0]} for _ in range(4)]
    threads = ha.get_system("thread_num")
    out = {}
    try:
        for n in (1, 2):
            ha.set_system("thread_num", n)
            out[n] = [get(r, "props") for r in ha.apply_dl_model(m, batch, ["props"])]
    finally:
        ha.set_system("thread_num", threads[0] if isinstance(threads, list) else threads)
    for i, s in enumerate(batch):
        np.testing.assert_array_equal(out[1][i], out[2][i])
        np.testing.assert_array_equal(get(ha.apply_dl_model(m, [s], ["props"])[0], "props"), out[2][i])
    assert sum(np.sum(r[4] >= 0) for r in out[2]) > 4


def detections(m, img):
    rec = get(ha.apply_dl_model(m, [{"image": img}], ["props"])[0], "props")[:, 0, :].T
    return rec[rec[:, 4] >= 0]


def test_a_detector_built_from_the_generic_layers_learns(tmp_path):
    m = build(32, gen_props=(["min_confidence"], [0.3]))
    ha.set_dl_model_param(m, "batch_size", 8)
    ha.set_dl_model_param(m, "learning_rate", 0.01)
    ha.set_dl_model_param(m, "momentum", 0.9)
    rng = np.random.default_rng(3)
    data = [square_scene(rng) for _ in range(64)]
    first = last = None
    for it in range(150):
        batch = [sample(*data[(it * 8 + j) % len(data)]) for j in range(8)]
        r = ha.train_dl_model_batch(m, batch)
        loss = ha.get_dict_tuple(r, "total_loss")[0]
        first = loss if first is None else first
        last = loss
    assert last < 0.5 * first, (first, last)
    # Held-out scenes: most objects are found at IoU >= 0.5 with the right class.
    found = total = 0
    for i in range(20):
        img, recs = square_scene(np.random.default_rng(100 + i))
        det = detections(m, img)
        for r in recs:
            total += 1
            ok = det[det[:, 4] == r[4]]
            found += bool(len(ok)) and iou_matrix(np.asarray([r[:4]], float), ok[:, :4]).max() >= 0.5
    print(f"total_loss {first:.3f} -> {last:.3f}, found {found} of {total}")
    assert found >= 0.7 * total, (found, total)
    # Files keep the layers and their settings.
    path = str(tmp_path / "generic.hdl")
    ha.write_dl_model(m, path)
    m2 = ha.read_dl_model(path)
    img, _ = square_scene(np.random.default_rng(7))
    np.testing.assert_array_equal(detections(m2, img), detections(m, img))
    assert ha.get_dl_model_layer_param(m2, "props", "min_confidence") == [0.3]


def weights(m):
    return {n: ha.get_dl_model_layer_weights(m, n, "weights").copy() for n in ("c1", "c2", "cls", "box")}


@pytest.mark.parametrize("recs, word", [
    ([[2.0, 2.0, 10.0, 10.0, 2]], "class"),                  # class index >= num_classes
    ([[2.0, 2.0, 10.0, 10.0, 0.5]], "class"),                # not an integer class
    ([[2.0, 2.0, 2.0, 10.0, 1]], "area"),                    # zero height, not padding
])
def test_bad_ground_truth_raises_and_leaves_the_model_unchanged(recs, word):
    m = build(32)
    before = weights(m)
    img = np.zeros((32, 32, 1), np.float32)
    with pytest.raises(HOperatorError) as e:
        ha.train_dl_model_batch(m, [sample(img, recs), sample(img, [])])
    assert e.value.error_code == 7791 and word in str(e.value)
    assert "record 0" in str(e.value)
    after = weights(m)
    for k in before:
        np.testing.assert_array_equal(before[k], after[k])


def test_layer_construction_errors_name_the_fault():
    img = ha.create_dl_layer_input("image", [30, 30, 1], [], [])
    f = ha.create_dl_layer_pooling(img, "pool", 3, 3, "none", "maximum", [], [])     # 10 x 10: not a power of two
    with pytest.raises(HOperatorError) as e:
        ha.create_dl_layer_anchors(f, img, "anchors", [1.0], 1, [], [], [])
    assert e.value.error_code == 7735 and "power of two" in str(e.value)
    f = ha.create_dl_layer_convolution(img, "c", 3, 1, 2, 4, 1, "half_kernel_size", "none", [], [])
    anc = ha.create_dl_layer_anchors(f, img, "anchors", [1.0], 1, [], [], [])
    gt = ha.create_dl_layer_input("gt", [5, 4, 1], [], [])
    modes = ["cls_target", "num_fg_instances"]
    with pytest.raises(HOperatorError) as e:
        ha.create_dl_layer_box_targets(anc, gt, [], ["a"], "anchors", modes, 2, [], [])
    assert e.value.error_code == 1404 and "layer_names" in str(e.value)
    with pytest.raises(HOperatorError) as e:
        ha.create_dl_layer_box_targets(anc, gt, [], ["a"], "anchors", ["mask_weight"], 2, [], [])
    assert e.value.error_code == 1302 and "mask_weight" in str(e.value)
    with pytest.raises(HOperatorError) as e:
        ha.create_dl_layer_box_targets(anc, gt, [], ["a", "b"], "box_proposals", modes, 2, [], [])
    assert "input_mode" in str(e.value)
    with pytest.raises(HOperatorError) as e:
        ha.create_dl_layer_box_targets(f, gt, [], ["a", "b"], "anchors", modes, 2, [], [])
    assert e.value.error_code == 7735 and "neither an anchors nor a box_proposals" in str(e.value)
    bad_gt = ha.create_dl_layer_input("gt6", [6, 4, 1], [], [])
    with pytest.raises(HOperatorError) as e:
        ha.create_dl_layer_box_targets(anc, bad_gt, [], ["a", "b"], "anchors", modes, 2, [], [])
    assert e.value.error_code == 7735 and "width 5" in str(e.value)
    cls = ha.create_dl_layer_convolution(f, "cls", 3, 1, 1, 3, 1, "half_kernel_size", "none", [], [])
    with pytest.raises(HOperatorError) as e:
        ha.create_dl_layer_box_proposals([cls, cls], [], [anc], img, "p", [], [])
    assert e.value.error_code == 1401
    box = ha.create_dl_layer_convolution(f, "box", 3, 1, 1, 5, 1, "half_kernel_size", "none", [], [])
    with pytest.raises(HOperatorError) as e:
        ha.create_dl_layer_box_proposals(cls, box, anc, img, "p", [], [])
    assert e.value.error_code == 7735 and "box deltas" in str(e.value)


def test_proposals_refuse_levels_with_one_box_set_and_per_image_boxes_mixed():
    # A second-stage proposals layer may read fixed anchors (one set of boxes for the batch) or a first stage's
    # proposals (one set per image), but not both across its levels: the boxes of level 0 would be taken as one
    # set while level 1's are per image. At batch 1 the two look alike (batch 1 each), so the layer is built;
    # a batch size above 1 must then be refused with 7735 naming the layer and the shape, the model staying at
    # its batch size and still applicable.
    img = ha.create_dl_layer_input("image", [32, 32, 1], [], [])
    f = ha.create_dl_layer_convolution(img, "c", 3, 1, 4, 8, 1, "half_kernel_size", "relu", [], [])
    anc = ha.create_dl_layer_anchors(f, img, "anchors", RATIOS, SUB, [], [], [])
    cls = ha.create_dl_layer_convolution(f, "cls", 3, 1, 1, A * K, 1, "half_kernel_size", "none", [], [])
    box = ha.create_dl_layer_convolution(f, "box", 3, 1, 1, A * 4, 1, "half_kernel_size", "none", [], [])
    first = ha.create_dl_layer_box_proposals(cls, box, anc, img, "first", ["max_num_detections"], [5])
    cls2 = ha.create_dl_layer_dense(f, "cls2", 5 * K, [], [])
    box2 = ha.create_dl_layer_dense(f, "box2", 5 * 4, [], [])
    second = ha.create_dl_layer_box_proposals([cls, cls2], [box, box2], [anc, first], img, "second", [], [])
    m = ha.create_dl_model([second])
    batch = [{"image": np.zeros((32, 32, 1), np.float32)}]
    ha.apply_dl_model(m, batch, ["second"])
    with pytest.raises(HOperatorError) as e:
        ha.set_dl_model_param(m, "batch_size", 2)
    assert e.value.error_code == 7735
    assert "'second'" in str(e.value) and "one set of boxes or one per image" in str(e.value)
    assert ha.get_dl_model_param(m, "batch_size") == [1]
    ha.apply_dl_model(m, batch, ["second"])


def test_single_level_variant_and_generic_parameter_routing():
    img = ha.create_dl_layer_input("image", [32, 32, 1], [], [])
    f = ha.create_dl_layer_convolution(img, "c", 3, 1, 4, 4, 1, "half_kernel_size", "none", [], [])
    anc = ha.create_dl_layer_anchors(f, img, "anchors", [1.0], 1, [0.0, 1.0], [], [])      # rectangle2
    gt = ha.create_dl_layer_input("gt", [6, 4, 1], ["allow_smaller_tuple"], ["true"])
    modes = ["box_target", "num_fg_instances"]
    out = ha.create_dl_layer_box_targets_s(anc, gt, [], ["t", "n"], "anchors", modes, 3,
                                           ["class_ids_no_orientation", "is_inference_output"], [2, "true"])
    ct, cw, bt, bw, nfg, idx, mask = out
    assert ct == cw == bw == idx == mask == [] and bt is not None and nfg is not None
    assert ha.get_dl_layer_param(bt, "is_inference_output") == ["true"]
    m = ha.create_dl_model([bt, nfg])
    assert ha.get_dl_model_layer_param(m, "t_assignment", "class_ids_no_orientation") == [2]
    # A box of class 2 (no orientation) is encoded in the form nearest each anchor: a turned copy of an
    # anchor-sized box gets the same targets as the anchor's own form.
    res = ha.apply_dl_model(m, [{"image": np.zeros((32, 32, 1), np.float32),
                                 "gt": [14.0, 14.0, np.pi / 2, 8.0, 8.0, 2]}], ["t", "n"])[0]
    bt6 = get(res, "t").reshape(-1, 6)
    fg = np.any(bt6 != 0, axis=1)
    assert get(res, "n").item() == fg.sum() > 0
    # ignore_direction false: 6 deltas, the last two (sin, cos) of the angle difference, which for the
    # nearest form lies within +-pi/4.
    assert np.all(bt6[fg, 5] >= np.cos(np.pi / 4) - 1e-6)
