"""CPU against GPU, one table over every layer, loss and solver: the same model (same seed, same samples) trained one
step on runtime 'cpu' and on runtime 'gpu' must agree in the loss, the layer's output, the gradients of the inputs,
the layer and its weights, and the weights after two solver updates. TF32 is switched off ('gpu_tf32' 'false'), so
both sides compute in float32 and differ only in the order of their sums: relative errors (max |cpu - gpu| over
max |cpu| of each tensor) stay far below 1e-4, while a wrong index, factor or branch is off by O(1).

Skips where no CUDA GPU is present (the CPU side of every case is covered by test_gradients.py and friends), and
runs end to end on a GPU machine: `python -m pytest -q tests/python/test_gpu_consistency.py`."""

import numpy as np
import pytest

import opendl as ha
from gradcheck import Probe

GPUS = ha.query_available_dl_devices(["runtime"], ["gpu"])
pytestmark = pytest.mark.skipif(not GPUS, reason="no CUDA GPU (runtime 'gpu' unavailable)")

RTOL = 1e-4
X = {"x": [7, 6, 4]}  # width 7, height 6, depth 4


@pytest.fixture(autouse=True)
def fp32_gpu():
    ha.set_system("gpu_tf32", "false")
    yield
    ha.set_system("gpu_tf32", "true")


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-12)) if a.size else 0.0


def assert_close(what, a, b):
    e = rel_err(a, b)
    assert e < RTOL, f"{what}: CPU and GPU differ by {e:.3g} (relative)"


def conv(**kw):
    a = dict(kernel_size=3, dilation=1, stride=1, num_kernel=5, groups=1, padding="half_kernel_size",
             activation="none", gen_param_name=[], gen_param_value=[])
    a.update(kw)
    return lambda i: ha.create_dl_layer_convolution(i["x"], "L", **a)


def separated(shape, batch, seed=1):
    """Distinct values 0.1 apart: the winner of a max never depends on rounding."""
    n = batch * int(np.prod(shape))
    v = np.random.default_rng(seed).permutation(n).astype(np.float32) * 0.1 - n * 0.05
    return v.reshape((batch,) + tuple(shape))


S3 = {"x": [4, 3, 2], "y": [4, 3, 2], "z": [4, 3, 2]}
SEP = {"x": separated((6, 7, 4), 2)}

