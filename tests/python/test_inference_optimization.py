"""Inference-optimized models: set_dl_model_param(model, 'optimize_for_inference', 'true') and
optimize_dl_model_for_inference (graph/network.h, Network::set_inference_only).

An optimized model folds each batch normalisation into the convolution before it (weights and bias scaled in
double precision, the normalisation's ReLU as the convolution's post-op), holds no gradient buffers and keeps
its activations in one arena planned by liveness. Its outputs must equal the unoptimized model's: both compute
gamma * (conv(x) + b - mean) / sqrt(var + eps) + beta in float32, only the order of the rounding steps differs
(scaling the weights before the sum instead of the sum after it), about 1e-7 relative per operation; over a few
layers that stays below 1e-5 relative, so 1e-4 relative (of the tensor's largest magnitude) leaves a margin, while a
wrong fold (a channel's scale applied to another, the mean or beta dropped, the ReLU missing) changes values by O(1).
"""

from __future__ import annotations

import numpy as np
import pytest

import opendl as ha
from opendl.errors import HOperatorError

C = 16  # a multiple of the fixed activation blocks, so folded convolutions write blocked outputs too


def build(seed=5, c=C, batch=4):
    ha.set_system("seed_rand", seed)
    img = ha.create_dl_layer_input("image", [12, 12, 3], [], [])
    lab = ha.create_dl_layer_input("image_label_id", [1, 1, 1], [], [])
    wts = ha.create_dl_layer_input("weights", [1, 1, 1], [], [])
    x = ha.create_dl_layer_convolution(img, "conv1", 3, 1, 1, c, 1, "half_kernel_size", "none", [], [])
    x = ha.create_dl_layer_batch_normalization(x, "bn1", 0.9, 1e-5, "relu", [], [])
    x = ha.create_dl_layer_pooling(x, "pool1", [3, 3], [2, 2], [1, 1], "maximum", [], [])
    a = ha.create_dl_layer_convolution(x, "conv2", 3, 1, 1, c, 1, "half_kernel_size", "none", "bias_term", "false")
    a = ha.create_dl_layer_batch_normalization(a, "bn2", 0.9, 1e-3, "none", [], [])
    d = ha.create_dl_layer_convolution(x, "dw", 3, 1, 1, c, c, "half_kernel_size", "none", [], [])
    d = ha.create_dl_layer_batch_normalization(d, "bn_dw", 0.9, 1e-5, "relu", [], [])
    x = ha.create_dl_layer_elementwise([a, d], "sum", "sum", [], [], [])
    # conv3 feeds two layers: it cannot be folded (bn3 would need its output unnormalised for 'side').
    y = ha.create_dl_layer_convolution(x, "conv3", 1, 1, 1, c, 1, "none", "none", [], [])
    b3 = ha.create_dl_layer_batch_normalization(y, "bn3", 0.9, 1e-5, "relu", [], [])
    side = ha.create_dl_layer_activation(y, "side", "sigmoid", [], [])
    x = ha.create_dl_layer_elementwise([b3, side], "sum2", "sum", [], [], [])
    # a convolution with its own activation cannot take the normalisation either
    x = ha.create_dl_layer_convolution(x, "conv4", 3, 1, 1, c, 1, "half_kernel_size", "relu", [], [])
    x = ha.create_dl_layer_batch_normalization(x, "bn4", 0.9, 1e-5, "none", [], [])
    x = ha.create_dl_layer_pooling(x, "gap", [1, 1], [1, 1], "none", "global_average", [], [])
    x = ha.create_dl_layer_dense(x, "fc", 4, [], [])
    sm = ha.create_dl_layer_softmax(x, "softmax", [], [])
    model = ha.create_dl_model(ha.create_dl_layer_loss_cross_entropy(sm, lab, wts, "loss", 1.0, [], []))
    ha.set_dl_model_param(model, "batch_size", batch)
    ha.set_dl_model_param(model, "learning_rate", 0.01)
    randomize_batchnorms(model, np.random.default_rng(seed))
    return model


def randomize_batchnorms(model, rng):
    """Statistics and affine parameters far from the identity, so that every term of the fold matters."""
    for n in ha.get_dl_model_param(model, "layer_names"):
        if ha.get_dl_model_layer_param(model, n, "type")[0] != "batchnorm":
            continue
        for t in ("weights", "bias", "batchnorm_mean", "batchnorm_variance"):
            shape = ha.get_dl_model_layer_weights(model, n, t).shape
            v = rng.uniform(0.3, 2.0, shape) if t in ("weights", "batchnorm_variance") else rng.normal(0, 0.5, shape)
            ha.set_dl_model_layer_weights(v.astype(np.float32), model, n, t)


