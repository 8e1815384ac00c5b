"""Model behaviour a user relies on: parameters, errors with HALCON's codes that leave the model unchanged,
gradient accumulation over batch_size_multiplier, the weight_prior term, seeding and inference."""

import numpy as np
import pytest

import opendl as ha
from procedure_helpers import code_of


def small_net(bn=True, classes=3):
    img = ha.create_dl_layer_input("image", [6, 5, 2], [], [])
    lab = ha.create_dl_layer_input("image_label_id", [1, 1, 1], [], [])
    w = ha.create_dl_layer_input("weights", [1, 1, 1], [], [])
    h = ha.create_dl_layer_convolution(img, "conv", 3, 1, 1, 4, 1, "half_kernel_size", "none", [], [])
    if bn:
        h = ha.create_dl_layer_batch_normalization(h, "bn", 0.9, 1e-4, "relu", [], [])
    h = ha.create_dl_layer_dense(h, "fc", classes, [], [])
    sm = ha.create_dl_layer_softmax(h, "softmax", [], [])
    return ha.create_dl_model(ha.create_dl_layer_loss_cross_entropy(sm, lab, w, "loss", 1.0, [], []))


def samples(n, seed=0, classes=3):
    r = np.random.default_rng(seed)
    return [{"image": r.standard_normal((5, 6, 2)).astype(np.float32), "image_label_id": int(r.integers(classes)),
             "weights": 1.0} for _ in range(n)]


def state(m):
    out = {}
    for layer in ha.get_dl_model_param(m, "layer_names"):
        for t in ("weights", "bias", "batchnorm_mean", "batchnorm_variance"):
            try:
                out[(layer, t)] = ha.get_dl_model_layer_weights(m, layer, t).copy()
            except ha.HOperatorError:
                pass
    return out


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=str(k))


def test_parameters_roundtrip_and_validation():
    m = small_net()
    for name, value in [("batch_size", 4), ("batch_size_multiplier", 3), ("learning_rate", 0.05),
                        ("momentum", 0.5), ("weight_prior", 1e-4), ("solver_type", "adam"), ("adam_beta1", 0.8),
                        ("adam_beta2", 0.99), ("adam_epsilon", 1e-6)]:
        ha.set_dl_model_param(m, name, value)
        assert ha.get_dl_model_param_s(m, name) == pytest.approx(value) if not isinstance(value, str) else True
    assert ha.get_dl_model_param_s(m, "solver_type") == "adam"
    assert ha.get_dl_model_param(m, "layer_names")[0] == "image"
    assert ha.get_dl_model_param_s(m, "num_trainable_params") == 2 * 4 * 9 + 4 + 4 + 4 + 4 * 30 * 3 + 3
    cases = [("learning_rate", 0, 1303), ("momentum", 1.0, 1303), ("batch_size", 0, 1303),
             ("batch_size_multiplier", 0, 7799), ("solver_type", "rmsprop", 7840), ("no_such_param", 1, 1302),
             ("weight_prior", -1.0, 1303), ("learning_rate", "fast", 1203), ("num_trainable_params", 5, 1302)]
    for name, value, code in cases:
        with pytest.raises(ha.HOperatorError) as e:
            ha.set_dl_model_param(m, name, value)
        assert e.value.error_code == code, (name, value)
        assert name in e.value.message or name == "no_such_param" and "no_such_param" in e.value.message
    with pytest.raises(ha.HOperatorError) as e:
        ha.get_dl_model_param(m, "nope")
    assert e.value.error_code == 1302


@pytest.mark.parametrize("mutate,code,word", [
    (lambda b: b[:3], 7800, "batch_size"),
    (lambda b: [dict(b[0], image_label_id=7)] + b[1:], 7791, "class index"),
    (lambda b: [{"image": b[0]["image"], "weights": 1.0}] + b[1:], 7783, "image_label_id"),
    (lambda b: [dict(b[0], image=b[0]["image"][:4])] + b[1:], 7789, "height"),
    (lambda b: [dict(b[0], image=b[0]["image"].astype(np.uint8))] + b[1:], 7790, "byte"),
    (lambda b: [dict(b[0], image=np.full((5, 6, 2), np.nan, np.float32))] + b[1:], 7791, "non-finite"),
    (lambda b: [dict(b[0], weights=[1.0, 2.0])] + b[1:], 7789, "weights"),
])
def test_bad_batches_raise_and_change_nothing(mutate, code, word):
    m = small_net()
    ha.set_dl_model_param(m, "batch_size", 4)
    ha.as_python_dict_s(ha.train_dl_model_batch(m, samples(4)))  # velocity and running statistics are non-trivial now
    before = state(m)
    with pytest.raises(ha.HOperatorError) as e:
        ha.as_python_dict_s(ha.train_dl_model_batch(m, mutate(samples(4, seed=1))))
    assert e.value.error_code == code
    assert word in e.value.message
    assert_same(before, state(m))
    # The next good step equals the step of an identical model that never saw the bad batch.
    twin = small_net()
    ha.set_dl_model_param(twin, "batch_size", 4)
    ha.as_python_dict_s(ha.train_dl_model_batch(twin, samples(4)))
    ha.as_python_dict_s(ha.train_dl_model_batch(m, samples(4, seed=2)))
    ha.as_python_dict_s(ha.train_dl_model_batch(twin, samples(4, seed=2)))
    assert_same(state(twin), state(m))