# id -> (build(inputs) -> layer 'L', input shapes, batch, input data or None, layers with weights)
LAYERS = {
    "conv": (conv(), X, 2, None, ["L"]),
    "conv_stride_dilation": (conv(stride=2, dilation=[2, 1], kernel_size=[3, 2]), X, 2, None, ["L"]),
    "conv_groups": (conv(groups=2, num_kernel=6), X, 2, None, ["L"]),
    "conv_depthwise": (conv(groups=4, num_kernel=4), X, 2, None, ["L"]),
    "conv_relu": (conv(activation="relu"), X, 2, None, ["L"]),
    "conv_sigmoid": (conv(activation="sigmoid"), X, 2, None, ["L"]),
    "conv_tanh": (conv(activation="tanh"), X, 2, None, ["L"]),
    "conv_asymmetric_padding": (conv(padding=[1, 0, 2, 1], gen_param_name="bias_term", gen_param_value="false"),
                                X, 2, None, ["L"]),
    "conv_implicit": (conv(padding="implicit", stride=2, kernel_size=2), X, 2, None, ["L"]),
    # x read by two convolutions whose outputs are channels-last on the GPU (the sum between them and L takes any
    # layout): each writes its input gradient through a channels-last buffer and adds it into x's plain gradient.
    "conv_shared_input": (lambda i: ha.create_dl_layer_convolution(ha.create_dl_layer_elementwise(
        [ha.create_dl_layer_convolution(i["x"], "A", 2, 1, 1, 5, 1, [0, 1, 0, 1], "none", [], []),
         ha.create_dl_layer_convolution(i["x"], "B", 1, 1, 1, 5, 1, "none", "relu", [], [])], "S", "sum", [], [], []),
        "L", 1, 1, 1, 3, 1, "none", "none", [], []), X, 2, None, ["A", "B", "L"]),
    "transposed_conv": (lambda i: ha.create_dl_layer_transposed_convolution(i["x"], "L", 3, 2, 3, 1, 1, [], []), X,
                        2, None, ["L"]),
    "transposed_conv_groups": (lambda i: ha.create_dl_layer_transposed_convolution(i["x"], "L", 4, 2, 6, 2, 2, [],
                                                                                   []), X, 2, None, ["L"]),
    "batchnorm": (lambda i: ha.create_dl_layer_batch_normalization(i["x"], "L", 0.9, 1e-4, "none", [], []), X, 3,
                  None, ["L"]),
    "batchnorm_relu": (lambda i: ha.create_dl_layer_batch_normalization(i["x"], "L", 0.9, 1e-4, "relu", [], []), X,
                       3, None, ["L"]),
    "batchnorm_auto_momentum": (lambda i: ha.create_dl_layer_batch_normalization(i["x"], "L", "auto", 1e-4, "none",
                                                                                 [], []), X, 3, None, ["L"]),
    "dense": (lambda i: ha.create_dl_layer_dense(i["x"], "L", 6, [], []), X, 2, None, ["L"]),
    "softmax": (lambda i: ha.create_dl_layer_softmax(i["x"], "L", [], []), X, 2, None, []),
    "max_pool": (lambda i: ha.create_dl_layer_pooling(i["x"], "L", [3, 3], [2, 2], "implicit", "maximum", [], []),
                 X, 2, SEP, []),
    "max_pool_2x2": (lambda i: ha.create_dl_layer_pooling(i["x"], "L", [2, 2], [2, 2], "none", "maximum", [], []),
                     X, 2, SEP, []),
    "avg_pool": (lambda i: ha.create_dl_layer_pooling(i["x"], "L", [3, 2], [1, 2], [1, 0], "average", [], []), X, 2,
                 None, []),
    "global_avg_pool": (lambda i: ha.create_dl_layer_pooling(i["x"], "L", [1, 1], [1, 1], "none", "global_average",
                                                             [], []), X, 2, None, []),
    "global_max_pool": (lambda i: ha.create_dl_layer_pooling(i["x"], "L", [2, 2], [1, 1], "none", "global_maximum",
                                                             [], []), X, 2, SEP, []),
    "concat_depth": (lambda i: ha.create_dl_layer_concat([i["x"], i["y"]], "L", "depth", [], []),
                     {"x": [5, 4, 2], "y": [5, 4, 3]}, 2, None, []),
    "concat_width": (lambda i: ha.create_dl_layer_concat([i["x"], i["y"]], "L", "width", [], []),
                     {"x": [2, 4, 3], "y": [5, 4, 3]}, 2, None, []),
    "elementwise_sum": (lambda i: ha.create_dl_layer_elementwise([i["x"], i["y"], i["z"]], "L", "sum",
                                                                 [0.5, -2.0, 1.5], [], []), S3, 2, None, []),
    "elementwise_product": (lambda i: ha.create_dl_layer_elementwise([i["x"], i["y"], i["z"]], "L", "product", [],
                                                                     [], []), S3, 2, None, []),
    "elementwise_maximum": (lambda i: ha.create_dl_layer_elementwise([i["x"], i["y"], i["z"]], "L", "maximum", [],
                                                                     [], []), S3, 2, None, []),
    "elementwise_minimum": (lambda i: ha.create_dl_layer_elementwise([i["x"], i["y"], i["z"]], "L", "minimum", [],
                                                                     [], []), S3, 2, None, []),
    "reshape": (lambda i: ha.create_dl_layer_reshape(i["x"], "L", [-1, 2, 0], [], []), X, 2, None, []),
    "zoom_bilinear": (lambda i: ha.create_dl_layer_zoom_factor(i["x"], "L", 1.5, 2.0, "bilinear", "false", [], []),
                      X, 2, None, []),
    "zoom_bilinear_align": (lambda i: ha.create_dl_layer_zoom_size(i["x"], "L", 3, 4, "bilinear", "true", [], []),
                            X, 2, None, []),
    "zoom_nearest": (lambda i: ha.create_dl_layer_zoom_factor(i["x"], "L", 2.0, 0.5, "nearest_neighbor", "false", [],
                                                              []), X, 2, None, []),
    "depth_max": (lambda i: ha.create_dl_layer_depth_max_s(i["x"], "L", "value", [], [])[1], X, 2, SEP, []),
    "dropout": (lambda i: ha.create_dl_layer_dropout(i["x"], "L", 0.4, [], []), X, 2, None, []),
}
for _t, _names, _values in [("relu", [], []), ("sigmoid", [], []), ("tanh", [], []), ("gelu", [], []),
                            ("swish", [], []), ("mish", [], []), ("elu", ["alpha"], [0.5]), ("softplus", [], []),
                            ("hard_swish", [], []), ("atan", [], [])]:
    LAYERS["activation_" + _t] = ((lambda t, n, v: lambda i: ha.create_dl_layer_activation(i["x"], "L", t, n, v))(
        _t, _names, _values), X, 2, None, [])


def make_pair(build, shapes, batch, data, solver):
    ps = []
    for runtime in ("cpu", "gpu"):
        ha.set_system("seed_rand", 17)
        p = Probe(build, shapes, batch, seed=3, input_data=data)
        ha.set_dl_model_param(p.model, "solver_type", solver)
        ha.set_dl_model_param(p.model, "learning_rate", 0.05 if solver == "sgd" else 0.01)
        ha.set_dl_model_param(p.model, "momentum", 0.9)
        if runtime == "gpu":
            ha.set_dl_model_param(p.model, "device", GPUS[0])
            assert ha.get_dl_model_param(p.model, "runtime") == ["gpu"]
        ps.append(p)
    return ps