def samples(n=4, seed=0, labels=True):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        s = {"image": rng.standard_normal((12, 12, 3)).astype(np.float32)}
        if labels:
            s.update({"image_label_id": int(rng.integers(4)), "weights": 1.0})
        out.append(s)
    return out


def outputs(model, batch, names):
    res = [ha.as_python_dict(r) for r in ha.apply_dl_model(model, batch, names)]
    return {n: np.stack([np.asarray(r[n]) for r in res]) for n in names}


def assert_close(got, want):
    scale = max(float(np.max(np.abs(want))), 1e-6)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * scale)


def cpu():
    return ha.query_available_dl_devices(["runtime"], ["cpu"])[0]


def core(model):
    return model.core("test")


def test_optimized_copy_gives_the_unoptimized_outputs_and_folds_where_it_may():
    model = build()
    batch = samples()
    names = ["softmax", "fc", "bn2", "sum2"]
    want = outputs(model, batch, names)
    opt, report = ha.optimize_dl_model_for_inference(model, cpu(), "float32", [], [])
    rep = ha.as_python_dict(report)
    assert rep["runtime"] == ["cpu"] and rep["precision"] == ["float32"]
    # bn3's convolution also feeds 'side', conv4 has its own ReLU: those two stay unfolded.
    assert sorted(rep["folded_layers"]) == ["bn1", "bn2", "bn_dw"]
    got = outputs(opt, batch, names)
    assert sorted(core(opt).folded_layers()) == ["bn1", "bn2", "bn_dw"]
    for n in names:
        assert_close(got[n], want[n])
    # The source model is left as it was.
    assert ha.get_dl_model_param(model, "optimize_for_inference") == ["false"]
    assert ha.get_dl_model_param(model, "precision_is_converted") == ["false"]
    assert ha.get_dl_model_param(opt, "optimize_for_inference") == ["true"]
    assert ha.get_dl_model_param(opt, "precision_is_converted") == ["true"]
    assert ha.get_dl_model_param(opt, "precision") == ["float32"]


def test_asking_for_a_convolution_output_keeps_it_unfolded_and_exact():
    model = build()
    batch = samples()
    want = outputs(model, batch, ["conv1", "bn1", "softmax"])
    ha.set_dl_model_param(model, "optimize_for_inference", "true")
    got = outputs(model, batch, ["conv1", "bn1", "softmax"])
    assert "bn1" not in core(model).folded_layers() and "bn2" in core(model).folded_layers()
    for n in want:
        assert_close(got[n], want[n])
    # The next call with the default outputs folds bn1 again and still agrees.
    got = outputs(model, batch, ["softmax"])
    assert "bn1" in core(model).folded_layers()
    assert_close(got["softmax"], want["softmax"])


def test_only_returned_outputs_stay_readable_and_no_gradients_or_training():
    model = build()
    batch = samples()
    ha.train_dl_model_batch(model, batch)
    ha.set_dl_model_param(model, "optimize_for_inference", "true")
    ha.apply_dl_model(model, [{"image": s["image"]} for s in batch], ["bn2", "softmax"])
    assert ha.get_dl_model_layer_activations(model, "bn2").shape[0] == len(batch)
    for layer in ("conv1", "conv2", "pool1"):  # folded away or overwritten in the arena
        with pytest.raises(HOperatorError) as e:
            ha.get_dl_model_layer_activations(model, layer)
        assert e.value.error_code == 7788 and layer in str(e.value)
    with pytest.raises(HOperatorError) as e:
        ha.get_dl_model_layer_gradients(model, "conv1")
    assert e.value.error_code == 7788
    before = ha.get_dl_model_layer_weights(model, "conv1", "weights")
    with pytest.raises(HOperatorError) as e:
        ha.train_dl_model_batch(model, batch)
    assert e.value.error_code == 7788 and "optimize_for_inference" in str(e.value)
    np.testing.assert_array_equal(ha.get_dl_model_layer_weights(model, "conv1", "weights"), before)


def test_switching_back_and_forth_leaves_training_bit_identical():
    a, b = build(seed=8), build(seed=8)
    data = [samples(seed=s) for s in range(3)]
    for batch in data:
        ha.train_dl_model_batch(a, batch)
    ha.train_dl_model_batch(b, data[0])
    ha.set_dl_model_param(b, "optimize_for_inference", "true")
    ha.apply_dl_model(b, samples(seed=9, labels=False), [])
    ha.set_dl_model_param(b, "optimize_for_inference", "false")
    for batch in data[1:]:
        ha.train_dl_model_batch(b, batch)
    for layer, t in (("conv1", "weights"), ("bn2", "batchnorm_mean"), ("fc", "bias")):
        np.testing.assert_array_equal(ha.get_dl_model_layer_weights(a, layer, t),
                                      ha.get_dl_model_layer_weights(b, layer, t))