def test_layer_errors():
    """A value outside its parameter's table (range, choices, count) gets the code of its position
    (create_dl_layer_convolution's activation is its 9th parameter: 1309); the checks a layer type makes itself
    (padding forms, groups dividing the input depth) still raise 1303."""
    img = ha.create_dl_layer_input("image", [6, 5, 2], [], [])
    cases = [
        (lambda: ha.create_dl_layer_convolution(img, "c", 0, 1, 1, 4, 1, "none", "none", [], []), 1303, "kernel_size"),
        (lambda: ha.create_dl_layer_convolution(img, "c", 3, 1, 1, 4, 3, "none", "none", [], []), 1303, "groups"),
        (lambda: ha.create_dl_layer_convolution(img, "c", 3, 1, 1, 4, 1, "same", "none", [], []), 1303, "padding"),
        (lambda: ha.create_dl_layer_convolution(img, "c", 9, 1, 1, 4, 1, "none", "none", [], []), 7735, "kernel"),
        (lambda: ha.create_dl_layer_convolution(img, "c", 3, 1, 1, 4, 1, "none", "gelu", [], []), 1309, "activation"),
        (lambda: ha.create_dl_layer_convolution(img, "c", 3, 1, 1, 4, 1, "none", "none", "nope", 1), 7911, "nope"),
        (lambda: ha.create_dl_layer_convolution(img, "c", 3, 1, 1, 4, 1, "none", "none", "weight_filler", "bad"),
         7914, "weight_filler"),
        (lambda: ha.create_dl_layer_convolution(img, "c", 3, 1, 1, 2 ** 70, 1, "none", "none", [], []), 1306,
         "64 bits"),
        (lambda: ha.create_dl_layer_convolution(img, "c", 3, 1, 1, 4, 1, "none", "none", [5], [1]), 1210, "strings"),
        (lambda: ha.create_dl_layer_input("i", [0, 5, 2], [], []), 1302, "shape"),
        (lambda: ha.create_dl_layer_pooling(img, "p", [2, 2], [2, 2], "none", "median", [], []), 1306, "mode"),
        (lambda: ha.create_dl_layer_dropout(img, "d", 1.5, [], []), 1303, "probability"),
        (lambda: ha.create_dl_layer_reshape(img, "r", [7, 7, 7], [], []), 7735, "shape"),
        (lambda: ha.create_dl_layer_elementwise([img, ha.create_dl_layer_input("o", [3, 5, 2], [], [])], "e", "sum",
                                                [], [], []), 7735, "shape"),
        (lambda: ha.create_dl_layer_batch_normalization(img, "b", 1.5, 1e-4, "none", [], []), 1303, "momentum"),
    ]
    for make, code, word in cases:
        with pytest.raises(ha.HOperatorError) as e:
            make()
        assert e.value.error_code == code, e.value
        assert word in e.value.message, e.value.message
    a = ha.create_dl_layer_activation(img, "same", "relu", [], [])
    b = ha.create_dl_layer_activation(a, "same", "relu", [], [])
    with pytest.raises(ha.HOperatorError) as e:
        ha.create_dl_model(b)
    assert e.value.error_code == 7786


def test_batch_size_multiplier_averages_gradients():
    # Without batch normalisation, 2 x 2 accumulated samples make the same single update as 1 x 4.
    ha.set_system("seed_rand", 5)
    a, b = small_net(bn=False), small_net(bn=False)
    ha.set_dl_model_param(a, "batch_size", 4)
    ha.set_dl_model_param(b, "batch_size", 2)
    ha.set_dl_model_param(b, "batch_size_multiplier", 2)
    s = samples(4)
    ra, rb = ha.as_python_dict_s(ha.train_dl_model_batch(a, s)), ha.as_python_dict_s(ha.train_dl_model_batch(b, s))
    assert ra["total_loss"] == pytest.approx(rb["total_loss"], rel=1e-6)
    for k, v in state(a).items():
        np.testing.assert_allclose(state(b)[k], v, rtol=1e-5, atol=1e-7, err_msg=str(k))


