"""Classification models: built-in classifiers, class and image-size changes, the model file (exact
continuation of training, corruption), bad input that must change nothing, devices and class weights."""

import importlib.util
import os
import struct
import time
import zlib

import numpy as np
import pytest

import opendl as ha

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
_spec = importlib.util.spec_from_file_location("cls_example", os.path.join(ROOT, "examples", "python", "classification.py"))
example = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(example)


def compact(size=32, channels=1, classes=("a", "b", "c"), batch=4):
    ha.set_system("seed_rand", 3)
    m = ha.read_dl_model("pretrained_dl_classifier_compact.hdl")
    ha.set_dl_model_param(m, "image_dimensions", [size, size, channels])
    ha.set_dl_model_param(m, "class_names", list(classes))
    ha.set_dl_model_param(m, "batch_size", batch)
    return m


def batch(n, seed=0, size=32, channels=1, ids=(0, 1, 2)):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        s = ha.create_dict()
        img = rng.normal(0, 50, (size, size, channels)).astype(np.float32)
        ha.set_dict_object(img, s, "image")
        ha.set_dict_tuple(s, "image_label_id", ids[i % len(ids)])
        out.append(s)
    return out


def loss(res):
    return ha.get_dict_tuple_s(res, "total_loss")


def serialized(m):
    return ha.serialize_dl_model(m).core("t")


# ------------------------------------------------------------------ learning


def test_builtin_compact_reaches_95_percent_on_held_out_images():
    rng = np.random.default_rng(11)
    m = compact(batch=16)
    ha.set_dl_model_param(m, "class_names", example.CLASS_NAMES)
    ha.set_dl_model_param(m, "solver_type", "adam")
    ha.set_dl_model_param(m, "learning_rate", 0.002)
    train = example.make_samples(rng, 960, [0, 1, 2])
    test = example.make_samples(np.random.default_rng(12), 240, [0, 1, 2])
    t0 = time.perf_counter()
    for step in range(200):
        if step == 140:  # a learning-rate step, as HALCON's change strategies do
            ha.set_dl_model_param(m, "learning_rate", 0.0002)
        start = (step * 16) % (len(train) - 16)
        ha.train_dl_model_batch(m, train[start:start + 16])
    correct = 0
    for start in range(0, len(test), 16):
        chunk = test[start:start + 16]
        for s, r in zip(chunk, ha.apply_dl_model(m, chunk, [])):
            correct += ha.get_dict_tuple(r, "classification_class_ids")[0] == ha.get_dict_tuple_s(s, "image_label_id")
    acc = correct / len(test)
    print(f"accuracy {acc:.3f}, {time.perf_counter() - t0:.1f} s")
    assert acc >= 0.95


def test_results_hold_all_classes_sorted_by_confidence():
    m = compact(classes=("x", "y", "z"))
    ha.set_dl_model_param(m, "class_ids", [4, 9, 2])
    res = ha.apply_dl_model(m, batch(3, ids=(4, 9, 2)), [])
    assert len(res) == 3
    for r in res:
        ids = ha.get_dict_tuple(r, "classification_class_ids")
        names = ha.get_dict_tuple(r, "classification_class_names")
        conf = ha.get_dict_tuple(r, "classification_confidences")
        assert sorted(ids) == [2, 4, 9]
        assert [dict(zip([4, 9, 2], ["x", "y", "z"]))[i] for i in ids] == names
        assert conf == sorted(conf, reverse=True) and abs(sum(conf) - 1) < 1e-5
    with pytest.raises(ha.HOperatorError) as e:
        ha.apply_dl_model(m, batch(5), [])
    assert e.value.error_code == 7784


