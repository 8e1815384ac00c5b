"""Gradient checks of every layer and loss: analytic gradients (inputs and weights) against central
differences of the float64-accumulated total loss. Tolerance 1e-2 of the gradient's scale: with float32
activations and eps = 1e-3 the truncation (~eps^2) and rounding (~1e-7 * |loss| / eps) errors measured
below 4e-3 on every check here; a wrong gradient (sign, factor, index or missing term) is off by O(1)."""

import numpy as np
import pytest

import opendl as ha
from gradcheck import Probe

X = {"x": [7, 6, 4]}  # width 7, height 6, depth 4


def conv(**kw):
    a = dict(kernel_size=3, dilation=1, stride=1, num_kernel=5, groups=1, padding="half_kernel_size",
             activation="none", gen_param_name=[], gen_param_value=[])
    a.update(kw)
    return lambda i: ha.create_dl_layer_convolution(i["x"], "L", **a)


@pytest.mark.parametrize("kw", [
    {},
    {"stride": 2, "dilation": [2, 1], "kernel_size": [3, 2]},
    {"groups": 2, "num_kernel": 6},
    {"groups": 4, "num_kernel": 4},  # depthwise
    {"activation": "relu"},
    {"activation": "sigmoid"},
    {"activation": "tanh"},
    {"padding": [1, 0, 2, 1], "gen_param_name": "bias_term", "gen_param_value": "false"},
    {"padding": "implicit", "stride": 2, "kernel_size": 2},
])
def test_convolution(kw):
    p = Probe(conv(**kw), X, batch=2)
    p.check(layers_with_weights=["L"])


@pytest.mark.parametrize("act", ["none", "relu"])
def test_batch_normalization_with_global_statistics(act):
    """use_global_stats 'true' (a frozen layer): a fixed per-channel affine map of the running statistics, in
    training too. Running statistics other than (0, 1) make the check meaningful."""
    p = Probe(lambda i: ha.create_dl_layer_batch_normalization(i["x"], "L", 0.9, 1e-4, act, "use_global_stats",
                                                               "true"), X, batch=3)
    rng = np.random.default_rng(3)
    mean = rng.normal(0, 0.5, 4).astype(np.float32)
    var = rng.uniform(0.5, 2.0, 4).astype(np.float32)
    ha.set_dl_model_layer_weights(mean, p.model, "L", "batchnorm_mean")
    ha.set_dl_model_layer_weights(var, p.model, "L", "batchnorm_variance")
    ha.set_dl_model_layer_weights(rng.uniform(0.5, 1.5, 4).astype(np.float32), p.model, "L", "weights")
    p.check(layers_with_weights=["L"])
    # the running statistics stay as they were
    np.testing.assert_array_equal(ha.get_dl_model_layer_weights(p.model, "L", "batchnorm_mean"), mean)
    np.testing.assert_array_equal(ha.get_dl_model_layer_weights(p.model, "L", "batchnorm_variance"), var)


def test_convolutions_sharing_weights_get_the_sum_of_their_gradients():
    """Two convolutions in a row with one set of weights ('weights_shared_with'): perturbing the shared weights
    moves both, and the analytic gradient must be the sum of both uses."""
    def build(i):
        a = ha.create_dl_layer_convolution(i["x"], "L0", 3, 1, 1, 4, 1, "half_kernel_size", "tanh", [], [])
        return ha.create_dl_layer_convolution(a, "L", 3, 1, 1, 4, 1, "half_kernel_size", "none",
                                              "weights_shared_with", "L0")
    p = Probe(build, X, batch=2)
    p.check(layers_with_weights=["L0"])
    np.testing.assert_array_equal(ha.get_dl_model_layer_weights(p.model, "L", "weights_gradient"),
                                  ha.get_dl_model_layer_weights(p.model, "L0", "weights_gradient"))


def test_transposed_convolution():
    p = Probe(lambda i: ha.create_dl_layer_transposed_convolution(i["x"], "L", 3, 2, 3, 1, 1, [], []), X, batch=2)
    p.check(layers_with_weights=["L"])


@pytest.mark.parametrize("act", ["none", "relu"])
def test_batch_normalization(act):
    p = Probe(lambda i: ha.create_dl_layer_batch_normalization(i["x"], "L", 0.9, 1e-4, act, [], []), X, batch=3)
    p.check(layers_with_weights=["L"])


