"""Oriented-box detection (create_dl_model_detection with instance_type 'rectangle2'): learning boxes and
headings on held-out generated scenes, the exact oriented IoU against a numpy polygon-clipping reference and
a rasterised area, decoding and NMS against a brute-force numpy reference built from the documented anchors
and encoding, ignore_direction, class_ids_no_orientation, files, and bad input leaving the model unchanged."""

import numpy as np
import pytest

import opendl as ha
from opendl import _core
from opendl.errors import HOperatorError
from detection_helpers import KEYS2, detections, iou2, oriented_ap, oriented_scene, samples, train_detector

PI = np.pi
ANGLES = [0.0, PI / 4, PI / 2, -PI / 4]
RESULT_KEYS = KEYS2 + ("bbox_class_id", "bbox_confidence")


def make_model(**param):
    p = {"image_dimensions": [64, 64, 1], "class_ids": [1, 2], "class_names": ["thin", "thick"], "capacity": "low",
         "instance_type": "rectangle2", "anchor_angles": ANGLES, "anchor_aspect_ratios": [0.25, 0.6],
         "anchor_num_subscales": 2, "min_level": 2, "max_level": 3}
    p.update(param)
    return ha.create_dl_model_detection("pretrained_dl_classifier_compact.hdl", 2, p)


@pytest.fixture(scope="module")
def trained():
    """A low-capacity rectangle2 detector trained for 9 passes over 400 generated scenes (about 35 s)."""
    rng = np.random.default_rng(0)
    return train_detector(make_model(), [oriented_scene(rng) for _ in range(400)])


def test_detector_learns_oriented_boxes_and_headings(trained):
    test = [oriented_scene(np.random.default_rng(5000 + i)) for i in range(64)]
    ha.set_dl_model_param(trained, "min_confidence", 0.05)
    dets = detections(trained, test, RESULT_KEYS)
    truths = [b for _, b in test]
    ap50, errors = zip(*(oriented_ap(dets, truths, c) for c in (1, 2)))
    map50 = float(np.mean(ap50))
    map_coco = float(np.mean([oriented_ap(dets, truths, c, t)[0] for c in (1, 2) for t in np.arange(0.5, 0.96, 0.05)]))
    heading = np.degrees(np.concatenate(errors))
    print(f"rectangle2 mAP@0.5 {map50:.3f}  mAP@[0.5:0.95] {map_coco:.3f}  heading error of true positives: "
          f"mean {heading.mean():.1f} deg, median {np.median(heading):.1f} deg")
    assert map50 >= 0.8, (ap50, map_coco)
    # the heading (phi over the full circle, not modulo pi) comes from the bright head of each bar
    assert heading.mean() <= 15.0 and np.median(heading) <= 10.0, heading
    for d in dets:
        assert all(-PI < p <= PI for p in d["bbox_phi"])
        assert all(x > 0 for x in d["bbox_length1"] + d["bbox_length2"])


def rasterised_iou(a, b, step=0.02):
    """IoU by counting the centres of a fine grid of cells that fall in each rectangle."""
    def inside(box, y, x):
        r, c, phi, l1, l2 = box
        u = -(y - r) * np.sin(phi) + (x - c) * np.cos(phi)
        v = (y - r) * np.cos(phi) + (x - c) * np.sin(phi)
        return (np.abs(u) <= l1) & (np.abs(v) <= l2)
    ext = max(np.hypot(a[3], a[4]), np.hypot(b[3], b[4]))
    lo_y, hi_y = min(a[0], b[0]) - ext, max(a[0], b[0]) + ext
    lo_x, hi_x = min(a[1], b[1]) - ext, max(a[1], b[1]) + ext
    y, x = np.mgrid[lo_y + step / 2:hi_y:step, lo_x + step / 2:hi_x:step]
    ia, ib = inside(a, y, x), inside(b, y, x)
    return (ia & ib).sum() / (ia | ib).sum()


