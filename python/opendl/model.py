"""HALCON 26.05's model operators for layer-built models: create_dl_model, set/get_dl_model_param,
train_dl_model_batch, apply_dl_model and the layer inspection operators (spec A.2)."""

from __future__ import annotations

import numpy as np

from . import _core
from ._convert import as_list, layer_list, one_str, single, wrap_layer
from ._handles import HHandle, expect_handle
from .errors import HOperatorError


def _model(h, op):
    return expect_handle(h, "dl_model", op, "dlmodel_handle")


def create_dl_model(output_layers):
    op = "create_dl_model"
    return HHandle(_core.create_model(layer_list(output_layers, op, "output_layers")), "dl_model")


def clear_dl_model(dlmodel_handle):
    for h in as_list(dlmodel_handle):
        expect_handle(h, "dl_model", "clear_dl_model", "dlmodel_handle")
        h.clear()


def set_dl_model_param(dlmodel_handle, gen_param_name, gen_param_value):
    op = "set_dl_model_param"
    _model(dlmodel_handle, op).set_param(one_str(gen_param_name, op, "gen_param_name"), as_list(gen_param_value))


def get_dl_model_param(dlmodel_handle, gen_param_name):
    op = "get_dl_model_param"
    return _model(dlmodel_handle, op).get_param(one_str(gen_param_name, op, "gen_param_name"))


def get_dl_model_param_s(dlmodel_handle, gen_param_name):
    return single(get_dl_model_param(dlmodel_handle, gen_param_name), "get_dl_model_param")


def _samples(dlsample_batch, op):
    items = [dlsample_batch] if isinstance(dlsample_batch, dict) else as_list(dlsample_batch)
    out = []
    for i, s in enumerate(items):
        if isinstance(s, HHandle):
            raise HOperatorError(1202, f"dlsample_batch entry {i}: dict handles arrive with the dict operators; "
                                       "pass plain Python dicts", op)
        if not isinstance(s, dict):
            raise HOperatorError(1202, f"dlsample_batch entry {i} is a {type(s).__name__}, not a dict", op)
        out.append(s)
    return out


def train_dl_model_batch(dlmodel_handle, dlsample_batch):
    """One optimiser step on exactly batch_size * batch_size_multiplier samples. Returns the DLTrainResult:
    'total_loss', one entry per loss layer (its loss_weight times its value) and 'regularization'."""
    op = "train_dl_model_batch"
    return _model(dlmodel_handle, op).train_batch(_samples(dlsample_batch, op))


def apply_dl_model(dlmodel_handle, dlsample_batch, outputs):
    """Inference on up to batch_size samples. One DLResult dict per sample; each requested layer's output is
    a float32 array (height, width, depth)."""
    op = "apply_dl_model"
    names = [one_str(o, op, "outputs") for o in as_list(outputs)]
    return _model(dlmodel_handle, op).apply(_samples(dlsample_batch, op), names)


def get_dl_layer_param(dllayer, gen_param_name):
    op = "get_dl_layer_param"
    return expect_handle(dllayer, "dl_layer", op, "dllayer").param(one_str(gen_param_name, op, "gen_param_name"))


def get_dl_layer_param_s(dllayer, gen_param_name):
    return single(get_dl_layer_param(dllayer, gen_param_name), "get_dl_layer_param")


def get_dl_model_layer(dlmodel_handle, layer_names):
    op = "get_dl_model_layer"
    m = _model(dlmodel_handle, op)
    return [wrap_layer(m.layer(one_str(n, op, "layer_names"))) for n in as_list(layer_names)]


def get_dl_model_layer_s(dlmodel_handle, layer_names):
    return single(get_dl_model_layer(dlmodel_handle, layer_names), "get_dl_model_layer")


def get_dl_model_layer_param(dlmodel_handle, layer_name, param_name):
    op = "get_dl_model_layer_param"
    m = _model(dlmodel_handle, op)
    return m.layer(one_str(layer_name, op, "layer_name")).param(one_str(param_name, op, "param_name"))


def get_dl_model_layer_param_s(dlmodel_handle, layer_name, param_name):
    return single(get_dl_model_layer_param(dlmodel_handle, layer_name, param_name), "get_dl_model_layer_param")


def get_dl_model_layer_weights(dlmodel_handle, layer_name, weights_type):
    """Weights as float32 arrays: convolution (num_kernel, depth_in / groups, kernel_h, kernel_w), dense
    (num_out, depth * height * width), biases 1-D; batch normalisation scale as 'weights', shift as 'bias',
    running statistics as 'batchnorm_mean' / 'batchnorm_variance'; '<type>_gradient' for gradients."""
    op = "get_dl_model_layer_weights"
    return _model(dlmodel_handle, op).get_weights(one_str(layer_name, op, "layer_name"),
                                                  one_str(weights_type, op, "weights_type"))


def set_dl_model_layer_weights(weights, dlmodel_handle, layer_name, weights_type):
    op = "set_dl_model_layer_weights"
    arr = np.asarray(weights)
    if arr.dtype != np.float32:
        if not np.issubdtype(arr.dtype, np.number):
            raise HOperatorError(1201, f"weights must be a numeric array, got dtype {arr.dtype}", op)
        arr = arr.astype(np.float32)
    _model(dlmodel_handle, op).set_weights(np.ascontiguousarray(arr), one_str(layer_name, op, "layer_name"),
                                           one_str(weights_type, op, "weights_type"))


def get_dl_model_layer_activations(dlmodel_handle, layer_name):
    """The layer's output of the last train or apply call, (batch, height, width, depth) float32."""
    op = "get_dl_model_layer_activations"
    return _model(dlmodel_handle, op).activations(one_str(layer_name, op, "layer_name"))


def get_dl_model_layer_gradients(dlmodel_handle, layer_name):
    """Gradient of the total loss with respect to the layer's output in the last training step,
    (batch, height, width, depth) float32."""
    op = "get_dl_model_layer_gradients"
    return _model(dlmodel_handle, op).gradients(one_str(layer_name, op, "layer_name"))