def compare_step(cpu, gpu, layer, inputs, weighted):
    lc = ha.as_python_dict_s(ha.train_dl_model_batch(cpu.model, cpu.samples))["total_loss"]
    lg = ha.as_python_dict_s(ha.train_dl_model_batch(gpu.model, gpu.samples))["total_loss"]
    assert abs(lc - lg) <= RTOL * max(abs(lc), 1e-12), (lc, lg)
    assert_close("output", ha.get_dl_model_layer_activations(cpu.model, layer),
                 ha.get_dl_model_layer_activations(gpu.model, layer))
    assert_close("output gradient", ha.get_dl_model_layer_gradients(cpu.model, layer),
                 ha.get_dl_model_layer_gradients(gpu.model, layer))
    for n in inputs:
        assert_close(f"input gradient {n}", ha.get_dl_model_layer_gradients(cpu.model, n),
                     ha.get_dl_model_layer_gradients(gpu.model, n))
    for w in weighted:
        for t in ("weights", "bias"):
            try:
                a = ha.get_dl_model_layer_weights(cpu.model, w, t + "_gradient")
            except ha.HOperatorError:
                continue  # no bias
            assert_close(f"{w} {t} gradient", a, ha.get_dl_model_layer_weights(gpu.model, w, t + "_gradient"))
            assert_close(f"{w} {t} after the update", ha.get_dl_model_layer_weights(cpu.model, w, t),
                         ha.get_dl_model_layer_weights(gpu.model, w, t))
        for t in ("batchnorm_mean", "batchnorm_variance"):  # running statistics, updated on the device
            try:
                a = ha.get_dl_model_layer_weights(cpu.model, w, t)
            except ha.HOperatorError:
                continue  # not a batch normalisation
            assert_close(f"{w} {t}", a, ha.get_dl_model_layer_weights(gpu.model, w, t))


@pytest.mark.parametrize("case", list(LAYERS))
def test_layer_matches_cpu(case):
    build, shapes, batch, data, weighted = LAYERS[case]
    cpu, gpu = make_pair(build, shapes, batch, data, "sgd")
    for _ in range(2):  # the second step reads the momentum the first one left
        compare_step(cpu, gpu, "L", list(shapes), weighted)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_solvers_match_cpu(solver):
    def build(i):
        a = ha.create_dl_layer_convolution(i["x"], "c1", 3, 1, 1, 6, 1, "half_kernel_size", "none", [], [])
        b = ha.create_dl_layer_batch_normalization(a, "bn", 0.9, 1e-4, "relu", [], [])
        return ha.create_dl_layer_dense(b, "L", 3, [], [])
    cpu, gpu = make_pair(build, X, 4, None, solver)
    ha.set_dl_model_param(cpu.model, "weight_prior", 1e-3)
    ha.set_dl_model_param(gpu.model, "weight_prior", 1e-3)
    for _ in range(3):
        compare_step(cpu, gpu, "L", ["x"], ["c1", "bn", "L"])


# --- channels-last: the layers that take it, between convolutions ---------------------------------------------------
# The GPU keeps activations channels-last (N, H, W, C) wherever every layer touching them takes that layout (batch
# normalisation, pooling, activations, elementwise, dropout, convolutions), so a layer whose neighbours are
# convolutions reads and writes channels-last tensors. Here each input passes a 1x1 convolution fixed to the identity
# (no bias, learning-rate multiplier 0): the layer under test sees exactly the samples of the plain cases above, and
# that convolution turns the plain input into a channels-last tensor; a 1x1 convolution `post` takes the layer's
# output back to the plain tensor the loss reads. So both directions of a convolution whose two activations differ
# in layout are covered too (and the input gradient passes both).
CHANNELS_LAST = [k for k in LAYERS if k.startswith(("conv", "transposed_conv", "batchnorm", "max_pool", "avg_pool",
                                                    "global_", "activation_", "elementwise_", "dropout"))]


def between_identity_convolutions(build):
    def build_(inputs):
        pre = {n: ha.create_dl_layer_convolution(x, "pre_" + n, 1, 1, 1, ha.get_dl_layer_param(x, "shape")[2], 1,
                                                 "none", "none", ["bias_term", "learning_rate_multiplier"],
                                                 ["false", 0.0])
               for n, x in inputs.items()}
        out = build(pre)
        return ha.create_dl_layer_convolution(out, "post", 1, 1, 1, ha.get_dl_layer_param(out, "shape")[2], 1, "none",
                                              "none", [], [])
    return build_


@pytest.mark.parametrize("case", CHANNELS_LAST)
def test_layer_matches_cpu_between_channels_last_convolutions(case):
    import os
    from opendl import _core
    build, shapes, batch, data, weighted = LAYERS[case]
    cpu, gpu = make_pair(between_identity_convolutions(build), shapes, batch, data, "sgd")
    for p in (cpu, gpu):
        for n in shapes:
            w = ha.get_dl_model_layer_weights(p.model, "pre_" + n, "weights")
            eye = np.zeros_like(w)
            eye[np.arange(w.shape[0]), np.arange(w.shape[0]), 0, 0] = 1.0
            ha.set_dl_model_layer_weights(eye, p.model, "pre_" + n, "weights")
    for _ in range(2):
        compare_step(cpu, gpu, "L", list(shapes), weighted + ["post"])
    blocks = _core._layer_blocks(gpu.model.core("test"))
    if os.environ.get("OPENDL_ACTIVATION_LAYOUT", "") not in ("plain", "blocked"):
        assert blocks["L"] > 0 and all(blocks["pre_" + n] > 0 for n in shapes), blocks
        assert blocks["post"] == 0 and all(blocks[n] == 0 for n in shapes), blocks