def test_oriented_iou_matches_polygon_and_raster_references():
    rng = np.random.default_rng(1)
    for _ in range(40):
        a = [rng.uniform(0, 10), rng.uniform(0, 10), rng.uniform(-PI, PI), rng.uniform(1, 6), rng.uniform(1, 6)]
        b = [a[0] + rng.normal(0, 3), a[1] + rng.normal(0, 3), rng.uniform(-PI, PI), rng.uniform(1, 6),
             rng.uniform(1, 6)]
        got = _core._box_iou_rectangle2(a, b)
        # polygon clipping in float64: the same area up to rounding
        assert got == pytest.approx(iou2(a, b), abs=1e-9)
        # a 0.02-pixel raster: the boundary cells (perimeter / 0.02 of them, each half in) bound the error
        assert got == pytest.approx(rasterised_iou(a, b), abs=0.01)
    box = [5.0, 7.0, 0.3, 6.0, 2.0]
    assert _core._box_iou_rectangle2(box, box) == pytest.approx(1.0)
    # the same rectangle: turned by pi (opposite heading), or by pi/2 with the lengths swapped
    assert _core._box_iou_rectangle2(box, [5.0, 7.0, 0.3 + PI, 6.0, 2.0]) == pytest.approx(1.0)
    assert _core._box_iou_rectangle2(box, [5.0, 7.0, 0.3 + PI / 2, 2.0, 6.0]) == pytest.approx(1.0)
    assert _core._box_iou_rectangle2(box, [5.0, 40.0, 0.3, 6.0, 2.0]) == 0.0
    # a square and the same square turned by 45 degrees: the octagon 8 a^2 (sqrt 2 - 1) of 4 a^2 each
    inter = 8 * (np.sqrt(2) - 1)
    assert _core._box_iou_rectangle2([0, 0, 0, 1, 1], [0, 0, PI / 4, 1, 1]) == pytest.approx(inter / (8 - inter))


def reference_anchors(level, map_h, map_w, image_h=64, image_w=64, subscales=2, ratios=(0.25, 0.6), angles=ANGLES):
    """(row, col, phi, length1, length2) per anchor, in the documented order."""
    out = []
    sr, sc = image_h / map_h, image_w / map_w
    for i in range(map_h):
        for j in range(map_w):
            for k in range(subscales):
                size = 4 * 2 ** level * 2 ** (k / subscales)
                for q in ratios:
                    for a in angles:
                        out.append([(i + 0.5) * sr, (j + 0.5) * sc, a, size / np.sqrt(q) / 2, size * np.sqrt(q) / 2])
    return np.asarray(out)


def reference_results(raw, min_conf, max_overlap, max_overlap_ca, max_num):
    boxes, scores, classes = [], [], []
    lim = np.log(1000 / 16)
    for level in (2, 3):
        cs = ha.get_dict_object(raw, f"class_scores_{level}").astype(np.float64)
        bd = ha.get_dict_object(raw, f"box_deltas_{level}").astype(np.float64)
        anchors = reference_anchors(level, *cs.shape[:2])
        prob = 1 / (1 + np.exp(-cs.reshape(-1, 2)))
        deltas = bd.reshape(-1, 6)
        cand = sorted([(prob[a, k], a, k) for a in range(len(anchors)) for k in range(2) if prob[a, k] >= min_conf],
                      key=lambda x: -x[0])[:1000]
        for p, a, k in cand:
            ra, ca, pa, la1, la2 = anchors[a]
            d = deltas[a]
            u, v = d[0] * 2 * la1, d[1] * 2 * la2
            phi = np.angle(np.exp(1j * (pa + np.arctan2(d[4], d[5]))))
            boxes.append([ra - np.sin(pa) * u + np.cos(pa) * v, ca + np.cos(pa) * u + np.sin(pa) * v,
                          PI if phi == -PI else phi, la1 * np.exp(min(d[2], lim)), la2 * np.exp(min(d[3], lim))])
            scores.append(p)
            classes.append(k)
    boxes, scores, classes = np.asarray(boxes).reshape(-1, 5), np.asarray(scores), np.asarray(classes)

    def greedy(idx, thr):
        keep = []
        for i in sorted(idx, key=lambda i: -scores[i]):
            if all(iou2(boxes[i], boxes[j]) <= thr for j in keep):
                keep.append(i)
        return keep

    kept = [i for k in range(2) for i in greedy([i for i in range(len(boxes)) if classes[i] == k], max_overlap)]
    if max_overlap_ca < 1:
        kept = greedy(kept, max_overlap_ca)
    kept = sorted(kept, key=lambda i: -scores[i])[:max_num]
    return boxes[kept], scores[kept], classes[kept]