def test_weights_set_after_optimizing_are_folded_again():
    model = build()
    opt, _ = ha.optimize_dl_model_for_inference(model, cpu(), "float32", [], [])
    batch = samples(labels=False)
    outputs(opt, batch, ["softmax"])  # folds the current weights
    # conv2 is folded; conv4 (with its own ReLU) is not, but both keep their weights reordered between calls,
    # which a change must renew.
    for m in (model, opt):
        randomize_batchnorms(m, np.random.default_rng(2))
        for i, conv in enumerate(("conv2", "conv4")):
            shape = ha.get_dl_model_layer_weights(model, conv, "weights").shape
            w = np.random.default_rng(1 + i).normal(0, 0.3, shape).astype(np.float32)
            ha.set_dl_model_layer_weights(w, m, conv, "weights")
    assert_close(outputs(opt, batch, ["fc"])["fc"], outputs(model, batch, ["fc"])["fc"])


def test_activation_memory_is_planned_by_liveness():
    model = build(batch=8)
    full = core(model).buffer_bytes()
    ha.set_dl_model_param(model, "optimize_for_inference", "true")
    ha.apply_dl_model(model, samples(8, labels=False), [])
    planned = core(model).buffer_bytes()
    # Unoptimized: output and gradient buffers of every layer. Optimized: inputs, scratch and an arena in
    # which at most a few (C, 12, 12) tensors are alive at once.
    per_tensor = 8 * C * 12 * 12 * 4
    assert planned < full / 3
    assert planned < 8 * per_tensor
    # and back: every buffer again
    ha.set_dl_model_param(model, "optimize_for_inference", "false")
    assert core(model).buffer_bytes() == full


def test_batch_size_changes_save_and_load_keep_the_optimization(tmp_path):
    model = build()
    opt, _ = ha.optimize_dl_model_for_inference(model, cpu(), "float32", [], [])
    ha.set_dl_model_param(opt, "batch_size", 2)
    ha.set_dl_model_param(model, "batch_size", 2)
    batch = samples(2, labels=False)
    assert_close(outputs(opt, batch, ["softmax"])["softmax"], outputs(model, batch, ["softmax"])["softmax"])
    path = str(tmp_path / "opt.hdl")
    ha.write_dl_model(opt, path)
    back = ha.read_dl_model(path)
    assert ha.get_dl_model_param(back, "optimize_for_inference") == ["true"]
    assert ha.get_dl_model_param(back, "precision_is_converted") == ["true"]
    assert_close(outputs(back, batch, ["softmax"])["softmax"], outputs(model, batch, ["softmax"])["softmax"])


def test_built_in_resnet_folds_every_batch_normalisation_and_agrees():
    model = ha.read_dl_model("pretrained_dl_classifier_resnet18.hdl")
    ha.set_dl_model_param(model, "image_dimensions", [32, 32, 3])
    ha.set_dl_model_param(model, "class_ids", [0, 1, 2])
    ha.set_dl_model_param(model, "batch_size", 2)
    randomize_batchnorms(model, np.random.default_rng(3))
    names = ha.get_dl_model_param(model, "layer_names")
    bns = [n for n in names if ha.get_dl_model_layer_param(model, n, "type")[0] == "batchnorm"]
    batch = [{"image": np.random.default_rng(i).uniform(-1, 1, (32, 32, 3)).astype(np.float32)} for i in range(2)]
    fc = [n for n in names if ha.get_dl_model_layer_param(model, n, "type")[0] == "dense"][-1]
    want = outputs(model, batch, [fc])[fc]
    opt, report = ha.optimize_dl_model_for_inference(model, cpu(), "float32", [], [])
    assert sorted(ha.as_python_dict(report)["folded_layers"]) == sorted(bns)
    assert_close(outputs(opt, batch, [fc])[fc], want)
    res = ha.as_python_dict(ha.apply_dl_model(opt, batch, [])[0])
    assert len(res["classification_class_ids"]) == 3