def test_every_builtin_classifier_builds_and_trains_one_step():
    for name in ["compact", "enhanced", "resnet18", "resnet50", "mobilenet_v2", "alexnet"]:
        m = ha.read_dl_model(f"pretrained_dl_classifier_{name}.hdl")
        assert ha.get_dl_model_param_s(m, "type") == "classification"
        assert ha.get_dl_model_param(m, "image_dimensions") == [224, 224, 3]
        meta = ha.get_dl_model_param_s(m, "meta_data")
        assert "random" in ha.get_dict_tuple_s(meta, "weights")
        size = 67 if name == "alexnet" else 32
        ha.set_dl_model_param(m, "image_dimensions", [size, size, 3])
        ha.set_dl_model_param(m, "batch_size", 2)
        ha.set_dl_model_param(m, "class_names", ["good", "bad"])
        r = ha.train_dl_model_batch(m, batch(2, size=size, channels=3, ids=(0, 1)))
        assert np.isfinite(loss(r)), name


# ------------------------------------------------------------------ architecture changes


def test_class_change_keeps_all_other_weights():
    m = compact()
    ha.train_dl_model_batch(m, batch(4))
    conv = ha.get_dl_model_layer_weights(m, "conv_1", "weights")
    bn = ha.get_dl_model_layer_weights(m, "bn_2", "batchnorm_mean")
    ha.set_dl_model_param(m, "class_names", ["a", "b", "c", "d", "e"])
    assert ha.get_dl_model_param(m, "class_ids") == [0, 1, 2, 3, 4]
    assert ha.get_dl_model_param_s(m, "num_classes") == 5
    np.testing.assert_array_equal(ha.get_dl_model_layer_weights(m, "conv_1", "weights"), conv)
    np.testing.assert_array_equal(ha.get_dl_model_layer_weights(m, "bn_2", "batchnorm_mean"), bn)
    assert ha.get_dl_model_layer_weights(m, "class_scores", "weights").shape[0] == 5
    ha.set_dl_model_param(m, "class_names", ["a", "b", "c", "d", "renamed"])  # same count: names only
    assert ha.get_dl_model_param(m, "class_names")[-1] == "renamed"
    r = ha.train_dl_model_batch(m, batch(4, ids=(0, 4)))
    assert np.isfinite(loss(r))


def test_channel_change_converts_first_kernels():
    m = compact(channels=3)
    w3 = ha.get_dl_model_layer_weights(m, "conv_1", "weights")
    ha.set_dl_model_param(m, "image_num_channels", 1)
    w1 = ha.get_dl_model_layer_weights(m, "conv_1", "weights")
    # A gray image stands for three equal channels: the kernels are summed over the input channels.
    np.testing.assert_allclose(w1[:, 0], w3.sum(axis=1), rtol=1e-6, atol=1e-7)
    with pytest.raises(ha.HOperatorError) as e:
        ha.set_dl_model_param(m, "image_num_channels", 2)
    assert e.value.error_code == 7724


def test_layer_built_model_becomes_a_classifier():
    img = ha.create_dl_layer_input("image", [4, 4, 1], [], [])
    lab = ha.create_dl_layer_input("image_label_id", [1, 1, 1], [], [])
    w = ha.create_dl_layer_input("weights", [1, 1, 1], [], [])
    d = ha.create_dl_layer_dense(img, "fc", 2, [], [])
    sm = ha.create_dl_layer_softmax(d, "sm", [], [])
    m = ha.create_dl_model(ha.create_dl_layer_loss_cross_entropy(sm, lab, w, "ce", 1.0, [], []))
    assert ha.get_dl_model_param_s(m, "type") == "generic"
    ha.set_dl_model_param(m, "type", "classification")
    assert ha.get_dl_model_param(m, "class_ids") == [0, 1]
    ha.set_dl_model_param(m, "class_names", ["ok", "nok", "unsure"])
    assert ha.get_dl_model_layer_weights(m, "fc", "weights").shape == (3, 16)