@pytest.mark.parametrize("c, depthwise, multiplier", [(24, True, 1), (72, False, 2)])
def test_a_network_trains_channels_last_on_the_gpu_as_plain_and_as_on_the_cpu(c, depthwise, multiplier):
    """test_blocked_layouts' network (convolutions, batch norm, max and average pooling, ReLU6, a depthwise or plain
    branch, a residual sum, global pooling, dense, softmax) on the GPU with channels-last and with plain
    activations: losses, weights, activations, gradients and apply results as on the CPU with plain activations.
    72 channels span three of the channels-last reduction's 32-channel tiles; micro-batches (multiplier 2) add the
    second one's weight gradients to the first's. Without grouped convolutions every convolution must have run
    channels-last (a plain plan would mean cuDNN offered no channels-last FP32 algorithm)."""
    import os
    from opendl import _core
    from test_blocked_layouts import batches, build, fitting_batches, layer_blocks
    forced_plain = os.environ.get("OPENDL_ACTIVATION_LAYOUT", "") in ("plain", "blocked")
    runs = {}
    try:
        for runtime, blocked in (("cpu", False), ("gpu", False), ("gpu", True)):
            model = build(blocked, depthwise=depthwise, c=c)
            ha.set_dl_model_param(model, "keep_layer_gradients", "true")
            ha.set_dl_model_param(model, "batch_size", 6 // multiplier)
            ha.set_dl_model_param(model, "batch_size_multiplier", multiplier)
            if runtime == "gpu":
                ha.set_dl_model_param(model, "device", GPUS[0])
                plans = _core._conv_plans(model.core("test"))
            losses = [ha.as_python_dict_s(ha.train_dl_model_batch(model, b))["total_loss"] for b in fitting_batches()]
            if runtime == "gpu" and blocked and not forced_plain:
                after = _core._conv_plans(model.core("test"))
                assert after["channels_last"] > plans["channels_last"], (plans, after)
                if not depthwise:
                    assert after["plain"] == plans["plain"], (plans, after)
                blocks = layer_blocks(model)
                for name in ("conv1", "bn1", "pool1", "conv2", "bn2", "relu6", "dw", "sum", "pool2", "conv3"):
                    assert blocks[name] == c, (name, blocks)
                for name in ("image", "gap", "fc", "softmax", "loss"):
                    assert blocks[name] == 0, (name, blocks)
            weights = {(l, t): ha.get_dl_model_layer_weights(model, l, t).copy()
                       for l in ("conv1", "bn1", "conv2", "bn2", "dw", "conv3", "fc") for t in ("weights", "bias")
                       if not (l == "conv2" and t == "bias")}
            acts = {n: ha.get_dl_model_layer_activations(model, n).copy() for n in ("bn1", "sum", "conv3")}
            grads = {n: ha.get_dl_model_layer_gradients(model, n).copy() for n in ("bn1", "pool1", "conv3")}
            out = [ha.as_python_dict(r) for r in ha.apply_dl_model(model, batches(1, seed=9)[0][:6 // multiplier],
                                                                   ["softmax", "pool2"])]
            runs[(runtime, blocked)] = losses, weights, acts, grads, out
    finally:
        _core._set_blocked_layouts(True)
    l0, w0, a0, g0, o0 = runs[("cpu", False)]
    for key in (("gpu", False), ("gpu", True)):
        l1, w1, a1, g1, o1 = runs[key]
        np.testing.assert_allclose(l1, l0, rtol=RTOL, err_msg=str(key))
        for k in w0:
            assert_close(f"{key} {k}", w0[k], w1[k])
        for d0, d1 in ((a0, a1), (g0, g1)):
            for k in d0:
                assert_close(f"{key} {k}", d0[k], d1[k])
        for r0, r1 in zip(o0, o1):
            for k in ("softmax", "pool2"):
                assert_close(f"{key} apply {k}", r0[k], r1[k])


# --- losses: a model whose only loss is the layer under test, compared through the input gradient ----------------

def _ce(i):
    return ha.create_dl_layer_loss_cross_entropy(ha.create_dl_layer_softmax(i["x"], "sm", [], []), i["t"], i["w"],
                                                 "loss", 1.0, [], [])


LOSSES = {
    "cross_entropy": (_ce, {"x": [3, 2, 4], "t": [3, 2, 1], "w": [3, 2, 1]},
                      lambda r: {"x": r.standard_normal((2, 3, 4)), "t": r.integers(0, 4, (2, 3, 1)),
                                 "w": r.uniform(0.5, 2, (2, 3, 1))}),
    "huber": (lambda i: ha.create_dl_layer_loss_huber(i["x"], i["t"], i["w"], i["n"], "loss", 1.0, 0.5, [], []),
              {"x": [4, 3, 2], "t": [4, 3, 2], "w": [4, 3, 2], "n": [1, 1, 1]},
              lambda r: {"x": r.standard_normal((3, 4, 2)), "t": r.standard_normal((3, 4, 2)),
                         "w": r.uniform(0.5, 2, (3, 4, 2)), "n": 3.0}),
    "focal": (lambda i: ha.create_dl_layer_loss_focal(i["x"], i["t"], i["w"], [], "loss", 1.0, 2.0, [0.25, 0.5, 0.75],
                                                      "focal_binary", [], []),
              {"x": [4, 3, 3], "t": [4, 3, 1], "w": [4, 3, 1]},
              lambda r: {"x": r.standard_normal((3, 4, 3)), "t": r.integers(-1, 3, (3, 4, 1)),
                         "w": r.uniform(0.5, 2, (3, 4, 1))}),
    "distance_l1": (lambda i: ha.create_dl_layer_loss_distance(i["x"], i["t"], i["w"], "loss", "l1", 1.0, [], []),
                    {"x": [4, 3, 2], "t": [4, 3, 2], "w": [4, 3, 2]},
                    lambda r: {"x": r.standard_normal((3, 4, 2)), "t": r.standard_normal((3, 4, 2)),
                               "w": r.uniform(0.5, 2, (3, 4, 2))}),
    "distance_l2": (lambda i: ha.create_dl_layer_loss_distance(i["x"], i["t"], i["w"], "loss", "l2", 1.0, [], []),
                    {"x": [4, 3, 2], "t": [4, 3, 2], "w": [4, 3, 2]},
                    lambda r: {"x": r.standard_normal((3, 4, 2)), "t": r.standard_normal((3, 4, 2)),
                               "w": r.uniform(0.5, 2, (3, 4, 2))}),
}


@pytest.mark.parametrize("case", list(LOSSES))
def test_loss_matches_cpu(case):
    make, shapes, draw = LOSSES[case]
    rng = np.random.default_rng(9)
    samples = [{k: (np.asarray(v, np.float32) if not isinstance(v, float) else v) for k, v in draw(rng).items()}
               for _ in range(2)]
    out = []
    for runtime in ("cpu", "gpu"):
        inputs = {n: ha.create_dl_layer_input(n, s, [], []) for n, s in shapes.items()}
        m = ha.create_dl_model(make(inputs))
        ha.set_dl_model_param(m, "batch_size", 2)
        ha.set_dl_model_param(m, "keep_layer_gradients", "true")
        if runtime == "gpu":
            ha.set_dl_model_param(m, "runtime", "gpu")
        loss = ha.as_python_dict_s(ha.train_dl_model_batch(m, samples))["total_loss"]
        out.append((loss, ha.get_dl_model_layer_gradients(m, "x")))
    assert abs(out[0][0] - out[1][0]) <= RTOL * abs(out[0][0]), (out[0][0], out[1][0])
    assert_close("input gradient", out[0][1], out[1][1])


# --- devices: moves are lossless, errors leave the model where it was ----------------------------------------------

def test_moving_between_devices_keeps_weights_and_solver_state():
    build, shapes, batch, data, weighted = LAYERS["conv_relu"]
    ha.set_system("cudnn_deterministic", "true")  # bitwise comparisons below
    a, b = make_pair(build, shapes, batch, data, "sgd")  # b is on the GPU
    ha.set_dl_model_param(a.model, "runtime", "gpu")
    ha.train_dl_model_batch(a.model, a.samples)
    ha.train_dl_model_batch(b.model, b.samples)
    w = ha.get_dl_model_layer_weights(a.model, "L", "weights")
    ha.set_dl_model_param(a.model, "runtime", "cpu")
    np.testing.assert_array_equal(ha.get_dl_model_layer_weights(a.model, "L", "weights"), w)
    ha.set_dl_model_param(a.model, "runtime", "gpu")
    # the momentum survived both moves: the next steps match a model that never left the GPU
    la = ha.as_python_dict_s(ha.train_dl_model_batch(a.model, a.samples))["total_loss"]
    lb = ha.as_python_dict_s(ha.train_dl_model_batch(b.model, b.samples))["total_loss"]
    assert la == lb
    np.testing.assert_array_equal(ha.get_dl_model_layer_weights(a.model, "L", "weights"),
                                  ha.get_dl_model_layer_weights(b.model, "L", "weights"))
    ha.set_system("cudnn_deterministic", "false")


def test_a_gpu_that_does_not_exist_is_refused():
    build, shapes, batch, data, _ = LAYERS["conv"]
    ha.set_system("seed_rand", 17)
    p = Probe(build, shapes, batch)
    w = ha.get_dl_model_layer_weights(p.model, "L", "weights")
    ha.set_dl_model_param(p.model, "gpu", len(GPUS) + 3)  # recorded only: the model is on the CPU
    with pytest.raises(ha.HOperatorError) as e:
        ha.set_dl_model_param(p.model, "runtime", "gpu")
    assert e.value.code == 1302 and "does not exist" in str(e.value)
    assert ha.get_dl_model_param(p.model, "runtime") == ["cpu"]
    np.testing.assert_array_equal(ha.get_dl_model_layer_weights(p.model, "L", "weights"), w)


def test_training_the_compact_classifier_on_the_gpu_learns_the_demo_data(tmp_path):
    """End to end: the built-in compact classifier trains on the embedded demo data on the GPU as on the CPU."""
    from opendl import demo
    from test_training import new_model
    demo.write_demo_dataset(str(tmp_path / "images"), num_per_class=16, seed=3, size=32)
    ha.set_system("seed_rand", 5)
    ds = ha.read_dl_dataset_classification(str(tmp_path / "images"), "last_folder")
    ha.split_dl_dataset(ds, 70, 15, [])
    losses = {}
    for runtime in ("cpu", "gpu"):
        m = new_model(ds)  # test_training's compact classifier: seed 11, batch 8, Adam at 0.002
        ha.set_dl_model_param(m, "runtime", runtime)
        pp = ha.create_dl_preprocess_param_from_model(m, "none", "full_domain", [], [], [])
        path = ha.preprocess_dl_dataset(ds, str(tmp_path / f"pre_{runtime}"), pp, [])
        d = ha.read_dict(path, [], [])
        tp = ha.create_dl_train_param(m, 6, 0, "false", 1, [], [])
        results, _, _ = ha.train_dl_model(d, m, tp, 0)
        losses[runtime] = [ha.get_dict_tuple_s(r, "total_loss") for r in results]
    g = losses["gpu"]
    assert np.mean(g[-5:]) < 0.6 * np.mean(g[:5])
    # same start, same data order: the first steps agree closely, before float32 rounding differences grow
    assert abs(losses["cpu"][0] - g[0]) <= 1e-3 * abs(losses["cpu"][0])


# --- issue 8 on the GPU: deterministic training; issue 4: out of device memory -------------------------------------

def _compact_pair_model(seed):
    def build(i):
        a = ha.create_dl_layer_convolution(i["x"], "c1", 3, 1, 1, 8, 1, "half_kernel_size", "none", [], [])
        b = ha.create_dl_layer_batch_normalization(a, "bn", 0.9, 1e-4, "relu", [], [])
        c = ha.create_dl_layer_pooling(b, "pool", [2, 2], [2, 2], "none", "maximum", [], [])
        d = ha.create_dl_layer_dropout(c, "drop", 0.25, [], [])
        return ha.create_dl_layer_dense(d, "L", 3, [], [])
    ha.set_system("seed_rand", seed)
    p = Probe(build, {"x": [16, 12, 3]}, 8, seed=3)
    ha.set_dl_model_param(p.model, "solver_type", "adam")
    ha.set_dl_model_param(p.model, "learning_rate", 0.01)
    ha.set_dl_model_param(p.model, "device", GPUS[0])
    return p


def test_cudnn_deterministic_training_repeats_bit_for_bit_on_the_gpu():
    """set_system('cudnn_deterministic', 'true'): the same seed and samples give bit-identical losses, weights and
    batch-norm statistics in two runs (convolution, batch norm, pooling, dropout, dense, Adam)."""
    ha.set_system("cudnn_deterministic", "true")
    try:
        runs = []
        for _ in range(2):
            p = _compact_pair_model(21)
            losses = [ha.as_python_dict_s(ha.train_dl_model_batch(p.model, p.samples))["total_loss"]
                      for _ in range(4)]
            runs.append((losses, {(l, t): ha.get_dl_model_layer_weights(p.model, l, t)
                                  for l, t in (("c1", "weights"), ("bn", "batchnorm_mean"),
                                               ("bn", "batchnorm_variance"), ("L", "weights"), ("L", "bias"))}))
        assert runs[0][0] == runs[1][0]
        for k, w in runs[0][1].items():
            np.testing.assert_array_equal(w, runs[1][1][k], err_msg=str(k))
    finally:
        ha.set_system("cudnn_deterministic", "false")


def test_out_of_gpu_memory_raises_4104_and_the_model_trains_on():
    p = _compact_pair_model(22)
    ha.train_dl_model_batch(p.model, p.samples)
    w = ha.get_dl_model_layer_weights(p.model, "c1", "weights")
    free_total = GPUS[0].core("get_dl_model_param")["total_memory"]
    per_sample = 16 * 12 * 8 * 4 * 4  # far below the real need of a sample (activations, gradients, scratch)
    with pytest.raises(ha.HOperatorError) as e:
        ha.set_dl_model_param(p.model, "batch_size", 4 * free_total // per_sample)
    assert e.value.error_code == 4104 and "MiB" in str(e.value)
    assert ha.get_dl_model_param(p.model, "batch_size") == [8]
    np.testing.assert_array_equal(ha.get_dl_model_layer_weights(p.model, "c1", "weights"), w)
    loss = ha.as_python_dict_s(ha.train_dl_model_batch(p.model, p.samples))["total_loss"]
    assert np.isfinite(loss)


def test_the_detector_trains_on_the_gpu_as_on_the_cpu():
    """The detection model (anchors, assignment, targets, focal and Huber losses, and apply_dl_model's proposals on
    the device): the first steps' losses agree with the CPU's."""
    from detection_helpers import samples as det_samples, scene
    rng = np.random.default_rng(4)
    data = det_samples([scene(rng) for _ in range(4)])
    out = {}
    for runtime in ("cpu", "gpu"):
        ha.set_system("seed_rand", 9)
        m = ha.create_dl_model_detection("pretrained_dl_classifier_compact.hdl", 3,
                                         {"image_dimensions": [64, 64, 1], "class_ids": [1, 2, 3], "capacity": "low"})
        ha.set_dl_model_param(m, "batch_size", 4)
        ha.set_dl_model_param(m, "solver_type", "adam")
        ha.set_dl_model_param(m, "learning_rate", 0.001)
        ha.set_dl_model_param(m, "runtime", runtime)
        out[runtime] = [ha.as_python_dict_s(ha.train_dl_model_batch(m, data)) for _ in range(3)]
        out[runtime + "_boxes"] = [ha.get_dict_tuple(r, "bbox_row1") for r in ha.apply_dl_model(m, data[:2], [])]
    for c, g in zip(out["cpu"], out["gpu"]):
        assert c.keys() == g.keys()
        for k in c:
            assert abs(c[k] - g[k]) <= 1e-3 * max(abs(c[k]), 1e-6), (k, c[k], g[k])
    for c, g in zip(out["cpu_boxes"], out["gpu_boxes"]):
        assert len(c) == len(g)


def _proposal_model(rect2, runtime):
    """Two levels of class scores and box deltas from input layers (bit-identical inputs on both devices), their
    anchors and a box_proposals layer cutting to 40 candidates per level and 20 records, with class-agnostic NMS
    (and a class without orientation for rectangle2)."""
    img = ha.create_dl_layer_input("image", [32, 32, 1], [], [])
    angles = [0.0, 0.7] if rect2 else []
    A, K, D = 2 * max(1, len(angles)), 3, (6 if rect2 else 4)
    cls, box, anc = [], [], []
    for lv, size in ((2, 8), (3, 4)):
        cls.append(ha.create_dl_layer_input(f"cls{lv}", [size, size, A * K], [], []))
        box.append(ha.create_dl_layer_input(f"box{lv}", [size, size, A * D], [], []))
        anc.append(ha.create_dl_layer_anchors(cls[-1], img, f"anc{lv}", [1.0, 2.0], 1, angles, [], []))
    names = ["min_confidence", "max_overlap", "max_overlap_class_agnostic", "max_num_detections", "max_num_pre_nms"]
    values = [0.3, 0.4, 0.6, 20, 40]
    if rect2:
        names, values = names + ["class_ids_no_orientation"], values + [1]
    m = ha.create_dl_model([ha.create_dl_layer_box_proposals(cls, box, anc, img, "props", names, values)])
    ha.set_dl_model_param(m, "batch_size", 3)
    ha.set_dl_model_param(m, "runtime", runtime)
    rng = np.random.default_rng(5)
    data = []
    for _ in range(3):
        s = {"image": np.zeros((32, 32, 1), np.float32)}
        for lv, size in ((2, 8), (3, 4)):
            s[f"cls{lv}"] = rng.normal(-0.5, 1.0, (size, size, A * K)).astype(np.float32)
            s[f"box{lv}"] = rng.normal(0.0, 0.3, (size, size, A * D)).astype(np.float32)
        data.append(s)
    return m, data


@pytest.mark.parametrize("rect2", [False, True])
def test_box_proposals_on_the_gpu_match_the_cpu(rect2):
    """Selection (CUB's sort of the keys), decoding and both NMS passes (bit masks, block-wide scan) on the device
    give the CPU's records: the same classes and confidences in the same order, boxes equal up to the device's
    exp / sin / cos / atan2 (a few ulps in double, rounded to float)."""
    out = {}
    for runtime in ("cpu", "gpu"):
        m, data = _proposal_model(rect2, runtime)
        out[runtime] = [np.asarray(ha.get_dict_object(r, "props")) for r in ha.apply_dl_model(m, data, ["props"])]
    for c, g in zip(out["cpu"], out["gpu"]):
        P = c.shape[0] - 2
        np.testing.assert_array_equal(g[P], c[P])            # classes (-1: unused records)
        np.testing.assert_allclose(g[P + 1], c[P + 1], rtol=1e-6)
        np.testing.assert_allclose(g[:P], c[:P], rtol=1e-5, atol=1e-5)
        assert np.sum(c[P] >= 0) == 20                       # the record limit was reached


# --- issue 4: training steps recorded once as a CUDA graph and replayed -----------------------------------------

def _graph_model(seed, multiplier):
    def build(i):
        a = ha.create_dl_layer_convolution(i["x"], "c1", 3, 1, 1, 8, 1, "half_kernel_size", "none", [], [])
        b = ha.create_dl_layer_batch_normalization(a, "bn", 0.9, 1e-4, "relu", [], [])
        c = ha.create_dl_layer_pooling(b, "pool", [2, 2], [2, 2], "none", "maximum", [], [])
        return ha.create_dl_layer_dense(c, "L", 3, [], [])
    ha.set_system("seed_rand", seed)
    p = Probe(build, {"x": [16, 12, 3]}, 4, seed=5)
    ha.set_dl_model_param(p.model, "solver_type", "adam")
    ha.set_dl_model_param(p.model, "learning_rate", 0.01)
    ha.set_dl_model_param(p.model, "batch_size_multiplier", multiplier)
    ha.set_dl_model_param(p.model, "device", GPUS[0])
    return p


@pytest.mark.parametrize("multiplier", [1, 3])
def test_recorded_training_steps_give_what_steps_launched_one_by_one_give(multiplier):
    """'gpu_graphs' on: the first step runs directly, the second is recorded and replayed, later ones replay (one
    recording per micro-batch kind). With deterministic cuDNN algorithms both ways give bit-identical losses,
    weights and statistics, also across a batch-size change (new buffers: recorded again) and a learning-rate
    change (the solver runs outside the recording: kept)."""
    from opendl import _core
    ha.set_system("cudnn_deterministic", "true")
    runs = {}
    try:
        for graphs in ("false", "true"):
            ha.set_system("gpu_graphs", graphs)
            p = _graph_model(41, multiplier)
            data = p.samples * multiplier
            losses = [ha.as_python_dict_s(ha.train_dl_model_batch(p.model, data))["total_loss"] for _ in range(4)]
            ha.set_dl_model_param(p.model, "learning_rate", 0.005)
            losses += [ha.as_python_dict_s(ha.train_dl_model_batch(p.model, data))["total_loss"] for _ in range(2)]
            ha.set_dl_model_param(p.model, "batch_size", 2)
            losses += [ha.as_python_dict_s(ha.train_dl_model_batch(p.model, data[:2 * multiplier]))["total_loss"]
                       for _ in range(3)]
            runs[graphs] = (losses, {(l, t): ha.get_dl_model_layer_weights(p.model, l, t)
                                     for l, t in (("c1", "weights"), ("bn", "batchnorm_mean"),
                                                  ("bn", "batchnorm_variance"), ("L", "weights"))},
                            _core._train_step_graphs(p.model.core("test")))
    finally:
        ha.set_system("gpu_graphs", "true")
        ha.set_system("cudnn_deterministic", "false")
    assert runs["false"][2] == {"recorded": 0, "refused": 0, "replayed": 0}
    # Two kinds of micro-batch with a multiplier: the first overwrites the gradients, later ones add to them. Each
    # kind runs directly once per buffer set (6 steps at batch 4, then 3 at batch 2) and is replayed from then on.
    kinds = 1 if multiplier == 1 else 2
    assert runs["true"][2] == {"recorded": 2 * kinds, "refused": 0, "replayed": 9 * multiplier - 2 * kinds}
    assert runs["true"][0] == runs["false"][0]
    for k, w in runs["false"][1].items():
        np.testing.assert_array_equal(runs["true"][1][k], w, err_msg=str(k))


def test_detection_training_steps_are_recorded_and_replayed_bit_for_bit():
    """The detector's training step has no host computation (anchors are constants, the assignment and targets
    are device kernels, the proposals do not run in training), so it is recorded; replays give what direct launches
    give, with deterministic cuDNN algorithms and atomics that only take maxima and integer sums."""
    from opendl import _core
    from detection_helpers import samples as det_samples, scene
    rng = np.random.default_rng(8)
    data = det_samples([scene(rng) for _ in range(4)])
    ha.set_system("cudnn_deterministic", "true")
    runs = {}
    try:
        for graphs in ("false", "true"):
            ha.set_system("gpu_graphs", graphs)
            ha.set_system("seed_rand", 3)
            m = ha.create_dl_model_detection("pretrained_dl_classifier_compact.hdl", 3,
                                             {"image_dimensions": [64, 64, 1], "class_ids": [1, 2, 3],
                                              "capacity": "low", "class_weights": [0.3, 0.3, 0.4]})
            ha.set_dl_model_param(m, "batch_size", 4)
            ha.set_dl_model_param(m, "device", GPUS[0])
            losses = [ha.as_python_dict_s(ha.train_dl_model_batch(m, data)) for _ in range(5)]
            names = [n for n in ha.get_dl_model_param(m, "layer_names")
                     if ha.get_dl_model_layer_param(m, n, "type") == ["convolution"]][:3] + ["class_scores_2"]
            runs[graphs] = (losses, {n: ha.get_dl_model_layer_weights(m, n, "weights") for n in names},
                            _core._train_step_graphs(m.core("test")))
    finally:
        ha.set_system("gpu_graphs", "true")
        ha.set_system("cudnn_deterministic", "false")
    assert runs["true"][2] == {"recorded": 1, "refused": 0, "replayed": 4}
    assert runs["true"][0] == runs["false"][0]
    for k, w in runs["false"][1].items():
        np.testing.assert_array_equal(runs["true"][1][k], w, err_msg=k)


def test_dropout_networks_are_recorded_and_draw_new_masks_in_every_replay():
    """Dropout reads the step's seed from device memory (uploaded before each step, outside the recording), so its
    network is recorded, every replay draws new masks, and the losses and weights are those of direct launches."""
    from opendl import _core
    ha.set_system("cudnn_deterministic", "true")
    runs = {}
    try:
        for graphs in ("false", "true"):
            ha.set_system("gpu_graphs", graphs)
            p = _compact_pair_model(23)
            losses = [ha.as_python_dict_s(ha.train_dl_model_batch(p.model, p.samples))["total_loss"]
                      for _ in range(5)]
            masks = []
            for _ in range(2):
                ha.train_dl_model_batch(p.model, p.samples)
                masks.append(ha.get_dl_model_layer_activations(p.model, "drop") != 0)
            runs[graphs] = (losses, ha.get_dl_model_layer_weights(p.model, "L", "weights"), masks,
                            _core._train_step_graphs(p.model.core("test")))
    finally:
        ha.set_system("gpu_graphs", "true")
        ha.set_system("cudnn_deterministic", "false")
    assert runs["true"][3] == {"recorded": 1, "refused": 0, "replayed": 6}  # 7 steps: the first direct
    assert runs["true"][0] == runs["false"][0]
    np.testing.assert_array_equal(runs["true"][1], runs["false"][1])
    for a, b in zip(runs["true"][2], runs["false"][2]):
        np.testing.assert_array_equal(a, b)
    assert np.any(runs["true"][2][0] != runs["true"][2][1])  # replays draw new masks


def test_a_network_that_cannot_be_recorded_trains_with_direct_launches():
    """A batch normalisation with use_global_stats differentiates on the host, so its network is not recorded
    ('refused'), and trains as with 'gpu_graphs' off."""
    from opendl import _core

    def build(i):
        a = ha.create_dl_layer_convolution(i["x"], "c1", 3, 1, 1, 8, 1, "half_kernel_size", "none", [], [])
        b = ha.create_dl_layer_batch_normalization(a, "bn", 0.9, 1e-4, "relu", ["use_global_stats"], ["true"])
        return ha.create_dl_layer_dense(b, "L", 3, [], [])
    ha.set_system("seed_rand", 23)
    p = Probe(build, {"x": [16, 12, 3]}, 4, seed=3)
    ha.set_dl_model_param(p.model, "device", GPUS[0])
    for _ in range(3):
        assert np.isfinite(ha.as_python_dict_s(ha.train_dl_model_batch(p.model, p.samples))["total_loss"])
    assert _core._train_step_graphs(p.model.core("test")) == {"recorded": 0, "refused": 1, "replayed": 0}