def test_weight_prior_term_and_update():
    m = small_net(bn=False)
    ha.set_dl_model_param(m, "batch_size", 2)
    ha.set_dl_model_param(m, "momentum", 0.0)
    ha.set_dl_model_param(m, "learning_rate", 0.1)
    ha.set_dl_model_param(m, "weight_prior", 0.01)
    before = state(m)
    r = ha.as_python_dict_s(ha.train_dl_model_batch(m, samples(2)))
    reg = 0.5 * 0.01 * sum(float((v.astype(np.float64) ** 2).sum()) for (l, t), v in before.items() if t == "weights")
    assert r["regularization"] == pytest.approx(reg, rel=1e-5)
    assert r["total_loss"] == pytest.approx(r["loss"] + reg, rel=1e-9)
    for (layer, t), w0 in before.items():
        g = ha.get_dl_model_layer_weights(m, layer, t + "_gradient")
        decay = 0.01 * w0 if t == "weights" else 0.0  # biases are not regularised
        np.testing.assert_allclose(state(m)[(layer, t)], w0 - 0.1 * (g + decay), rtol=1e-5, atol=1e-7)


def test_seed_makes_initialisation_and_training_reproducible():
    ha.set_system("seed_rand", 123)
    a = small_net()
    ha.set_system("seed_rand", 123)
    b = small_net()
    ha.set_system("seed_rand", 124)
    c = small_net()
    assert_same(state(a), state(b))
    assert not np.array_equal(state(a)[("conv", "weights")], state(c)[("conv", "weights")])
    for m in (a, b):
        ha.set_dl_model_param(m, "batch_size", 3)
        for i in range(3):
            ha.as_python_dict_s(ha.train_dl_model_batch(m, samples(3, seed=i)))
    assert_same(state(a), state(b))
    assert ha.get_system_s("seed_rand") == 124


def test_a_batch_size_too_large_for_memory_is_refused_and_the_model_goes_on_as_before():
    """Out of memory while resizing (6001 on the CPU, 4104 on a GPU) leaves the model at its previous batch size
    with its weights, statistics and solver state: it trains on exactly like a twin that was never asked (it used
    to keep pointers to freed activation buffers and crash on the next step)."""
    huge = 1 << 42  # 60 floats per sample: about a petabyte, refused by the allocator at once
    twins = []
    for ask in (False, True):
        ha.set_system("seed_rand", 7)
        m = small_net()
        ha.set_dl_model_param(m, "batch_size", 3)
        ha.train_dl_model_batch(m, samples(3, seed=0))
        if ask:
            before = state(m)
            with pytest.raises(ha.HOperatorError) as e:
                ha.set_dl_model_param(m, "batch_size", huge)
            assert e.value.error_code == 6001 and "memory" in str(e.value)
            assert ha.get_dl_model_param(m, "batch_size") == [3]
            assert_same(before, state(m))
        losses = [ha.as_python_dict_s(ha.train_dl_model_batch(m, samples(3, seed=i)))["total_loss"] for i in (1, 2)]
        out = ha.apply_dl_model(m, samples(3, seed=3), ["softmax"])
        twins.append((losses, state(m), [np.asarray(ha.get_dict_object(r, "softmax")) for r in out]))
    assert twins[0][0] == twins[1][0]
    assert_same(twins[0][1], twins[1][1])
    for a, b in zip(twins[0][2], twins[1][2]):
        np.testing.assert_array_equal(a, b)