def test_class_weights_follow_the_documented_normalisation():
    # A dense classifier without batch norm computes the same probabilities in training and inference, so the
    # training loss can be checked against the confidences: L = mean_i rho_c(i) * -log p_i(c(i)) with
    # rho_c = w_c * K / sum_k w_k.
    img = ha.create_dl_layer_input("image", [3, 2, 1], [], [])
    lab = ha.create_dl_layer_input("image_label_id", [1, 1, 1], [], [])
    wt = ha.create_dl_layer_input("w", [1, 1, 1], [], [])
    sm = ha.create_dl_layer_softmax(ha.create_dl_layer_dense(img, "fc", 3, [], []), "sm", [], [])
    m = ha.create_dl_model(ha.create_dl_layer_loss_cross_entropy(sm, lab, wt, "ce", 1.0, [], []))
    ha.set_dl_model_param(m, "type", "classification")
    ha.set_dl_model_param(m, "batch_size", 3)
    ha.set_dl_model_param(m, "learning_rate", 1e-12)
    samples = batch(3, size=2, ids=(0, 1, 2))
    for s in samples:
        ha.set_dict_object(ha.get_dict_object(s, "image")[:, :1].repeat(3, axis=1).copy()[:2, :3], s, "image")
    probs = []
    for s, r in zip(samples, ha.apply_dl_model(m, samples, [])):
        ids = ha.get_dict_tuple(r, "classification_class_ids")
        conf = ha.get_dict_tuple(r, "classification_confidences")
        probs.append(conf[ids.index(ha.get_dict_tuple_s(s, "image_label_id"))])
    nll = -np.log(np.array(probs, dtype=np.float64))
    plain = loss(ha.train_dl_model_batch(m, samples))
    np.testing.assert_allclose(plain, nll.mean(), rtol=1e-5)  # float32 softmax / log
    ha.set_dl_model_param(m, "class_weights", [1.0, 1.0, 1.0])
    np.testing.assert_allclose(loss(ha.train_dl_model_batch(m, samples)), plain, rtol=1e-6)
    ha.set_dl_model_param(m, "class_weights", [3.0, 1.0, 2.0])
    rho = np.array([3.0, 1.0, 2.0]) * 3 / 6.0
    np.testing.assert_allclose(loss(ha.train_dl_model_batch(m, samples)), (rho * nll).mean(), rtol=1e-5)


# ------------------------------------------------------------------ files


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_write_read_then_train_equals_uninterrupted_training(tmp_path, solver):
    def make():
        m = compact()
        ha.set_dl_model_param(m, "solver_type", solver)
        ha.set_dl_model_param(m, "weight_prior", 1e-4)
        return m

    a, b = make(), make()
    for k in range(3):
        ha.train_dl_model_batch(a, batch(4, seed=k))
        ha.train_dl_model_batch(b, batch(4, seed=k))
    path = str(tmp_path / "m.hdl")
    ha.write_dl_model(a, path)
    ha.clear_dl_model(a)
    c = ha.read_dl_model(path)
    for k in range(3, 6):
        lb = loss(ha.train_dl_model_batch(b, batch(4, seed=k)))
        lc = loss(ha.train_dl_model_batch(c, batch(4, seed=k)))
        assert lb == lc
    for layer, t in [("conv_1", "weights"), ("bn_4", "batchnorm_variance"), ("class_scores", "bias")]:
        np.testing.assert_array_equal(ha.get_dl_model_layer_weights(b, layer, t),
                                      ha.get_dl_model_layer_weights(c, layer, t))


def test_dropout_rng_state_is_saved():
    img = ha.create_dl_layer_input("x", [8, 1, 1], [], [])
    t = ha.create_dl_layer_input("t", [1, 1, 8], [], [])
    w = ha.create_dl_layer_input("w", [1, 1, 8], [], [])
    d = ha.create_dl_layer_dropout(ha.create_dl_layer_dense(img, "fc", 8, [], []), "drop", 0.5, [], [])
    m = ha.create_dl_model(ha.create_dl_layer_loss_distance(d, t, w, "l2", "l2", 1.0, [], []))
    s = [{"x": np.arange(8.0).tolist(), "t": [0.0] * 8, "w": [1.0] * 8}]
    ha.train_dl_model_batch(m, s)
    twin = ha.deserialize_dl_model(ha.serialize_dl_model(m))
    seq_a = [loss(ha.train_dl_model_batch(m, s)) for _ in range(4)]
    seq_b = [loss(ha.train_dl_model_batch(twin, s)) for _ in range(4)]
    assert seq_a == seq_b and len(set(seq_a)) > 1  # different dropout masks per step, identical between copies