def test_bad_conversions_raise_and_change_nothing():
    model = build()
    with pytest.raises(HOperatorError) as e:
        ha.optimize_dl_model_for_inference(model, cpu(), "int8", [], [])
    assert e.value.error_code == 1303 and "int8" in str(e.value)
    with pytest.raises(HOperatorError) as e:
        ha.optimize_dl_model_for_inference(model, cpu(), "float32", [], ha.from_python_dict({"calibration": 1}))
    assert e.value.error_code == 7911 and "calibration" in str(e.value)
    with pytest.raises(HOperatorError) as e:
        ha.optimize_dl_model_for_inference(model, [], "float32", [], [])
    assert e.value.error_code == 1402
    with pytest.raises(HOperatorError) as e:
        ha.set_dl_model_param(model, "optimize_for_inference", "yes")
    assert e.value.error_code == 1303
    assert ha.get_dl_model_param(model, "optimize_for_inference") == ["false"]
    ha.train_dl_model_batch(model, samples())  # still trainable


GPUS = ha.query_available_dl_devices(["runtime"], ["gpu"])


@pytest.mark.skipif(bool(GPUS), reason="a GPU is present")
def test_error_codes_carry_the_parameter_positions():
    """dlsamples is parameter 4 and gen_param 5: a bad dlsamples entry gave 1202 naming 'dlsample_batch' (the
    parameter of train_dl_model_batch), a gen_param of None 1201."""
    model = build()
    for args, code, words in ((("x", "float32", [], []), 1202, "dldevice_handle"),
                              ((cpu(), 5, [], []), 1203, "precision"),
                              ((cpu(), "float32", 5, []), 1204, "dlsamples entry 0"),
                              ((cpu(), "float32", [{"image": 0}, "s"], []), 1204, "dlsamples entry 1"),
                              ((cpu(), "float32", [], None), 1205, "gen_param"),
                              ((cpu(), "float32", [], "x"), 1205, "gen_param")):
        with pytest.raises(HOperatorError) as e:
            ha.optimize_dl_model_for_inference(model, *args)
        assert (e.value.error_code, e.value.operator_name) == (code, "optimize_dl_model_for_inference"), args
        assert words in str(e.value) and "dlsample_batch" not in str(e.value)
    assert ha.get_dl_model_param(model, "optimize_for_inference") == ["false"]


def test_clearing_a_device_handle_clears_only_that_handle():
    """Every query handed out one shared handle per device, so clear_handle on it made every later
    query_available_dl_devices, every model's 'device' and optimize_dl_model_for_inference raise 2450."""
    model = build()
    dev = ha.query_available_dl_devices("runtime", "cpu")
    ha.clear_handle(dev)
    with pytest.raises(HOperatorError) as e:
        ha.get_dl_device_param(dev[0], "name")
    assert e.value.error_code == 2450
    again = cpu()
    assert again == dev[0]  # handles on one device compare equal, as the device is one object
    assert ha.get_dl_device_param(again, "runtime") == ["cpu"]
    mine = ha.get_dl_model_param_s(model, "device")
    assert mine == again and ha.get_dl_device_param(mine, "type") == ["cpu"]
    ha.clear_handle(mine)
    assert ha.get_dl_device_param(ha.get_dl_model_param_s(model, "device"), "type") == ["cpu"]
    ha.set_dl_model_param(model, "device", again)
    ha.optimize_dl_model_for_inference(model, again, "float32", [], [])
    with pytest.raises(HOperatorError) as e:  # a cleared handle still raises where it is used
        ha.optimize_dl_model_for_inference(model, dev, "float32", [], [])
    assert e.value.error_code == 2450
    precisions = ha.get_dl_device_param(again, "precisions")
    precisions.append("int8")  # a copy: the device's information cannot be changed through it
    assert ha.get_dl_device_param(cpu(), "precisions") == ["float32"]


def test_set_dl_device_param_checks_the_counts():
    # values without names were accepted silently; a count mismatch is 1403 as in the other gen_param operators
    for names, values in (([], ["junk", 1]), (["a"], []), (["a", "b"], [1])):
        with pytest.raises(HOperatorError) as e:
            ha.set_dl_device_param(cpu(), names, values)
        assert (e.value.error_code, e.value.operator_name) == (1403, "set_dl_device_param")
    ha.set_dl_device_param(cpu(), [], [])
    with pytest.raises(HOperatorError) as e:
        ha.set_dl_device_param(cpu(), "junk", 1)
    assert e.value.error_code == 1302


def test_a_gpu_conversion_without_a_gpu_says_why_and_changes_nothing():
    """Every device handle offers the conversion; the GPU copy moves to its device, so without a usable GPU the
    conversion fails with the device's code (plugin 4204, no GPU 7708, no driver 7709, cuBLAS / cuDNN 7717 /
    7718) and the source model is untouched."""
    assert ha.get_dl_device_param(cpu(), "conversion_supported") == ["true"]
    model = build()
    before = bytes(core(model).serialize())
    with pytest.raises(HOperatorError) as e:
        core(model).optimize_for_inference("gpu", "float32", 0)
    assert e.value.error_code in (4204, 7708, 7709, 7717, 7718), str(e.value)
    with pytest.raises(HOperatorError) as e:
        core(model).optimize_for_inference("tpu", "float32", 0)
    assert e.value.error_code == 1302 and "'tpu'" in str(e.value)
    assert bytes(core(model).serialize()) == before
    ha.train_dl_model_batch(model, samples())