def test_training_learns_and_apply_shapes():
    ha.set_system("seed_rand", 1)
    m = small_net()
    ha.set_dl_model_param(m, "batch_size", 8)
    ha.set_dl_model_param(m, "learning_rate", 0.05)
    r = np.random.default_rng(0)
    protos = r.standard_normal((3, 5, 6, 2)).astype(np.float32)

    def batch(n):
        ids = r.integers(0, 3, n)
        return [{"image": protos[i] + 0.3 * r.standard_normal((5, 6, 2)).astype(np.float32),
                 "image_label_id": int(i), "weights": 1.0} for i in ids]

    first = ha.as_python_dict_s(ha.train_dl_model_batch(m, batch(8)))["total_loss"]
    for _ in range(40):
        last = ha.as_python_dict_s(ha.train_dl_model_batch(m, batch(8)))["total_loss"]
    assert last < 0.3 * first
    test = batch(6)
    res = [ha.as_python_dict(r) for r in ha.apply_dl_model(m, test, [])]  # fewer samples than batch_size are fine
    assert len(res) == 6 and res[0]["softmax"].shape == (1, 1, 3)
    acc = np.mean([np.argmax(x["softmax"]) == s["image_label_id"] for x, s in zip(res, test)])
    assert acc >= 5 / 6
    with pytest.raises(ha.HOperatorError) as e:
        [ha.as_python_dict(r) for r in ha.apply_dl_model(m, batch(9), [])]
    assert e.value.error_code == 7784
    acts = ha.get_dl_model_layer_activations(m, "softmax")
    assert acts.shape == (8, 1, 1, 3)
    np.testing.assert_allclose(acts[:6, 0, 0], np.stack([x["softmax"][0, 0] for x in res]), rtol=1e-6)


def test_model_layer_access_and_clear():
    m = small_net()
    conv = ha.get_dl_model_layer_s(m, "conv")
    assert ha.get_dl_layer_param_s(conv, "type") == "convolution"
    assert ha.get_dl_model_layer_param(m, "conv", "kernel_size") == [3]
    assert ha.get_dl_model_layer_param_s(m, "conv", "input_layer") == "image"
    with pytest.raises(ha.HOperatorError) as e:
        ha.get_dl_model_layer_weights(m, "conv", "gamma")
    assert e.value.error_code == 1303 and "weights_gradient" in e.value.message
    with pytest.raises(ha.HOperatorError) as e:
        ha.set_dl_model_layer_weights(np.zeros((4, 2, 3, 2), np.float32), m, "conv", "weights")
    assert e.value.error_code == 7735
    ha.clear_dl_model(m)
    with pytest.raises(ha.HOperatorError) as e:
        ha.get_dl_model_param(m, "batch_size")
    assert e.value.error_code == 2450


def shared_net(share="conv1"):
    img = ha.create_dl_layer_input("image", [6, 5, 3], [], [])
    lab = ha.create_dl_layer_input("image_label_id", [1, 1, 1], [], [])
    w = ha.create_dl_layer_input("weights", [1, 1, 1], [], [])
    h = ha.create_dl_layer_convolution(img, "conv1", 3, 1, 1, 3, 1, "half_kernel_size", "relu", [], [])
    h = ha.create_dl_layer_convolution(h, "conv2", 3, 1, 1, 3, 1, "half_kernel_size", "relu",
                                       "weights_shared_with", share)
    h = ha.create_dl_layer_dense(h, "fc", 3, [], [])
    sm = ha.create_dl_layer_softmax(h, "softmax", [], [])
    return ha.create_dl_model(ha.create_dl_layer_loss_cross_entropy(sm, lab, w, "loss", 1.0, [], []))