def test_dropout_layers_draw_their_own_masks_independent_of_the_thread_count():
    """Two dropout layers on the same input draw different masks (the step's seed is mixed with each layer's
    slot), and a model trained with 1 thread draws the masks it draws with 2 (counter-based draws)."""
    def build():
        x = ha.create_dl_layer_input("x", [64, 1, 1], [], [])
        t = ha.create_dl_layer_input("t", [1, 1, 64], [], [])
        w = ha.create_dl_layer_input("w", [1, 1, 64], [], [])
        fc = ha.create_dl_layer_dense(x, "fc", 64, [], [])
        s = ha.create_dl_layer_elementwise([ha.create_dl_layer_dropout(fc, "d1", 0.5, [], []),
                                            ha.create_dl_layer_dropout(fc, "d2", 0.5, [], [])], "sum", "sum", [],
                                           [], [])
        return ha.create_dl_model(ha.create_dl_layer_loss_distance(s, t, w, "l2", "l2", 1.0, [], []))
    s = [{"x": np.ones(64).tolist(), "t": [0.0] * 64, "w": [1.0] * 64}]
    threads = ha.get_system("thread_num")
    threads = threads[0] if isinstance(threads, list) else threads
    masks = {}
    try:
        for n in (1, 2):
            ha.set_system("thread_num", n)
            ha.set_system("seed_rand", 5)
            m = build()
            ha.train_dl_model_batch(m, s)
            masks[n] = [ha.get_dl_model_layer_activations(m, d) != 0 for d in ("d1", "d2")]
    finally:
        ha.set_system("thread_num", threads)
    for a, b in zip(masks[1], masks[2]):
        np.testing.assert_array_equal(a, b)
    d1, d2 = masks[2]
    assert 0.25 < d1.mean() < 0.75 and 0.25 < d2.mean() < 0.75
    assert np.mean(d1 != d2) > 0.25  # independent masks agree on about half of the values


def test_model_file_is_checksummed_and_versioned(tmp_path):
    m = compact()
    path = tmp_path / "m.hdl"
    ha.write_dl_model(m, str(path))
    data = path.read_bytes()
    assert data[:8] == b"OPENDLC\0"
    version, _flags, size, crc = struct.unpack("<IIQI", data[8:28])
    assert size == len(data) - 32 and crc == zlib.crc32(data[32:])  # CRC-32 (IEEE), checkable with zlib
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    (tmp_path / "flip.hdl").write_bytes(bytes(flipped))
    (tmp_path / "short.hdl").write_bytes(data[: len(data) - 100])
    (tmp_path / "empty.hdl").write_bytes(b"")
    newer = bytearray(data)
    newer[8:12] = struct.pack("<I", version + 1)
    newer[28:32] = struct.pack("<I", zlib.crc32(bytes(newer[:28])))
    (tmp_path / "newer.hdl").write_bytes(bytes(newer))
    for name, code in [("flip", 7780), ("short", 7780), ("empty", 7780), ("newer", 7782), ("absent", 5200)]:
        with pytest.raises(ha.HOperatorError) as e:
            ha.read_dl_model(str(tmp_path / f"{name}.hdl"))
        assert e.value.error_code == code, name
    # A dict file is not a model.
    ha.write_dict(ha.create_dict(), str(tmp_path / "d.hdict"), [], [])
    with pytest.raises(ha.HOperatorError) as e:
        ha.read_dl_model(str(tmp_path / "d.hdict"))
    assert e.value.error_code == 7780


def test_failed_write_leaves_target_and_directory_clean(tmp_path):
    m = compact()
    target = tmp_path / "keep.hdl"
    target.write_bytes(b"old content")
    (tmp_path / "dir.hdl").mkdir()
    with pytest.raises(ha.HOperatorError) as e:
        ha.write_dl_model(m, str(tmp_path / "dir.hdl"))
    assert e.value.error_code == 7781
    with pytest.raises(ha.HOperatorError):
        ha.write_dl_model(m, str(tmp_path / "missing_dir" / "m.hdl"))
    assert target.read_bytes() == b"old content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.hdl", "keep.hdl"]  # no temporary files left