@pytest.mark.parametrize("max_overlap, max_overlap_ca, max_num", [(0.5, 1.0, 100), (0.2, 0.4, 4)])
def test_decoding_and_nms_match_a_brute_force_reference(trained, max_overlap, max_overlap_ca, max_num):
    m = trained
    ha.set_dl_model_param(m, "min_confidence", 0.03)
    ha.set_dl_model_param(m, "max_overlap", max_overlap)
    ha.set_dl_model_param(m, "max_overlap_class_agnostic", max_overlap_ca)
    ha.set_dl_model_param(m, "max_num_detections", max_num)
    try:
        outs = [f"{n}_{lv}" for lv in (2, 3) for n in ("class_scores", "box_deltas")]
        for s in samples([oriented_scene(np.random.default_rng(77 + i)) for i in range(3)]):
            raw = ha.apply_dl_model(m, [s], outs)[0]
            res = ha.apply_dl_model(m, [s], [])[0]
            boxes, scores, classes = reference_results(raw, 0.03, max_overlap, max_overlap_ca, max_num)
            got = np.stack([np.asarray(ha.get_dict_tuple(res, k), np.float64) for k in KEYS2], axis=1)
            assert len(got) == len(boxes) > 0
            np.testing.assert_allclose(got, boxes, rtol=1e-6, atol=1e-5)
            np.testing.assert_allclose(ha.get_dict_tuple(res, "bbox_confidence"), scores, rtol=1e-6)
            assert ha.get_dict_tuple(res, "bbox_class_id") == [int(c) + 1 for c in classes]
    finally:
        ha.set_dl_model_param(m, "max_overlap", 0.5)
        ha.set_dl_model_param(m, "max_overlap_class_agnostic", 1.0)
        ha.set_dl_model_param(m, "max_num_detections", 100)


def test_ignore_direction_no_orientation_classes_and_files(tmp_path):
    m = make_model(ignore_direction="true", class_ids_no_orientation=[2])
    assert ha.get_dl_model_param(m, "instance_type") == ["rectangle2"]
    assert ha.get_dl_model_param(m, "ignore_direction") == ["true"]
    assert ha.get_dl_model_param(m, "class_ids_no_orientation") == [2]
    # with ignore_direction the anchor angles are taken modulo pi, into (-pi/2, pi/2]
    assert ha.get_dl_model_param(m, "anchor_angles") == pytest.approx([0.0, PI / 4, PI / 2, -PI / 4])
    # 5 box deltas per anchor (no heading), 16 anchors
    assert ha.get_dl_model_layer_weights(m, "box_deltas_2", "bias").size == 16 * 5
    ha.set_dl_model_param(m, "batch_size", 4)
    ha.set_dl_model_param(m, "solver_type", "adam")
    ha.set_dl_model_param(m, "learning_rate", 0.001)
    data = [oriented_scene(np.random.default_rng(i)) for i in range(4)]
    data.append((data[0][0], {k: [] for k in data[0][1]}))   # an image without objects
    first = None
    for step in range(12):
        r = ha.train_dl_model_batch(m, samples(data[step % 2:step % 2 + 4]))
        first = first or ha.get_dict_tuple(r, "total_loss")[0]
    assert ha.get_dict_tuple(r, "total_loss")[0] < first
    ha.set_dl_model_param(m, "min_confidence", 0.01)
    res = ha.apply_dl_model(m, samples(data[:2]), [])
    phis = [(c, p) for r in res for c, p in zip(ha.get_dict_tuple(r, "bbox_class_id"), ha.get_dict_tuple(r, "bbox_phi"))]
    assert phis and all(-PI / 2 < p <= PI / 2 for _, p in phis)
    assert all(p == 0.0 for c, p in phis if c == 2)     # class 2 has no orientation: axis-aligned results
    ha.write_dl_model(m, str(tmp_path / "r2.hdl"))
    again = ha.read_dl_model(str(tmp_path / "r2.hdl"))
    for k in ("instance_type", "ignore_direction", "class_ids_no_orientation", "anchor_angles", "min_confidence"):
        assert ha.get_dl_model_param(again, k) == ha.get_dl_model_param(m, k)
    res2 = ha.apply_dl_model(again, samples(data[:2]), [])
    for a, b in zip(res, res2):
        for k in RESULT_KEYS:
            assert ha.get_dict_tuple(a, k) == ha.get_dict_tuple(b, k)
    ha.set_dl_model_param(m, "class_ids_no_orientation", [])
    assert ha.get_dl_model_param(m, "class_ids_no_orientation") == []