@pytest.mark.parametrize("t", ["relu", "sigmoid", "tanh"])
def test_activation(t):
    Probe(lambda i: ha.create_dl_layer_activation(i["x"], "L", t, [], []), X, batch=2).check()


def separated(shape, batch, seed=1):
    # Values spaced 0.1 apart so a 1e-2 perturbation never changes which element of a window is maximal.
    n = batch * int(np.prod(shape))
    v = np.random.default_rng(seed).permutation(n).astype(np.float32) * 0.1 - n * 0.05
    return v.reshape((batch,) + tuple(shape))


@pytest.mark.parametrize("args", [
    ([2, 2], [2, 2], "none", "maximum"),
    ([3, 3], [2, 2], "implicit", "maximum"),
    ([3, 2], [1, 2], [1, 0], "average"),
    ([1, 1], [1, 1], "none", "global_average"),
    ([2, 2], [1, 1], "none", "global_maximum"),
])
def test_pooling(args):
    data = {"x": separated((6, 7, 4), 2)}
    p = Probe(lambda i: ha.create_dl_layer_pooling(i["x"], "L", *args, [], []), X, batch=2, input_data=data)
    p.check()


def test_dense():
    Probe(lambda i: ha.create_dl_layer_dense(i["x"], "L", 6, [], []), X, batch=2).check(layers_with_weights=["L"])


def test_softmax():
    Probe(lambda i: ha.create_dl_layer_softmax(i["x"], "L", [], []), X, batch=2).check()


@pytest.mark.parametrize("axis,shapes", [
    ("depth", {"x": [5, 4, 2], "y": [5, 4, 3]}),
    ("width", {"x": [2, 4, 3], "y": [5, 4, 3]}),
    ("height", {"x": [5, 1, 3], "y": [5, 4, 3]}),
])
def test_concat(axis, shapes):
    Probe(lambda i: ha.create_dl_layer_concat([i["x"], i["y"]], "L", axis, [], []), shapes, batch=2).check()


S3 = {"x": [4, 3, 2], "y": [4, 3, 2], "z": [4, 3, 2]}


@pytest.mark.parametrize("op,coef", [("sum", [0.5, -2.0, 1.5]), ("sum", []), ("product", []), ("maximum", []),
                                     ("minimum", [])])
def test_elementwise(op, coef):
    data = None
    if op in ("maximum", "minimum"):  # keep the inputs apart so the winner never flips under perturbation
        base = separated((3, 4, 2), 2)
        data = {"x": base, "y": base + 0.033, "z": base[::-1].copy() - 0.047}
    p = Probe(lambda i: ha.create_dl_layer_elementwise([i["x"], i["y"], i["z"]], "L", op, coef, [], []), S3,
              batch=2, input_data=data)
    p.check()


def test_elementwise_same_input_twice():
    # One layer feeding both inputs: gradients of the two uses must add up (accumulation into one buffer).
    p = Probe(lambda i: ha.create_dl_layer_elementwise([i["x"], i["x"]], "L", "product", [], [], []), X, batch=2)
    p.check()


def test_identity_and_reshape():
    Probe(lambda i: ha.create_dl_layer_identity(i["x"], "L", [], []), X, batch=2).check()
    Probe(lambda i: ha.create_dl_layer_reshape(i["x"], "L", [-1, 2, 0], [], []), X, batch=2).check()


@pytest.mark.parametrize("interp,align", [("bilinear", "false"), ("bilinear", "true"), ("nearest_neighbor", "false")])
def test_zoom(interp, align):
    Probe(lambda i: ha.create_dl_layer_zoom_factor(i["x"], "L", 1.5, 2.0, interp, align, [], []), X, batch=2).check()
    Probe(lambda i: ha.create_dl_layer_zoom_size(i["x"], "L", 3, 4, interp, align, [], []), X, batch=2).check()


def test_zoom_to_layer_size():
    shapes = {"x": [3, 4, 2], "r": [7, 5, 1]}
    p = Probe(lambda i: ha.create_dl_layer_zoom_to_layer_size(i["x"], i["r"], "L", "bilinear", "false", [], []),
              shapes, batch=2)
    p.check(inputs=["x"])