def test_meta_data_and_load_weights(tmp_path):
    m = compact()
    meta = ha.create_dict()
    ha.set_dict_tuple(meta, "anomaly_classification_threshold", 0.25)
    ha.set_dl_model_param(m, "meta_data", meta)
    ha.set_dl_model_param(m, "meta_data", {"line": "A3", "limits": [1, 2]})
    path = str(tmp_path / "m.hdl")
    ha.write_dl_model(m, path)
    back = ha.get_dl_model_param_s(ha.read_dl_model(path), "meta_data")
    assert ha.as_python_dict(back) == {"line": ["A3"], "limits": [1, 2]}

    other = compact(classes=("p", "q"))
    changed = ha.load_dl_model_weights(m, other)
    names = ha.get_dl_model_param(other, "layer_names")
    assert len(changed) == len(names)
    assert changed[names.index("conv_1")] == ha.get_dl_model_layer_weights(m, "conv_1", "weights").size
    assert changed[names.index("class_scores")] == 0  # 3 classes vs 2: shapes differ, layer untouched
    np.testing.assert_array_equal(ha.get_dl_model_layer_weights(other, "conv_3", "weights"),
                                  ha.get_dl_model_layer_weights(m, "conv_3", "weights"))


# ------------------------------------------------------------------ bad input changes nothing


def _bad_batches():
    def edit(fn):
        b = batch(4)
        fn(b)
        return b

    def set_obj(i, arr):
        return lambda b: ha.set_dict_object(arr, b[i], "image")

    return [
        ("missing image", edit(lambda b: ha.remove_dict_key(b[1], "image")), 7783),
        ("missing label", edit(lambda b: ha.remove_dict_key(b[2], "image_label_id")), 7783),
        ("unknown class id", edit(lambda b: ha.set_dict_tuple(b[3], "image_label_id", 7)), 7791),
        ("two labels", edit(lambda b: ha.set_dict_tuple(b[0], "image_label_id", [0, 1])), 7789),
        ("fractional label", edit(lambda b: ha.set_dict_tuple(b[0], "image_label_id", 0.5)), 7790),
        ("wrong size", edit(set_obj(0, np.zeros((31, 32, 1), np.float32))), 7789),
        ("wrong channels", edit(set_obj(1, np.zeros((32, 32, 3), np.float32))), 7789),
        ("byte image", edit(set_obj(2, np.zeros((32, 32, 1), np.uint8))), 7790),
        ("nan pixel", edit(set_obj(3, np.full((32, 32, 1), np.nan, np.float32))), 7791),
        ("too few samples", batch(3), 7800),
    ]


@pytest.mark.parametrize("case", _bad_batches(), ids=lambda c: c[0])
def test_bad_batch_raises_and_changes_nothing(case):
    _, samples, code = case
    m = compact()
    ha.train_dl_model_batch(m, batch(4, seed=5))
    before = serialized(m)
    with pytest.raises(ha.HOperatorError) as e:
        ha.train_dl_model_batch(m, samples)
    assert e.value.error_code == code
    assert serialized(m) == before


@pytest.mark.parametrize("name,value,code", [
    ("class_ids", [0, 1, 1], 7792), ("class_ids", [0, -1, 2], 7793), ("class_ids", [], 7802),
    ("class_names", ["a", "a"], 1303), ("class_weights", [1.0, 2.0], 1403), ("class_weights", [1.0, -1, 1], 1303),
    ("image_num_channels", 4, 7724), ("image_dimensions", [32, 32], 1403), ("image_width", 0, 1303),
    ("batch_size", 0, 1303), ("learning_rate", -1.0, 1303), ("no_such_param", 1, 1302),
    ("runtime", "tpu", 1303), ("type", "detection", 1303),
])
def test_bad_parameter_raises_and_changes_nothing(name, value, code):
    m = compact()
    before = serialized(m)
    with pytest.raises(ha.HOperatorError) as e:
        ha.set_dl_model_param(m, name, value)
    assert e.value.error_code == code
    assert serialized(m) == before