def test_bad_input_gets_halcon_errors_and_leaves_the_model_unchanged():
    m = make_model()
    ha.set_dl_model_param(m, "batch_size", 1)
    img, _ = oriented_scene(np.random.default_rng(2))
    before = ha.get_dl_model_layer_weights(m, "box_deltas_2", "weights")
    good = {"bbox_label_id": [1], "bbox_row": [30.0], "bbox_col": [20.0], "bbox_phi": [0.5], "bbox_length1": [10.0],
            "bbox_length2": [3.0]}
    cases = [
        ({"bbox_row": [70.0]}, 7791, "centre lies outside"),
        ({"bbox_length2": [0.0]}, 7791, "area"),
        ({"bbox_phi": [0.1, 0.2]}, 7789, "'bbox_phi' has 2 values"),
        ({"bbox_label_id": [3]}, 7791, "class_ids"),
    ]
    for change, code, text in cases:
        with pytest.raises(HOperatorError) as e:
            ha.train_dl_model_batch(m, samples([(img, dict(good, **change))]))
        assert e.value.error_code == code and text in str(e.value), str(e.value)
    # rectangle1 keys do not make a rectangle2 sample
    with pytest.raises(HOperatorError) as e:
        ha.train_dl_model_batch(m, samples([(img, {"bbox_label_id": [1], "bbox_row1": [1.0], "bbox_col1": [1.0],
                                                   "bbox_row2": [9.0], "bbox_col2": [9.0]})]))
    assert "bbox_row" in str(e.value)
    np.testing.assert_array_equal(ha.get_dl_model_layer_weights(m, "box_deltas_2", "weights"), before)
    for param, code, text in [
        ({"instance_type": "rectangle3"}, 7824, "instance_type"),
        ({"ignore_direction": "maybe"}, 7822, "ignore_direction"),
        ({"instance_type": "rectangle1", "anchor_angles": [0.5]}, 7822, "'rectangle2' only"),
        ({"instance_type": "rectangle1", "ignore_direction": "true"}, 7822, "'rectangle2' only"),
        ({"class_ids_no_orientation": [5]}, 1303, "class_ids_no_orientation"),
    ]:
        with pytest.raises(HOperatorError) as e:
            make_model(**param)
        assert e.value.error_code == code and text in str(e.value), str(e.value)
    with pytest.raises(HOperatorError) as e:
        ha.set_dl_model_param(m, "anchor_angles", [0.0])
    assert "creation" in str(e.value)
    with pytest.raises(HOperatorError):
        ha.set_dl_model_param(m, "class_ids_no_orientation", [0])
    assert ha.get_dl_model_param(m, "class_ids_no_orientation") == []