def test_depth_max_value():
    data = {"x": separated((6, 7, 4), 2)}
    p = Probe(lambda i: ha.create_dl_layer_depth_max_s(i["x"], "L", "value", [], [])[1], X, batch=2,
              input_data=data)
    p.check()


def test_dropout_gradient_follows_mask():
    p = Probe(lambda i: ha.create_dl_layer_dropout(i["x"], "L", 0.4, [], []), X, batch=2)
    p.loss({})
    y = ha.get_dl_model_layer_activations(p.model, "L")
    dy = ha.get_dl_model_layer_gradients(p.model, "L")
    dx = ha.get_dl_model_layer_gradients(p.model, "x")
    x = np.stack([s["x"] for s in p.samples])
    kept = y != 0
    # Inverted dropout: kept values are x / (1 - p), dropped ones 0; the gradient uses the same mask.
    np.testing.assert_allclose(y[kept], x[kept] / 0.6, rtol=1e-6)
    np.testing.assert_allclose(dx, np.where(kept, dy / 0.6, 0.0), rtol=1e-6, atol=1e-7)
    assert 0.45 < kept.mean() < 0.75


# --- losses: checked through the input gradient of a model whose only loss is the layer under test ------


def loss_model(make_loss, shapes, batch, data):
    inputs = {n: ha.create_dl_layer_input(n, s, [], []) for n, s in shapes.items()}
    loss = make_loss(inputs)
    m = ha.create_dl_model(loss)
    ha.set_dl_model_param(m, "batch_size", batch)
    ha.set_dl_model_param(m, "learning_rate", 1e-30)
    m.core("test").set_input_gradients(True)
    return m


def fd_check_loss(m, samples, key="x", eps=1e-3, tol=2e-2):
    ha.as_python_dict_s(ha.train_dl_model_batch(m, samples))
    ana = ha.get_dl_model_layer_gradients(m, key)
    rng = np.random.default_rng(3)
    flat = ana.reshape(-1)
    for i in rng.choice(flat.size, size=min(12, flat.size), replace=False):
        b, *rest = np.unravel_index(i, ana.shape)
        x = samples[b][key]
        old = x[tuple(rest)]
        x[tuple(rest)] = old + eps
        lp = ha.as_python_dict_s(ha.train_dl_model_batch(m, samples))["total_loss"]
        x[tuple(rest)] = old - eps
        lm = ha.as_python_dict_s(ha.train_dl_model_batch(m, samples))["total_loss"]
        x[tuple(rest)] = old
        num = (lp - lm) / (2 * eps)
        assert abs(num - flat[i]) <= tol * max(np.abs(flat).max(), 1e-6), (i, num, flat[i])


def test_cross_entropy_loss_gradient():
    rng = np.random.default_rng(0)
    shapes = {"x": [3, 2, 4], "t": [3, 2, 1], "w": [3, 2, 1]}
    m = loss_model(lambda i: ha.create_dl_layer_loss_cross_entropy(
        ha.create_dl_layer_softmax(i["x"], "sm", [], []), i["t"], i["w"], "ce", 1.0, [], []), shapes, 2, None)
    samples = [{"x": rng.standard_normal((2, 3, 4)).astype(np.float32),
                "t": rng.integers(0, 4, (2, 3, 1)).astype(np.float32),
                "w": rng.uniform(0.5, 2, (2, 3, 1)).astype(np.float32)} for _ in range(2)]
    fd_check_loss(m, samples)


def test_huber_loss_gradient():
    rng = np.random.default_rng(1)
    shapes = {"x": [4, 3, 2], "t": [4, 3, 2], "w": [4, 3, 2], "n": [1, 1, 1]}
    m = loss_model(lambda i: ha.create_dl_layer_loss_huber(i["x"], i["t"], i["w"], i["n"], "h", 1.0, 0.5, [], []),
                   shapes, 2, None)
    samples = [{"x": rng.standard_normal((3, 4, 2)).astype(np.float32),
                "t": rng.standard_normal((3, 4, 2)).astype(np.float32),
                "w": rng.uniform(0.5, 2, (3, 4, 2)).astype(np.float32), "n": 3.0} for _ in range(2)]
    fd_check_loss(m, samples)