@pytest.mark.skipif(bool(ha.query_available_dl_devices(["runtime"], ["gpu"])), reason="a GPU is present")
def test_runtime_gpu_without_a_gpu_says_why_and_changes_nothing():
    """Plugin not built or not loadable (4204), no GPU (7708), no driver (7709), cuBLAS / cuDNN missing (7717 /
    7718): each is refused with its code and a reason, and the model stays on the CPU as it was."""
    m = compact()
    before = serialized(m)
    with pytest.raises(ha.HOperatorError) as e:
        ha.set_dl_model_param(m, "runtime", "gpu")
    assert e.value.error_code in (4204, 7708, 7709, 7717, 7718)
    assert len(str(e.value)) > 60
    assert ha.get_dl_model_param_s(m, "runtime") == "cpu"
    assert serialized(m) == before
    assert np.isfinite(loss(ha.train_dl_model_batch(m, batch(4))))  # still trains on the CPU


def test_alexnet_reports_too_small_images():
    m = ha.read_dl_model("pretrained_dl_classifier_alexnet.hdl")
    with pytest.raises(ha.HOperatorError) as e:
        ha.set_dl_model_param(m, "image_dimensions", [40, 40, 3])
    assert e.value.error_code == 7722
    assert ha.get_dl_model_param(m, "image_dimensions") == [224, 224, 3]


# ------------------------------------------------------------------ devices and system


def test_cpu_device_is_listed_and_assignable():
    devs = ha.query_available_dl_devices(["runtime"], ["cpu"])
    assert len(devs) == 1
    assert ha.get_dl_device_param_s(devs[0], "type") == "cpu"
    assert ha.get_dl_device_param_s(devs[0], "id") == 0
    assert devs[0] in ha.query_available_dl_devices([], [])
    m = compact()
    ha.set_dl_model_param(m, "device", devs[0])
    assert ha.get_dl_model_param_s(m, "device") == devs[0]
    assert ha.get_dl_model_param_s(m, "runtime") == "cpu"
    with pytest.raises(ha.HOperatorError):
        ha.get_dl_device_param(devs[0], "no_such_param")
    ha.set_system("cudnn_deterministic", "true")
    assert ha.get_system_s("cudnn_deterministic") == "true"
    ha.set_system("cudnn_deterministic", "false")


def test_batchnorm_momentum_and_precision():
    m = compact()
    ha.train_dl_model_batch(m, batch(4))
    conv = ha.get_dl_model_layer_weights(m, "conv_1", "weights")
    mean = ha.get_dl_model_layer_weights(m, "bn_2", "batchnorm_mean")
    ha.set_dl_model_param(m, "batchnorm_momentum", 0.5)
    assert ha.get_dl_model_param_s(m, "batchnorm_momentum") == 0.5
    assert ha.get_dl_model_layer_param_s(m, "bn_14", "momentum") == 0.5
    np.testing.assert_array_equal(ha.get_dl_model_layer_weights(m, "conv_1", "weights"), conv)
    np.testing.assert_array_equal(ha.get_dl_model_layer_weights(m, "bn_2", "batchnorm_mean"), mean)
    ha.set_dl_model_param(m, "batchnorm_momentum", "auto")
    assert ha.get_dl_model_param_s(m, "batchnorm_momentum") == "auto"
    before = serialized(m)
    for bad in (1.0, -0.1, "fast"):
        with pytest.raises(ha.HOperatorError) as e:
            ha.set_dl_model_param(m, "batchnorm_momentum", bad)
        assert e.value.error_code == 1303
    assert serialized(m) == before
    assert ha.get_dl_model_param_s(m, "precision") == "float32"
    assert ha.get_dl_model_param_s(m, "precision_is_converted") == "false"