def reference_encoding(anchor, box, ignore_direction):
    """The documented rectangle2 encoding in float64 numpy."""
    ra, ca, pa, la1, la2 = anchor
    r, c, phi, l1, l2 = box
    if ignore_direction:
        d = np.angle(np.exp(2j * (phi - pa))) / 2            # into [-pi/2, pi/2]
        if d > PI / 4:
            l1, l2, d = l2, l1, d - PI / 2
        elif d <= -PI / 4:
            l1, l2, d = l2, l1, d + PI / 2
        angle = [d]
    else:
        d = phi - pa
        angle = [np.sin(d), np.cos(d)]
    e1, e2 = np.array([-np.sin(pa), np.cos(pa)]), np.array([np.cos(pa), np.sin(pa)])
    off = np.array([r - ra, c - ca])
    return np.array([off @ e1 / (2 * la1), off @ e2 / (2 * la2), np.log(l1 / la1), np.log(l2 / la2)] + angle)


@pytest.mark.parametrize("ignore_direction", [False, True])
def test_box_encoding_matches_the_documented_formula_and_round_trips(ignore_direction):
    rng = np.random.default_rng(11)
    for _ in range(200):
        anchor = [rng.uniform(0, 64), rng.uniform(0, 64), rng.uniform(-PI, PI), rng.uniform(4, 30), rng.uniform(4, 30)]
        box = [anchor[0] + rng.normal(0, 5), anchor[1] + rng.normal(0, 5), rng.uniform(-3 * PI, 3 * PI),
               anchor[3] * np.exp(rng.normal(0, 0.3)), anchor[4] * np.exp(rng.normal(0, 0.3))]
        d = np.asarray(_core._encode_box_rectangle2(anchor, box, ignore_direction), np.float64)
        # float32 deltas: agreement to float32 rounding
        np.testing.assert_allclose(d, reference_encoding(anchor, box, ignore_direction), rtol=1e-5, atol=1e-5)
        back = _core._decode_box_rectangle2(anchor, d.astype(np.float32).tolist(), ignore_direction)
        # the same rectangle; the heading too unless ignore_direction (then phi lies in (-pi/2, pi/2])
        assert iou2(back, box) == pytest.approx(1.0, abs=1e-4)
        if ignore_direction:
            assert -PI / 2 < back[2] <= PI / 2
        else:
            assert -PI < back[2] <= PI
            assert abs(np.angle(np.exp(1j * (back[2] - box[2])))) < 1e-4
            np.testing.assert_allclose(back[3:], box[3:], rtol=1e-4)
        np.testing.assert_allclose(back[:2], box[:2], atol=1e-3)


def test_anchor_layout_matches_the_documented_order():
    """The class-score channels follow the anchors (subscale, ratio, angle) of each cell: a model whose box
    deltas are all zero returns the anchors themselves, which must be the documented ones."""
    m = make_model(max_level=2)
    for name in ("weights", "bias"):
        w = ha.get_dl_model_layer_weights(m, "box_deltas_2", name)
        ha.set_dl_model_layer_weights(np.zeros_like(w), m, "box_deltas_2", name)
    w = ha.get_dl_model_layer_weights(m, "class_scores_2", "weights")
    ha.set_dl_model_layer_weights(np.zeros_like(w), m, "class_scores_2", "weights")
    b = np.full(ha.get_dl_model_layer_weights(m, "class_scores_2", "bias").shape, -10.0, np.float32)
    b[2 * 5 + 0] = 5.0       # anchor 5 (subscale 0, ratio 0.6, angle pi/4), class 1, in every cell
    ha.set_dl_model_layer_weights(b, m, "class_scores_2", "bias")
    ha.set_dl_model_param(m, "max_overlap", 1.0)
    ha.set_dl_model_param(m, "max_num_detections", 1000)
    img, _ = oriented_scene(np.random.default_rng(0))
    r = ha.apply_dl_model(m, samples([(img, {})]), [])[0]
    got = np.stack([ha.get_dict_tuple(r, k) for k in KEYS2], axis=1)
    expect = reference_anchors(2, 16, 16)[5::16]
    order = np.lexsort((got[:, 1], got[:, 0]))
    np.testing.assert_allclose(got[order], expect, atol=1e-9)
