"""Training steps compute 3x3 stride-1 convolutions of >= 64 channels in blocked or channels-last layouts with
Winograd F(4x4, 3x3) too (backend/cpu/winograd.cpp): the forward pass with weights transformed per call, and the
data gradient as the Winograd convolution of the output gradient with the kernels rotated by 180 degrees and
the channels swapped. The weight gradient stays on oneDNN's direct kernel.

The references are float64: the model's output from the weights it holds, and the data gradient of conv2 from
the output gradient the engine computed for it. Their error bound is that of the inference test
(test_winograd_convolutions_match_a_float64_reference): Winograd's transforms raise float32 rounding to
3e-6..1.5e-5 of the scale here (the direct kernels: 3e-7..2e-6); 5e-5 leaves a margin, while a wrong
transform entry, padding, rotation, channel swap or missing accumulation is off by O(1).
"""

import numpy as np
import pytest

import opendl as ha
from test_inference_optimization import conv_ref


def data_gradient_ref(g, w, pad):
    """float64 data gradient of y = conv_ref(x, w, b, pad) for the output gradient g (N, O, H, W)."""
    flipped = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
    return conv_ref(g, flipped, np.zeros(flipped.shape[0]), w.shape[2] - 1 - pad)


@pytest.mark.parametrize("h,w,padding,ci,co,act,residual", [
    (11, 13, "half_kernel_size", 64, 72, "none", False),  # sizes no multiple of the 4x4 tile
    (9, 10, "none", 64, 64, "relu", False),  # no padding: the data gradient's padding is 2; fused ReLU
    (10, 7, "half_kernel_size", 128, 136, "none", False),  # channels-last
    (14, 13, "half_kernel_size", 256, 256, "none", True),  # the data gradient added to the residual's
    (45, 46, "half_kernel_size", 64, 64, "none", True),  # 288 tiles: two chunks
])
def test_training_winograd_convolutions_match_a_float64_reference(h, w, padding, ci, co, act, residual):
    ha.set_system("seed_rand", 5)
    n = 2
    img = ha.create_dl_layer_input("image", [w, h, 3], [], [])
    x1 = ha.create_dl_layer_convolution(img, "conv1", 1, 1, 1, ci, 1, "none", "none", [], [])
    x = ha.create_dl_layer_convolution(x1, "conv2", 3, 1, 1, co, 1, padding, act, [], [])
    if residual:  # conv1's output gradient is the sum's gradient plus conv2's data gradient
        x = ha.create_dl_layer_elementwise([x1, x], "add", "sum", [], [], [])
    # A 1x1 convolution after conv2 keeps its output in the network's layout (a loss reads plain tensors).
    x = ha.create_dl_layer_convolution(x, "conv3", 1, 1, 1, 8, 1, "none", "none", [], [])
    ow, oh, od = ha.get_dl_layer_param(x, "shape")
    t = ha.create_dl_layer_input("t", [ow, oh, od], [], [])
    wt = ha.create_dl_layer_input("wt", [ow, oh, od], [], [])
    model = ha.create_dl_model(ha.create_dl_layer_loss_distance(x, t, wt, "loss", "l2", 1.0, [], []))
    ha.set_dl_model_param(model, "batch_size", n)
    ha.set_dl_model_param(model, "learning_rate", 1e-30)
    ha.set_dl_model_param(model, "momentum", 0.0)
    ha.set_dl_model_param(model, "keep_layer_gradients", "true")
    rng = np.random.default_rng(4)
    layers = ("conv1", "conv2", "conv3")
    for layer in layers:
        for kind in ("weights", "bias"):
            shape = ha.get_dl_model_layer_weights(model, layer, kind).shape
            ha.set_dl_model_layer_weights(rng.normal(0, 0.5, shape).astype(np.float32), model, layer, kind)
    batch = [{"image": rng.standard_normal((h, w, 3)).astype(np.float32),
              "t": rng.standard_normal((oh, ow, od)).astype(np.float32),
              "wt": rng.uniform(0.5, 1.5, (oh, ow, od)).astype(np.float32)} for _ in range(n)]
    p = {(layer, kind): ha.get_dl_model_layer_weights(model, layer, kind).astype(np.float64)
         for layer in layers for kind in ("weights", "bias")}
    ha.train_dl_model_batch(model, batch)

    def grad(layer):  # (N, H, W, C) -> (N, C, H, W)
        return ha.get_dl_model_layer_gradients(model, layer).astype(np.float64).transpose(0, 3, 1, 2)

    pad = 1 if padding == "half_kernel_size" else 0
    x0 = np.stack([s["image"] for s in batch]).astype(np.float64).transpose(0, 3, 1, 2)
    r1 = conv_ref(x0, p["conv1", "weights"], p["conv1", "bias"], 0)
    r2 = conv_ref(r1, p["conv2", "weights"], p["conv2", "bias"], pad)
    if act == "relu":
        r2 = np.maximum(r2, 0)
    if residual:
        r2 = r2 + r1
    r3 = conv_ref(r2, p["conv3", "weights"], p["conv3", "bias"], 0)
    # The forward pass, read back through the loss: d/dy sum wt (y - t)^2 / n = 2 wt (y - t) / n.
    target = np.stack([s["t"] for s in batch]).transpose(0, 3, 1, 2)
    weight = np.stack([s["wt"] for s in batch]).transpose(0, 3, 1, 2)
    y3 = target + grad("conv3") * n / (2 * weight)
    np.testing.assert_allclose(y3, r3, rtol=0, atol=5e-5 * np.abs(r3).max())
    # The data gradient of conv2, from the output gradient the engine gave it.
    g = grad("add") if residual else grad("conv2")
    if act == "relu":  # conv2's fused ReLU: its kernel gets the gradient where the output is positive
        g = g * (r2 > 0)
    want = data_gradient_ref(g, p["conv2", "weights"], pad) + (g if residual else 0)
    np.testing.assert_allclose(grad("conv1"), want, rtol=0, atol=5e-5 * np.abs(want).max())