@pytest.mark.skipif(not GPUS, reason="no CUDA GPU")
def test_the_gpu_conversion_gives_the_cpu_outputs_on_the_gpu():
    ha.set_system("gpu_tf32", "false")
    try:
        model = build()
        batch = samples()
        names = ["softmax", "fc", "bn2", "sum2"]
        want = outputs(model, batch, names)
        assert ha.get_dl_device_param(GPUS[0], "conversion_supported") == ["true"]
        opt, report = ha.optimize_dl_model_for_inference(model, GPUS[0], "float32", [], [])
        assert ha.as_python_dict(report)["runtime"] == ["gpu"]
        assert ha.get_dl_model_param(opt, "runtime") == ["gpu"]
        assert ha.get_dl_model_param(opt, "optimize_for_inference") == ["true"]
        assert ha.get_dl_model_param(model, "runtime") == ["cpu"]
        assert sorted(core(opt).folded_layers()) == ["bn1", "bn2", "bn_dw"]
        got = outputs(opt, batch, names)
        for n in names:
            assert_close(got[n], want[n])
    finally:
        ha.set_system("gpu_tf32", "true")


def build_residual(c, seed=7, batch=4):
    """Residual blocks covering the fusion cases of Network::plan_fusions:
    add1 - identity shortcut, then a ReLU: conv b1bc (with b1bn folded) adds into the stem's buffer, r1 fused;
    add2 - projection shortcut built after the main branch: the projection (p2c, p2n folded) adds into the main
           branch's buffer (the other way round is impossible: the projection is computed later); r2 fused;
    add3 - a convolution without normalisation whose own input is the residual: not fused (the convolution
           would overwrite what it reads);
    add4 - likewise (b4c reads add3);
    add5 - adds into add3's buffer: add3's other readers (b4c, add4) run before b5c; no ReLU after it;
    add6 - coefficients (1, 0.5): not fused;
    add7 - the residual r2 is read again after the sum (by 'late'): not fused."""
    ha.set_system("seed_rand", seed)
    img = ha.create_dl_layer_input("image", [12, 12, 3], [], [])
    lab = ha.create_dl_layer_input("image_label_id", [1, 1, 1], [], [])
    wts = ha.create_dl_layer_input("weights", [1, 1, 1], [], [])

    def cbn(x, name, k, stride, act):
        y = ha.create_dl_layer_convolution(x, name + "c", k, 1, stride, c, 1, "half_kernel_size", "none", [], [])
        return ha.create_dl_layer_batch_normalization(y, name + "n", 0.9, 1e-5, act, [], [])

    def add(a, b, name, coefficients=()):
        return ha.create_dl_layer_elementwise([a, b], name, "sum", list(coefficients), [], [])

    def relu(x, name):
        return ha.create_dl_layer_activation(x, name, "relu", [], [])

    x0 = cbn(img, "stem", 3, 1, "relu")
    r1 = relu(add(cbn(cbn(x0, "b1a", 3, 1, "relu"), "b1b", 3, 1, "none"), x0, "add1"), "r1")
    y = cbn(cbn(r1, "b2a", 3, 2, "relu"), "b2b", 3, 1, "none")
    r2 = relu(add(y, cbn(r1, "p2", 1, 2, "none"), "add2"), "r2")
    y = ha.create_dl_layer_convolution(r2, "b3c", 3, 1, 1, c, 1, "half_kernel_size", "none", [], [])
    add3 = add(y, r2, "add3")
    add4 = add(cbn(add3, "b4", 3, 1, "none"), add3, "add4")
    add5 = add(cbn(add4, "b5", 3, 1, "none"), add3, "add5")
    add6 = add(cbn(add5, "b6", 3, 1, "none"), add5, "add6", (1.0, 0.5))
    add7 = add(cbn(add6, "b7", 3, 1, "none"), r2, "add7")
    late = ha.create_dl_layer_elementwise([add7, r2], "late", "maximum", [], [], [])
    x = ha.create_dl_layer_pooling(late, "gap", [1, 1], [1, 1], "none", "global_average", [], [])
    x = ha.create_dl_layer_dense(x, "fc", 4, [], [])
    sm = ha.create_dl_layer_softmax(x, "softmax", [], [])
    model = ha.create_dl_model(ha.create_dl_layer_loss_cross_entropy(sm, lab, wts, "loss", 1.0, [], []))
    ha.set_dl_model_param(model, "batch_size", batch)
    randomize_batchnorms(model, np.random.default_rng(seed))
    return model