def test_focal_loss_gradient():
    rng = np.random.default_rng(2)
    shapes = {"x": [4, 3, 3], "t": [4, 3, 1], "w": [4, 3, 1]}
    m = loss_model(lambda i: ha.create_dl_layer_loss_focal(i["x"], i["t"], i["w"], [], "f", 1.0, 2.0,
                                                           [0.25, 0.5, 0.75], "focal_binary", [], []),
                   shapes, 2, None)
    samples = [{"x": rng.standard_normal((3, 4, 3)).astype(np.float32),
                "t": rng.integers(-1, 3, (3, 4, 1)).astype(np.float32),
                "w": rng.uniform(0.5, 2, (3, 4, 1)).astype(np.float32)} for _ in range(2)]
    fd_check_loss(m, samples)


def test_focal_loss_gradient_with_one_hot_targets_and_normalization():
    """The detector's form: one-hot (per class) targets and weights of the anchors' class channels, the sum
    divided by the batch's foreground count given as the normalization input."""
    rng = np.random.default_rng(5)
    shapes = {"x": [4, 3, 6], "t": [4, 3, 6], "w": [4, 3, 6], "n": [1, 1, 1]}
    m = loss_model(lambda i: ha.create_dl_layer_loss_focal(i["x"], i["t"], i["w"], i["n"], "f", 1.5, 2.0,
                                                           [0.25, 0.5] * 3, "focal_binary", [], []),
                   shapes, 2, None)
    samples = [{"x": rng.standard_normal((3, 4, 6)).astype(np.float32),
                "t": (rng.random((3, 4, 6)) < 0.2).astype(np.float32),
                "w": (rng.random((3, 4, 6)) < 0.8).astype(np.float32), "n": 4.0} for _ in range(2)]
    fd_check_loss(m, samples)


@pytest.mark.parametrize("dist", ["l1", "l2"])
def test_distance_loss_gradient(dist):
    rng = np.random.default_rng(4)
    shapes = {"x": [4, 3, 2], "t": [4, 3, 2], "w": [4, 3, 2]}
    m = loss_model(lambda i: ha.create_dl_layer_loss_distance(i["x"], i["t"], i["w"], "d", dist, 1.0, [], []),
                   shapes, 2, None)
    samples = [{"x": rng.standard_normal((3, 4, 2)).astype(np.float32),
                "t": rng.standard_normal((3, 4, 2)).astype(np.float32),
                "w": rng.uniform(0.5, 2, (3, 4, 2)).astype(np.float32)} for _ in range(2)]
    fd_check_loss(m, samples)


# --- the decoder step of the built-in segmentation networks, at a size that is not a multiple of the stride --


def test_unet_decoder_step_at_odd_size():
    """conv stride 2 (7 x 5 -> 4 x 3), bilinear zoom back to the skip's size, concat with the skip, conv."""
    def build(i):
        down = ha.create_dl_layer_convolution(i["x"], "down", 3, 1, 2, 4, 1, "half_kernel_size", "relu", [], [])
        up = ha.create_dl_layer_zoom_to_layer_size(down, i["x"], "up", "bilinear", "false", [], [])
        cat = ha.create_dl_layer_concat([up, i["x"]], "cat", "depth", [], [])
        return ha.create_dl_layer_convolution(cat, "L", 3, 1, 1, 2, 1, "half_kernel_size", "none", [], [])
    Probe(build, {"x": [7, 5, 3]}, batch=2).check(layers_with_weights=["down", "L"])


def test_binary_cross_entropy_gradient():
    """The multi-label loss: focal loss with gamma 0 on class scores (N, C, 1, 1), per-class weights."""
    rng = np.random.default_rng(5)
    shapes = {"x": [1, 1, 4], "t": [1, 1, 4], "w": [1, 1, 4]}
    m = loss_model(lambda i: ha.create_dl_layer_loss_focal(i["x"], i["t"], i["w"], [], "f", 1.0, 0.0, [],
                                                           "focal_binary", [], []), shapes, 3, None)
    samples = [{"x": rng.standard_normal((1, 1, 4)).astype(np.float32),
                "t": rng.integers(0, 2, (1, 1, 4)).astype(np.float32),
                "w": rng.uniform(0.5, 2, (1, 1, 4)).astype(np.float32)} for _ in range(3)]
    fd_check_loss(m, samples)