def test_weight_sharing_one_set_of_weights_trained_once(tmp_path):
    m = shared_net()
    own = shared_net(share="")
    conv = 3 * 3 * 3 * 3 + 3
    # the shared convolution's weights count once
    assert ha.get_dl_model_param(m, "num_trainable_params")[0] == \
        ha.get_dl_model_param(own, "num_trainable_params")[0] - conv
    ha.set_dl_model_param(m, "batch_size", 4)
    ha.set_dl_model_param(m, "solver_type", "sgd")
    ha.set_dl_model_param(m, "momentum", 0.0)
    ha.set_dl_model_param(m, "learning_rate", 0.1)
    before = ha.get_dl_model_layer_weights(m, "conv1", "weights").copy()
    np.testing.assert_array_equal(ha.get_dl_model_layer_weights(m, "conv2", "weights"), before)
    r = np.random.default_rng(1)
    ha.train_dl_model_batch(m, [{"image": r.standard_normal((5, 6, 3)).astype(np.float32),
                                 "image_label_id": k % 3, "weights": 1.0} for k in range(4)])
    after = ha.get_dl_model_layer_weights(m, "conv1", "weights")
    grad = ha.get_dl_model_layer_weights(m, "conv1", "weights_gradient")
    # plain SGD: one update of the shared weights by the summed gradient (weight_prior 0 here)
    assert ha.get_dl_model_param(m, "weight_prior")[0] == 0.0
    np.testing.assert_allclose(after, before - 0.1 * grad, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(ha.get_dl_model_layer_weights(m, "conv2", "weights"), after)
    assert ha.get_dl_layer_param(ha.get_dl_model_layer(m, "conv2")[0], "weights_shared_with") == ["conv1"]
    ha.write_dl_model(m, str(tmp_path / "shared.hdl"))
    again = ha.read_dl_model(str(tmp_path / "shared.hdl"))
    assert ha.get_dl_model_param(again, "num_trainable_params") == ha.get_dl_model_param(m, "num_trainable_params")
    ha.set_dl_model_layer_weights(np.zeros_like(after), again, "conv2", "weights")
    assert not ha.get_dl_model_layer_weights(again, "conv1", "weights").any()


@pytest.mark.parametrize("share, word", [("nowhere", "no layer"), ("conv2", "itself"), ("fc", "differ")])
def test_weight_sharing_errors(share, word):
    with pytest.raises(ha.HOperatorError) as e:
        shared_net(share)
    assert word in str(e.value) and "weights_shared_with" in str(e.value)


def _distance_net():
    x = ha.create_dl_layer_input("x", [1, 1, 1], [], [])
    t = ha.create_dl_layer_input("t", [1, 1, 1], [], [])
    w = ha.create_dl_layer_input("w", [1, 1, 1], [], [])
    c = ha.create_dl_layer_convolution(x, "conv", 1, 1, 1, 1, 1, "none", "none", [], [])
    m = ha.create_dl_model(ha.create_dl_layer_loss_distance(c, t, w, "loss", "l2", 1.0, [], []))
    ha.set_dl_model_param(m, "batch_size", 1)
    ha.set_dl_model_param(m, "momentum", 0.9)
    ha.set_dl_model_param(m, "learning_rate", 1e-3)
    ha.set_dl_model_layer_weights(np.ones((1, 1, 1, 1), np.float32), m, "conv", "weights")
    return m


@pytest.mark.parametrize("weight, x", [(1e30, 1e10),  # the output overflows float32: the loss is infinite
                                       (1.0, 3e38)])  # the loss (9e76) is finite in double, its gradient is not
def test_a_step_with_a_non_finite_loss_or_gradient_fails_with_7720_and_changes_nothing(weight, x):
    """The training step reads the loss sums (double precision) and the number of non-finite gradients back from
    the device once, after the backward pass; either one refuses the step before the solver runs."""
    m = _distance_net()
    good = [{"x": np.float32(0.5), "t": np.float32(1.0), "w": np.float32(1.0)}]
    ha.train_dl_model_batch(m, good)  # the solver's momentum is non-zero from here on
    ha.set_dl_model_layer_weights(np.full((1, 1, 1, 1), weight, np.float32), m, "conv", "weights")
    before = state(m)
    with pytest.raises(ha.HOperatorError) as e:
        ha.train_dl_model_batch(m, [{"x": np.float32(x), "t": np.float32(0.0), "w": np.float32(1.0)}])
    assert e.value.error_code == 7720 and "not finite" in str(e.value)
    assert_same(before, state(m))
    # the model trains on: the same update as a twin that never saw the bad batch
    twin = _distance_net()
    ha.train_dl_model_batch(twin, good)
    ha.set_dl_model_layer_weights(np.full((1, 1, 1, 1), weight, np.float32), twin, "conv", "weights")
    ha.set_dl_model_layer_weights(np.float32(1.0).reshape(1, 1, 1, 1), m, "conv", "weights")
    ha.set_dl_model_layer_weights(np.float32(1.0).reshape(1, 1, 1, 1), twin, "conv", "weights")
    r = [ha.as_python_dict_s(ha.train_dl_model_batch(k, good))["total_loss"] for k in (m, twin)]
    assert r[0] == r[1]
    assert_same(state(m), state(twin))


def test_the_loss_values_are_summed_in_double_precision():
    """total_loss is the double-precision sum of the loss layer's terms (here w (x - t)^2 over 4096 elements of
    widely different size), not the float32 value of the layer's output."""
    n = 4096
    x = ha.create_dl_layer_input("x", [n, 1, 1], [], [])
    t = ha.create_dl_layer_input("t", [n, 1, 1], [], [])
    w = ha.create_dl_layer_input("w", [n, 1, 1], [], [])
    m = ha.create_dl_model(ha.create_dl_layer_loss_distance(x, t, w, "loss", "l2", 1.0, [], []))
    ha.set_dl_model_param(m, "batch_size", 1)
    r = np.random.default_rng(0)
    xs = (r.standard_normal(n) * np.logspace(-4, 4, n)).astype(np.float32)
    ts = r.standard_normal(n).astype(np.float32)
    ws = r.uniform(0.5, 1.5, n).astype(np.float32)
    s = [{"x": xs.reshape(1, n, 1), "t": ts.reshape(1, n, 1), "w": ws.reshape(1, n, 1)}]
    got = ha.as_python_dict_s(ha.train_dl_model_batch(m, s))["total_loss"]
    want = float(np.sum(ws.astype(np.float64) * (xs.astype(np.float64) - ts) ** 2))
    assert got == pytest.approx(want, rel=1e-12)
    assert abs(got - float(np.float32(want))) > 0  # more than float32 can hold


def test_gpu_graphs_setting_and_the_cpu_never_records():
    from opendl import _core
    assert ha.get_system("gpu_graphs") == ["true"]
    with pytest.raises(ha.HOperatorError) as e:
        ha.set_system("gpu_graphs", "yes")
    assert e.value.error_code == 1302 and "gpu_graphs" in str(e.value)
    ha.set_system("gpu_graphs", "false")
    try:
        assert ha.get_system_s("gpu_graphs") == "false"
    finally:
        ha.set_system("gpu_graphs", "true")
    m = small_net()
    ha.set_dl_model_param(m, "batch_size", 2)
    for i in range(3):
        ha.train_dl_model_batch(m, samples(2, seed=i))
    assert _core._train_step_graphs(m.core("test")) == {"recorded": 0, "refused": 0, "replayed": 0}


def test_sizes_and_integers_beyond_64_bits_and_nul_in_file_names_are_refused(tmp_path):
    """Sizes whose value counts overflow 64 bits used to wrap into small buffers (a batch size of 2^62 was
    accepted and the next apply_dl_model crashed); integers beyond 64 bits escaped as pybind11 cast errors; a NUL
    in a file name made write_dl_model overwrite the file named by the part before it."""
    m = small_net()
    before = state(m)
    with pytest.raises(ha.HOperatorError) as e:
        ha.set_dl_model_param(m, "batch_size", 2**62)
    assert e.value.error_code == 7735 and "2^56 values" in str(e.value) and "'image'" in str(e.value)
    with pytest.raises(ha.HOperatorError) as e:
        ha.set_dl_model_param(m, "batch_size", 2**63)
    assert e.value.error_code == 1303 and "64 bits" in str(e.value)  # gen_param_value is parameter 3
    assert ha.get_dl_model_param(m, "batch_size") == [1]
    assert_same(before, state(m))
    assert len(ha.apply_dl_model(m, samples(1), ["softmax"])) == 1

    x = ha.create_dl_layer_input("x", [8, 8, 1], [], [])
    with pytest.raises(ha.HOperatorError) as e:  # zoom sizes are window geometry: at most 2^20
        ha.create_dl_layer_zoom_size(x, "z", 2**32, 2**32, "bilinear", "false", [], [])
    assert e.value.error_code == 1303 and "'width'" in str(e.value)
    with pytest.raises(ha.HOperatorError) as e:
        ha.create_dl_layer_input("y", [2**70, 8, 1], [], [])
    assert e.value.error_code == 1302

    ha.set_dl_model_param(m, "batch_size", 2)
    batch = samples(2)
    batch[0]["image_label_id"] = 2**63
    with pytest.raises(ha.HOperatorError) as e:
        ha.train_dl_model_batch(m, batch)
    assert e.value.error_code == 1302 and "sample 0, key 'image_label_id'" in str(e.value)
    assert_same(before, state(m))
    with pytest.raises(ha.HOperatorError) as e:
        ha.set_system("seed_rand", 2**70)
    assert e.value.error_code == 1302 and "seed_rand" in str(e.value)

    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    for write in (lambda: ha.write_dl_model(m, str(victim) + "\0.hdl"),
                  lambda: ha.write_dict(ha.create_dict(), str(victim) + "\0.hdict", [], [])):
        with pytest.raises(ha.HOperatorError) as e:
            write()
        assert e.value.error_code == 1202 and "NUL" in str(e.value)  # file_name is the second parameter
    assert victim.read_bytes() == b"precious"
    with pytest.raises(ha.HOperatorError):
        ha.read_dl_model(str(victim) + "\0.hdl")


def test_values_an_audit_found_unchecked_are_refused_with_the_model_unchanged(tmp_path):
    """Activations before any call read as zeros; a negative batch-normalisation variance, complex or ragged
    weights were taken (or escaped as numpy errors); batch_size 1e20 was reported as a wrapped integer; a string
    given for an image counted as a wrong length; conversion errors of the binding named no operator; reading a
    folder raised a C++ RuntimeError."""
    m = small_net()
    with pytest.raises(ha.HOperatorError) as e:
        ha.get_dl_model_layer_activations(m, "conv")
    assert e.value.error_code == 7788 and "no apply_dl_model" in str(e.value)
    ha.apply_dl_model(m, samples(1), ["softmax"])
    assert ha.get_dl_model_layer_activations(m, "softmax").shape == (1, 1, 1, 3)
    ha.set_dl_model_param(m, "batch_size", 2)  # new buffers: the outputs of the last call are gone
    with pytest.raises(ha.HOperatorError) as e:
        ha.get_dl_model_layer_activations(m, "softmax")
    assert e.value.error_code == 7788
    before = state(m)
    for weights, wtype, code, words in [(-np.ones(4, np.float32), "batchnorm_variance", 7791, "'batchnorm_variance'"),
                                        (np.zeros(4, np.complex64), "weights", 1201, "complex64"),
                                        ([[1.0, 2.0], [3.0]], "weights", 1201, "one shape")]:
        with pytest.raises(ha.HOperatorError) as e:
            ha.set_dl_model_layer_weights(weights, m, "bn", wtype)
        assert e.value.error_code == code and words in str(e.value), str(e.value)
    with pytest.raises(ha.HOperatorError) as e:
        ha.set_dl_model_param(m, "batch_size", 1e20)
    assert e.value.error_code == 1303 and "1e+20" in str(e.value)
    with pytest.raises(ha.HOperatorError) as e:
        ha.apply_dl_model(m, [{"image": "x"}], [])
    assert e.value.error_code == 7790 and "'x' is not a number" in str(e.value)
    for value in ({"a": 1}, object()):  # was reported as a missing key (7783)
        batch = samples(2)
        batch[1]["image_label_id"] = value
        with pytest.raises(ha.HOperatorError) as e:
            ha.train_dl_model_batch(m, batch)
        assert e.value.error_code == 7790 and "sample 1, key 'image_label_id'" in str(e.value), str(e.value)
    extra = samples(2)
    extra[0]["notes"] = {"camera": 2}  # values of no input type under other keys are no error
    ha.apply_dl_model(m, extra, [])
    with pytest.raises(ha.HOperatorError) as e:
        ha.set_dl_model_param(m, "learning_rate", [object()])
    assert e.value.error_code == 1203 and e.value.operator_name == "set_dl_model_param"
    assert_same(before, state(m))
    assert ha.get_dl_model_param(m, "batch_size") == [2]
    with pytest.raises(ha.HOperatorError) as e:
        ha.read_dl_model(str(tmp_path))
    assert e.value.error_code == 5200 and "directory" in str(e.value)
    x = ha.create_dl_layer_input("x", [8, 8, 2], [], [])
    for size in (float("inf"), 1e19):  # was cast to a wrapped 64-bit integer (undefined in C++)
        with pytest.raises(ha.HOperatorError) as e:
            ha.create_dl_layer_convolution(x, "c", size, 1, 1, 4, 1, "none", "none", [], [])
        assert e.value.error_code == 1303 and "kernel_size" in str(e.value) and "-9223372036854775808" not in str(e.value)
    # window geometry beyond any image extent, and counts beyond 32 bits, are refused when the layer is made
    # (a stride of 2^40 used to pass and fail later inside oneDNN with internal error 7779)
    conv = ha.create_dl_layer_convolution
    for args, name in (((x, "c", 3, 1, 2 ** 40, 4, 1, "none", "none", [], []), "stride"),
                       ((x, "c", 3, 2 ** 21, 1, 4, 1, "none", "none", [], []), "dilation"),
                       ((x, "c", 3, 1, 1, 2 ** 31, 1, "none", "none", [], []), "num_kernel"),
                       ((x, "c", 3, 1, 1, 4, 1, [2 ** 21], "none", [], []), "padding")):
        with pytest.raises(ha.HOperatorError) as e:
            conv(*args)
        assert name in str(e.value) and ("1048576" in str(e.value) or "2147483647" in str(e.value)), str(e.value)
    with pytest.raises(ha.HOperatorError) as e:
        ha.create_dl_layer_pooling(x, "p", 3, 2 ** 40, "none", "maximum", [], [])
    assert "stride" in str(e.value)
    # the largest stride still runs: one window, the first, fits into the image
    big = ha.create_dl_layer_convolution(x, "c", 3, 1, 2 ** 20, 4, 1, "none", "none", [], [])
    g = ha.create_dl_model(big)
    ha.set_dl_model_param(g, "batch_size", 1)
    out = ha.apply_dl_model(g, [{"x": np.ones((8, 8, 2), np.float32)}], ["c"])
    assert ha.get_dict_object(out[0], "c").shape == (1, 1, 4)


def test_class_ids_and_sizes_that_are_no_64_bit_integers_are_refused():
    """inf and 1e300 passed the integral check (inf == floor(inf)) and were cast with undefined behaviour
    (read back as -2^63); reals beyond 2^53 are no exact integers either."""
    m = ha.read_dl_model("pretrained_dl_classifier_compact.hdl")
    ha.set_dl_model_param(m, "image_dimensions", [32, 32, 3])
    ha.set_dl_model_param(m, "class_ids", [0, 1])
    for bad in (float("inf"), 1e300, float("nan"), [0, -1]):
        with pytest.raises(ha.HOperatorError) as e:
            ha.set_dl_model_param(m, "class_ids", bad)
        assert e.value.error_code == 7793, bad
    for name in ("image_width", "image_dimensions"):
        with pytest.raises(ha.HOperatorError) as e:
            ha.set_dl_model_param(m, name, [float("inf")] * (3 if name == "image_dimensions" else 1))
        assert e.value.error_code == 1303 and "inf" in str(e.value)
    assert ha.get_dl_model_param(m, "class_ids") == [0, 1] and ha.get_dl_model_param(m, "image_width") == [32]
    ha.set_dl_model_param(m, "class_ids", [2 ** 62, 5])  # large integers stay exact
    assert ha.get_dl_model_param(m, "class_ids") == [2 ** 62, 5]
    sample = {"image": np.zeros((32, 32, 3), np.float32), "image_label_id": float("inf")}
    with pytest.raises(ha.HOperatorError) as e:
        ha.train_dl_model_batch(m, [sample])
    assert e.value.error_code == 7790


def test_clear_checks_every_handle_before_clearing_any():
    m = ha.read_dl_model("pretrained_dl_classifier_compact.hdl")
    d = ha.create_dict()
    with pytest.raises(ha.HOperatorError):
        ha.clear_dl_model([m, 5])
    with pytest.raises(ha.HOperatorError):
        ha.clear_handle([d, 5])
    assert ha.get_dl_model_param(m, "type") == ["classification"]  # still usable
    assert ha.get_dict_param(d, "keys", []) == []


def test_codes_follow_the_parameter_position_dicts_are_no_tuples_and_models_pickle():
    import copy
    import pickle
    m = small_net()
    before = state(m)
    c = ha.read_dl_model("pretrained_dl_classifier_compact.hdl")
    names = ha.get_dl_model_param(c, "class_names")
    # gen_param_value is parameter 3 of set_dl_model_param: 1303 for a bad value, 1203 for a bad type
    assert code_of(ha.set_dl_model_param, m, "learning_rate", 2 ** 64) == 1303
    assert code_of(ha.set_dl_model_param, m, "learning_rate", b"x") == 1203
    # a dict is one element (HALCON's dict handle), not the tuple of its keys (was class names 'x', 'y', 'z')
    assert code_of(ha.set_dl_model_param, c, "class_names", {"x": 1, "y": 2, "z": 3}) == 1203
    assert code_of(ha.set_dl_model_param, c, "class_weights", {0.5: "a"}) == 1203
    assert ha.get_dl_model_param(c, "class_names") == names
    # outputs is parameter 3 of apply_dl_model, layer_name 3 and weights_type 4 of set_dl_model_layer_weights
    assert code_of(ha.apply_dl_model, m, samples(1), ["nope"]) == 1303
    w = ha.get_dl_model_layer_weights(m, "conv", "weights")
    assert code_of(ha.set_dl_model_layer_weights, w, m, "nope", "weights") == 1303
    assert code_of(ha.set_dl_model_layer_weights, w, m, "conv", "nope") == 1304
    assert_same(before, state(m))
    # layer names are C strings in files and in HALCON
    assert code_of(ha.create_dl_layer_input, "a\0b", [8, 8, 1], [], []) == 7785

    # deepcopy and pickle carry the serialized model: an independent model with the same weights and state;
    # copy.copy is the same handle (clearing one clears the other, as in HALCON)
    for twin in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert twin != m
        assert_same(before, state(twin))
        ha.set_dl_model_param(twin, "learning_rate", 0.5)
        assert ha.get_dl_model_param(m, "learning_rate") != [0.5]
    assert copy.copy(m) is m
    with pytest.raises(ha.HOperatorError) as e:
        pickle.dumps(ha.create_dl_layer_input("x", [8, 8, 1], [], []))
    assert e.value.error_code == 2455