@pytest.fixture
def blocked_on_afterwards():
    from opendl import _core
    yield _core
    _core._set_blocked_layouts(True)


@pytest.mark.parametrize("blocked,c", [(True, C), (False, C), (True, 64), (True, 128)])
def test_residual_sums_are_computed_by_the_convolutions_and_agree(blocked_on_afterwards, blocked, c):
    # Fixed-block (16: oneDNN's sum post-op; 64: Winograd's output transform adds the residual), plain (the sum
    # post-op then reads the residual through a reorder) and channels-last (128 channels, Winograd) layouts.
    blocked_on_afterwards._set_blocked_layouts(blocked)
    model = build_residual(c)
    batch = samples(labels=False)
    names = ["softmax", "fc"]
    want = outputs(model, batch, names)
    opt, report = ha.optimize_dl_model_for_inference(model, cpu(), "float32", [], [])
    fused = ["add1", "r1", "add2", "r2", "add5"]
    assert ha.as_python_dict(report)["fused_layers"] == fused
    got = outputs(opt, batch, names)
    assert core(opt).fused_layers() == fused
    for n in names:
        assert_close(got[n], want[n])
    # Asking for a sum's output keeps it readable: the ReLU after it then runs on its own, the sum stays fused.
    got = outputs(opt, batch, ["add1", "r1", "softmax"])
    assert "r1" not in core(opt).fused_layers() and "add1" in core(opt).fused_layers()
    want = outputs(model, batch, ["add1", "r1", "softmax"])
    for n in ("add1", "r1", "softmax"):
        assert_close(got[n], want[n])
    # Asking for a residual (stem's output) or the convolution's value (b1bn) keeps the sum off the post-ops.
    got = outputs(opt, batch, ["stemn", "b1bn", "softmax"])
    assert "add1" not in core(opt).fused_layers() and "add2" in core(opt).fused_layers()
    want = outputs(model, batch, ["stemn", "b1bn", "softmax"])
    for n in ("stemn", "b1bn", "softmax"):
        assert_close(got[n], want[n])


def conv_ref(x, w, b, pad):
    """float64 cross-correlation, x (N, C, H, W), w (O, C, kh, kw), zero padding `pad` on every side."""
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    kh, kw = w.shape[2:]
    oh, ow = xp.shape[2] - kh + 1, xp.shape[3] - kw + 1
    y = np.zeros((x.shape[0], w.shape[0], oh, ow))
    for i in range(kh):
        for j in range(kw):
            y += np.tensordot(xp[:, :, i:i + oh, j:j + ow], w[:, :, i, j], axes=([1], [1])).transpose(0, 3, 1, 2)
    return y + b[None, :, None, None]


@pytest.mark.parametrize("h,w,padding,ci,co", [(11, 13, "half_kernel_size", 64, 72), (9, 10, "none", 64, 64),
                                                (10, 7, "half_kernel_size", 128, 136),
                                                (14, 13, "half_kernel_size", 256, 256),
                                                (45, 46, "half_kernel_size", 64, 64)])
