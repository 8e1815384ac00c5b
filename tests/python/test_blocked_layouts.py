"""Blocked activation layouts (graph/network.h): where the network keeps tensors in the CPU backend's channel-blocked
or channels-last layout, and that training and inference give the same numbers as with plain layouts everywhere.
Tensors of at least 128 channels in networks without grouped convolutions get channels-last where oneDNN has its
nhwc kernels, the others the fixed-block layout (nChw8c / nChw16c); OPENDL_ACTIVATION_LAYOUT overrides. The tests
below cover both through depths 16 (fixed block) and 136 (channels-last rows of a width no vector kernel is
specialised for).

The blocked and the plain run differ only in the order of floating-point sums (convolution accumulation inside
oneDNN, per-channel batch-norm statistics over lanes instead of planes), i.e. float32 rounding of ~1e-7 relative
per operation. Over three SGD steps of a small CNN that stays below ~1e-5 relative on the loss and the weights;
the tolerances below (1e-4 relative) leave a margin, while a wrong index in a blocked kernel (a lane or a channel
block mixed up, padding mishandled) changes values by O(1).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import opendl as ha
from opendl import _core
from gradcheck import Probe

C = 16  # a multiple of both fixed block sizes (8 with AVX2, 16 with AVX-512)


@pytest.fixture(autouse=True)
def blocked_on_afterwards():
    yield
    _core._set_blocked_layouts(True)


def build(blocked, seed=3, depthwise=True, c=C):
    _core._set_blocked_layouts(blocked)
    ha.set_system("seed_rand", seed)
    img = ha.create_dl_layer_input("image", [12, 12, 3], [], [])
    lab = ha.create_dl_layer_input("image_label_id", [1, 1, 1], [], [])
    wts = ha.create_dl_layer_input("weights", [1, 1, 1], [], [])
    x = ha.create_dl_layer_convolution(img, "conv1", 3, 1, 1, c, 1, "half_kernel_size", "none", [], [])
    x = ha.create_dl_layer_batch_normalization(x, "bn1", 0.9, 1e-5, "relu", [], [])
    x = ha.create_dl_layer_pooling(x, "pool1", [3, 3], [2, 2], [1, 1], "maximum", [], [])
    a = ha.create_dl_layer_convolution(x, "conv2", 3, 1, 1, c, 1, "half_kernel_size", "none", "bias_term", "false")
    a = ha.create_dl_layer_batch_normalization(a, "bn2", 0.9, 1e-5, "none", [], [])
    a = ha.create_dl_layer_activation(a, "relu6", "relu", "upper_bound", 6.0)
    d = ha.create_dl_layer_convolution(x, "dw", 3, 1, 1, c, c if depthwise else 1, "half_kernel_size", "none", [],
                                       [])
    x = ha.create_dl_layer_elementwise([a, d], "sum", "sum", [], [], [])
    x = ha.create_dl_layer_pooling(x, "pool2", [2, 2], [1, 1], "none", "average", [], [])
    x = ha.create_dl_layer_convolution(x, "conv3", 1, 1, 1, c, 1, "none", "relu", [], [])
    x = ha.create_dl_layer_pooling(x, "gap", [1, 1], [1, 1], "none", "global_average", [], [])
    x = ha.create_dl_layer_dense(x, "fc", 4, [], [])
    sm = ha.create_dl_layer_softmax(x, "softmax", [], [])
    model = ha.create_dl_model(ha.create_dl_layer_loss_cross_entropy(sm, lab, wts, "loss", 1.0, [], []))
    ha.set_dl_model_param(model, "batch_size", 6)
    ha.set_dl_model_param(model, "learning_rate", 0.01)
    ha.set_dl_model_param(model, "momentum", 0.9)
    return model


def batches(n=3, batch=6, seed=0):
    rng = np.random.default_rng(seed)
    return [[{"image": rng.standard_normal((12, 12, 3)).astype(np.float32), "image_label_id": int(rng.integers(4)),
              "weights": 1.0} for _ in range(batch)] for _ in range(n)]


def fitting_batches(n=4):
    return batches(1) * n  # the same batch again: the loss must fall


def layer_blocks(model):
    return _core._layer_blocks(model.core("test"))


@pytest.mark.parametrize("depthwise, c", [(True, 16), (False, 16), (False, 136), (True, 136)])
def test_plan_keeps_blocked_layouts_between_convolution_neighbours_and_plain_at_the_edges(depthwise, c):
    blocks = layer_blocks(build(True, depthwise=depthwise, c=c))
    b = blocks["conv1"]
    if b == 0:
        pytest.skip("the CPU backend has no blocked activation layout on this machine")
    # a fixed block, or channels-last (one block of all c channels) for wide tensors without grouped convolutions
    forced = os.environ.get("OPENDL_ACTIVATION_LAYOUT", "")
    assert b in ((c,) if forced == "channels_last" else (8, 16, c) if c >= 128 and not depthwise else (8, 16))
    # Between convolutions: batch norm, pooling, activation, elementwise and the convolutions' outputs.
    for name in ("conv1", "bn1", "pool1", "conv2", "bn2", "relu6", "dw", "sum", "pool2", "conv3"):
        assert blocks[name] == b, name
    # Inputs, the global pooling read by the dense layer and everything after it stay plain.
    for name in ("image", "gap", "fc", "softmax", "loss"):
        assert blocks[name] == 0, name
    assert set(layer_blocks(build(False, depthwise=depthwise, c=c)).values()) == {0}


@pytest.mark.parametrize("depthwise, c", [(True, 16), (False, 16), (False, 136)])
def test_training_and_inference_match_plain_layouts(depthwise, c):
    runs = {}
    for blocked in (False, True):
        model = build(blocked, depthwise=depthwise, c=c)
        ha.set_dl_model_param(model, "keep_layer_gradients", "true")
        if blocked:  # the layouts under test are in use (where the machine has them)
            assert max(layer_blocks(model).values()) > 0 or layer_blocks(build(True))["conv1"] == 0
        losses = [ha.as_python_dict_s(ha.train_dl_model_batch(model, b))["total_loss"] for b in fitting_batches()]
        weights = {(l, t): ha.get_dl_model_layer_weights(model, l, t).copy()
                   for l in ("conv1", "bn1", "conv2", "bn2", "dw", "conv3", "fc") for t in ("weights", "bias")
                   if not (l == "conv2" and t == "bias")}
        # Activations and gradients of blocked layers are returned in the plain (N, H, W, C) order.
        acts = {n: ha.get_dl_model_layer_activations(model, n).copy() for n in ("bn1", "sum", "conv3")}
        grads = {n: ha.get_dl_model_layer_gradients(model, n).copy() for n in ("bn1", "pool1", "conv3")}
        out = [ha.as_python_dict(r) for r in ha.apply_dl_model(model, batches(1, seed=9)[0], ["softmax", "pool2"])]
        runs[blocked] = losses, weights, acts, grads, out
    (l0, w0, a0, g0, o0), (l1, w1, a1, g1, o1) = runs[False], runs[True]
    np.testing.assert_allclose(l1, l0, rtol=1e-4)
    assert len(set(l0)) == len(l0)  # the steps changed the weights
    for k in w0:
        np.testing.assert_allclose(w1[k], w0[k], rtol=1e-4, atol=1e-6, err_msg=str(k))
    for d0, d1 in ((a0, a1), (g0, g1)):
        for k in d0:
            scale = np.abs(d0[k]).max()
            np.testing.assert_allclose(d1[k], d0[k], rtol=0, atol=1e-4 * scale, err_msg=k)
    for r0, r1 in zip(o0, o1):
        for k in ("softmax", "pool2"):
            np.testing.assert_allclose(r1[k], r0[k], rtol=1e-4, atol=1e-6 * np.abs(r0[k]).max(), err_msg=k)


# Finite-difference checks of the blocked kernels: the layer under test sits between two convolutions, so its
# input and output are blocked; the last convolution (1x1) writes the plain output the loss reads.
def between_convs(layer, c):
    def build_(inputs):
        # no bias: before a batch normalisation its gradient is exactly 0, which a relative check cannot test
        x = ha.create_dl_layer_convolution(inputs["x"], "pre", 3, 1, 1, c, 1, "half_kernel_size", "none",
                                           "bias_term", "false")
        x = layer(x)
        return ha.create_dl_layer_convolution(x, "post", 1, 1, 1, 3, 1, "none", "none", [], [])
    return build_


@pytest.mark.parametrize("name, layer", [
    ("bn_relu", lambda x: ha.create_dl_layer_batch_normalization(x, "L", 0.9, 1e-5, "relu", [], [])),
    ("bn", lambda x: ha.create_dl_layer_batch_normalization(x, "L", 0.9, 1e-5, "none", [], [])),
    ("max_3x3_s2_p1", lambda x: ha.create_dl_layer_pooling(x, "L", [3, 3], [2, 2], [1, 1], "maximum", [], [])),
    ("avg_3x3_s2_p1", lambda x: ha.create_dl_layer_pooling(x, "L", [3, 3], [2, 2], [1, 1], "average", [], [])),
    ("max_2x2", lambda x: ha.create_dl_layer_pooling(x, "L", [2, 2], [2, 2], "none", "maximum", [], [])),
    ("global_avg_2x2", lambda x: ha.create_dl_layer_pooling(x, "L", [2, 2], [1, 1], "none", "global_average", [],
                                                            [])),
    ("relu6", lambda x: ha.create_dl_layer_activation(x, "L", "relu", "upper_bound", 6.0)),
    ("transposed_k3_s2_p1", lambda x: ha.create_dl_layer_transposed_convolution(
        x, "L", 3, 2, ha.get_dl_layer_param(x, "shape")[2], 1, 1, [], [])),
])
@pytest.mark.parametrize("c", [16, 136])  # a fixed block; channels-last rows of 136 lanes (the any-width kernels)
def test_blocked_kernels_gradients(name, layer, c):
    _core._set_blocked_layouts(True)
    # Fixed initial weights: with some (seed_rand 3) a finite difference crosses a ReLU or max-pooling kink, in the
    # plain and the blocked layout alike (measured: the same errors in both); with these none is crossed.
    ha.set_system("seed_rand", 1)
    p = Probe(between_convs(layer, c), {"x": [7, 6, 3]}, batch=3, seed=4)
    if max(layer_blocks(p.model).values()) == 0:
        pytest.skip("the CPU backend has no blocked activation layout on this machine")
    assert layer_blocks(p.model)["L"] > 0
    weighted = ["pre", "post"] + (["L"] if name.startswith(("bn", "transposed")) else [])
    p.check(layers_with_weights=weighted)


def test_dropout_draws_the_same_masks_in_blocked_and_plain_layouts():
    """A dropout layer between convolutions runs on blocked tensors; its draw is taken at each element's plain
    index, so training gives the numbers of the plain layout (with masks keyed by memory position instead, about
    half the kept elements would differ and the losses by O(1))."""
    def build_(blocked):
        _core._set_blocked_layouts(blocked)
        ha.set_system("seed_rand", 5)
        img = ha.create_dl_layer_input("image", [12, 12, 3], [], [])
        lab = ha.create_dl_layer_input("image_label_id", [1, 1, 1], [], [])
        wts = ha.create_dl_layer_input("weights", [1, 1, 1], [], [])
        x = ha.create_dl_layer_convolution(img, "conv1", 3, 1, 1, C, 1, "half_kernel_size", "relu", [], [])
        x = ha.create_dl_layer_dropout(x, "drop", 0.5, [], [])
        x = ha.create_dl_layer_convolution(x, "conv2", 3, 1, 1, C, 1, "half_kernel_size", "relu", [], [])
        x = ha.create_dl_layer_pooling(x, "gap", [1, 1], [1, 1], "none", "global_average", [], [])
        sm = ha.create_dl_layer_softmax(ha.create_dl_layer_dense(x, "fc", 4, [], []), "softmax", [], [])
        model = ha.create_dl_model(ha.create_dl_layer_loss_cross_entropy(sm, lab, wts, "loss", 1.0, [], []))
        ha.set_dl_model_param(model, "batch_size", 6)
        ha.set_dl_model_param(model, "learning_rate", 0.05)
        return model

    runs = {}
    for blocked in (False, True):
        model = build_(blocked)
        if blocked and layer_blocks(model)["drop"] == 0:
            pytest.skip("the CPU backend has no blocked activation layout on this machine")
        losses = [ha.as_python_dict_s(ha.train_dl_model_batch(model, b))["total_loss"] for b in batches(3)]
        runs[blocked] = losses, ha.get_dl_model_layer_weights(model, "conv1", "weights").copy()
    np.testing.assert_allclose(runs[True][0], runs[False][0], rtol=1e-4)
    np.testing.assert_allclose(runs[True][1], runs[False][1], rtol=1e-4, atol=1e-6)