def test_winograd_convolutions_match_a_float64_reference(h, w, padding, ci, co):
    # Inference plans compute 3x3 stride-1 convolutions of >= 64 channels in blocked or channels-last layouts
    # with Winograd F(4x4, 3x3) (backend/cpu/winograd.cpp): sizes that are no multiple of the 4x4 output tile,
    # no padding, 128+ channels (channels-last), 256 channels, and 288 tiles of 64 channels, in two chunks
    # (256 tiles at that width, the second one partial). The reference is the layer computed in float64 from the
    # same weights. Winograd's transforms (entries up to 5 and 8) raise float32 rounding from the direct
    # kernels' 6e-7..2e-6 of the output's scale to 5e-6 (64 input channels) .. 1.1e-5 (256) here; 5e-5 leaves
    # a margin, while a wrong transform entry, tile offset, padding, chunk or lane gives errors of order 1.
    ha.set_system("seed_rand", 11)
    img = ha.create_dl_layer_input("image", [w, h, 3], [], [])
    x = ha.create_dl_layer_convolution(img, "conv1", 1, 1, 1, ci, 1, "none", "none", [], [])
    x = ha.create_dl_layer_convolution(x, "conv2", 3, 1, 1, co, 1, padding, "none", [], [])
    x = ha.create_dl_layer_activation(x, "relu", "relu", [], [])
    x = ha.create_dl_layer_pooling(x, "gap", [1, 1], [1, 1], "none", "global_average", [], [])
    model = ha.create_dl_model(ha.create_dl_layer_dense(x, "fc", 3, [], []))
    ha.set_dl_model_param(model, "batch_size", 2)
    rng = np.random.default_rng(4)
    for layer in ("conv1", "conv2"):
        for t in ("weights", "bias"):
            shape = ha.get_dl_model_layer_weights(model, layer, t).shape
            ha.set_dl_model_layer_weights(rng.normal(0, 0.5, shape).astype(np.float32), model, layer, t)
    batch = [{"image": rng.standard_normal((h, w, 3)).astype(np.float32)} for _ in range(2)]
    ha.set_dl_model_param(model, "optimize_for_inference", "true")
    got = outputs(model, batch, ["conv2", "relu"])
    wts = {(layer, t): ha.get_dl_model_layer_weights(model, layer, t).astype(np.float64)
           for layer in ("conv1", "conv2") for t in ("weights", "bias")}
    x0 = np.stack([s["image"] for s in batch]).astype(np.float64).transpose(0, 3, 1, 2)
    x1 = conv_ref(x0, wts["conv1", "weights"], wts["conv1", "bias"], 0)
    want = conv_ref(x1, wts["conv2", "weights"], wts["conv2", "bias"], 1 if padding == "half_kernel_size" else 0)
    want = want.transpose(0, 2, 3, 1)  # activations come back (N, H, W, C)
    assert got["conv2"].shape == want.shape
    scale = np.abs(want).max()
    np.testing.assert_allclose(got["conv2"], want, rtol=0, atol=5e-5 * scale)
    np.testing.assert_allclose(got["relu"], np.maximum(want, 0), rtol=0, atol=5e-5 * scale)


def test_apply_of_a_trainable_model_follows_its_weights():
    # apply_dl_model on a model that is not optimized also keeps each convolution's weights in its kernel's form
    # between calls (Network::io: reordered, or Winograd-transformed for conv2, a 3x3 stride-1 layer of 64
    # channels), and must remake them when the weights change: after set_dl_model_layer_weights and after a
    # training step. The reference is conv2 in float64 from the weights the model holds at each stage, with the
    # Winograd tolerance justified in the test above; the check that the previous stage's output differs from
    # the new reference by far more than that tolerance makes sure stale weights would fail it.
    ha.set_system("seed_rand", 17)
    img = ha.create_dl_layer_input("image", [12, 12, 3], [], [])
    lab = ha.create_dl_layer_input("image_label_id", [1, 1, 1], [], [])
    wts = ha.create_dl_layer_input("weights", [1, 1, 1], [], [])
    x = ha.create_dl_layer_convolution(img, "conv1", 1, 1, 1, 64, 1, "none", "none", [], [])
    x = ha.create_dl_layer_convolution(x, "conv2", 3, 1, 1, 64, 1, "half_kernel_size", "relu", [], [])
    x = ha.create_dl_layer_pooling(x, "gap", [1, 1], [1, 1], "none", "global_average", [], [])
    sm = ha.create_dl_layer_softmax(ha.create_dl_layer_dense(x, "fc", 4, [], []), "softmax", [], [])
    model = ha.create_dl_model(ha.create_dl_layer_loss_cross_entropy(sm, lab, wts, "loss", 1.0, [], []))
    ha.set_dl_model_param(model, "batch_size", 2)
    ha.set_dl_model_param(model, "learning_rate", 0.5)
    batch = samples(2, seed=3)
    x0 = np.stack([s["image"] for s in batch]).astype(np.float64).transpose(0, 3, 1, 2)

    def reference():
        w = {(n, t): ha.get_dl_model_layer_weights(model, n, t).astype(np.float64)
             for n in ("conv1", "conv2") for t in ("weights", "bias")}
        x1 = conv_ref(x0, w["conv1", "weights"], w["conv1", "bias"], 0)
        return np.maximum(conv_ref(x1, w["conv2", "weights"], w["conv2", "bias"], 1), 0).transpose(0, 2, 3, 1)

    previous = None
    for stage in ("initial", "weights set", "trained"):
        if stage == "weights set":
            shape = ha.get_dl_model_layer_weights(model, "conv2", "weights").shape
            new = np.random.default_rng(5).normal(0, 0.1, shape).astype(np.float32)
            ha.set_dl_model_layer_weights(new, model, "conv2", "weights")
        elif stage == "trained":
            ha.train_dl_model_batch(model, batch)
        got = outputs(model, batch, ["conv2"])["conv2"]
        got_again = outputs(model, batch, ["conv2"])["conv2"]  # from the kept weights
        want = reference()
        scale = np.abs(want).max()
        np.testing.assert_allclose(got, want, rtol=0, atol=5e-5 * scale, err_msg=stage)
        np.testing.assert_array_equal(got_again, got, err_msg=stage)
        if previous is not None:
            assert np.abs(previous - want).max() > 20 * 5e-5 * scale, stage
        previous = got


def build_relu_layers(seed=13, batch=4):
    """ReLU layers after the layers inference plans can merge them into (fuse_conv_relu / fuse_bn_relu):
    r1 after a convolution with bias (c1), r2 after a folded normalisation (c2 + n2), r3 after a normalisation
    that cannot be folded (n3 reads a pooling), r4 after a convolution that a second layer reads too (c4: not
    merged), r5 a leaky ReLU (not a plain ReLU: not merged)."""
    ha.set_system("seed_rand", seed)
    img = ha.create_dl_layer_input("image", [12, 12, 3], [], [])

    def conv(x, name, c=C):
        return ha.create_dl_layer_convolution(x, name, 3, 1, 1, c, 1, "half_kernel_size", "none", [], [])

    def relu(x, name, *gen):
        return ha.create_dl_layer_activation(x, name, "relu", *(gen or ([], [])))

    x = relu(conv(img, "c1"), "r1")
    x = relu(ha.create_dl_layer_batch_normalization(conv(x, "c2"), "n2", 0.9, 1e-5, "none", [], []), "r2")
    x = ha.create_dl_layer_pooling(x, "pool", [2, 2], [2, 2], "none", "maximum", [], [])
    x = relu(ha.create_dl_layer_batch_normalization(x, "n3", 0.9, 1e-5, "none", [], []), "r3")
    c4 = conv(x, "c4")
    x = ha.create_dl_layer_elementwise([relu(c4, "r4"), c4], "mix", "product", [], [], [])
    x = relu(conv(x, "c5"), "r5", "leaky_relu", 0.1)
    x = ha.create_dl_layer_pooling(x, "gap", [1, 1], [1, 1], "none", "global_average", [], [])
    model = ha.create_dl_model(ha.create_dl_layer_dense(x, "fc", 4, [], []))
    ha.set_dl_model_param(model, "batch_size", batch)
    randomize_batchnorms(model, np.random.default_rng(seed))
    return model


def test_relu_layers_are_merged_into_the_layer_before_them_unless_switched_off():
    model = build_relu_layers()
    batch = samples(labels=False)
    names = ["fc", "r3", "r5"]
    want = outputs(model, batch, names)
    assert ha.get_dl_model_param(model, "fuse_conv_relu") == ["true"]
    assert ha.get_dl_model_param(model, "fuse_bn_relu") == ["true"]
    opt, report = ha.optimize_dl_model_for_inference(model, cpu(), "float32", [], [])
    assert ha.as_python_dict(report)["fused_layers"] == ["r1", "r2", "r3"]
    got = outputs(opt, batch, names)
    assert core(opt).fused_layers() == ["r1", "r2", "r3"]
    for n in names:
        assert_close(got[n], want[n])
    # Each switch turns its own fusions off, and the outputs stay the same.
    ha.set_dl_model_param(opt, "fuse_bn_relu", "false")
    got = outputs(opt, batch, names)
    assert core(opt).fused_layers() == ["r1", "r2"]
    ha.set_dl_model_param(opt, "fuse_conv_relu", "false")
    got2 = outputs(opt, batch, names)
    assert core(opt).fused_layers() == []
    for n in names:
        assert_close(got[n], want[n])
        assert_close(got2[n], want[n])
    # Asking for a merged layer's input keeps it: n3's output is then materialised and r3 runs on its own.
    ha.set_dl_model_param(opt, "fuse_bn_relu", "true")
    got = outputs(opt, batch, ["n3", "r3"])
    assert core(opt).fused_layers() == []
    want = outputs(model, batch, ["n3", "r3"])
    for n in ("n3", "r3"):
        assert_close(got[n], want[n])
    # The switches are saved with the model; bad values raise and change nothing.
    back = ha.deserialize_dl_model(ha.serialize_dl_model(opt))
    assert ha.get_dl_model_param(back, "fuse_conv_relu") == ["false"]
    assert ha.get_dl_model_param(back, "fuse_bn_relu") == ["true"]
    with pytest.raises(HOperatorError) as e:
        ha.set_dl_model_param(opt, "fuse_bn_relu", "yes")
    assert e.value.error_code == 1303 and "fuse_bn_relu" in str(e.value)
    assert ha.get_dl_model_param(opt, "fuse_bn_relu") == ["true"]
