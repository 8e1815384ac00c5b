"""HALCON 26.05's layer constructors create_dl_layer_* (spec A.4): exact names, parameter names and
order, no defaults. Each builds a layer in the C++ core, which validates every parameter against the
layer's table and raises HOperatorError naming the one at fault."""

from __future__ import annotations

import functools
import inspect

from . import _core
from ._convert import as_list, layer_list, layer_or_none, one_str, wrap_layer


@functools.lru_cache(maxsize=None)
def _first_position(op: str) -> int:
    """The parameter (1-based) of operator ``op`` following layer_name: the first positional value, whose
    position the error codes carry (1302/1202 for the second parameter, 1303/1203 for the third, ...)."""
    return list(inspect.signature(globals()[op]).parameters).index("layer_name") + 2


def _create(op, type_, inputs, layer_name, positional, gen_param_name, gen_param_value):
    name = one_str(layer_name, op, "layer_name")
    return wrap_layer(_core.create_layer(type_, inputs, name, positional, as_list(gen_param_name),
                                         as_list(gen_param_value), _first_position(op)))


def _one(value, op, param):
    return layer_list(value, op, param)[:1] if len(as_list(value)) == 1 else _bad_count(op, param, value)


def _bad_count(op, param, value):
    from .errors import HOperatorError
    raise HOperatorError(1401, f"{param} takes exactly one layer handle, got {len(as_list(value))}", op)


def create_dl_layer_input(layer_name, shape, gen_param_name, gen_param_value):
    return _create("create_dl_layer_input", "input", [], layer_name, [as_list(shape)], gen_param_name,
                   gen_param_value)


def create_dl_layer_convolution(dllayer_input, layer_name, kernel_size, dilation, stride, num_kernel, groups,
                                padding, activation, gen_param_name, gen_param_value):
    op = "create_dl_layer_convolution"
    return _create(op, "convolution", _one(dllayer_input, op, "dllayer_input"), layer_name,
                   [kernel_size, dilation, stride, num_kernel, groups, padding, activation], gen_param_name,
                   gen_param_value)


def create_dl_layer_batch_normalization(dllayer_input, layer_name, momentum, epsilon, activation, gen_param_name,
                                        gen_param_value):
    op = "create_dl_layer_batch_normalization"
    return _create(op, "batchnorm", _one(dllayer_input, op, "dllayer_input"), layer_name,
                   [momentum, epsilon, activation], gen_param_name, gen_param_value)


def create_dl_layer_activation(dllayer_input, layer_name, activation_type, gen_param_name, gen_param_value):
    op = "create_dl_layer_activation"
    return _create(op, "activation", _one(dllayer_input, op, "dllayer_input"), layer_name, [activation_type],
                   gen_param_name, gen_param_value)


def create_dl_layer_pooling(dllayer_input, layer_name, kernel_size, stride, padding, mode, gen_param_name,
                            gen_param_value):
    op = "create_dl_layer_pooling"
    return _create(op, "pooling", _one(dllayer_input, op, "dllayer_input"), layer_name,
                   [kernel_size, stride, padding, mode], gen_param_name, gen_param_value)


def create_dl_layer_dense(dllayer_input, layer_name, num_out, gen_param_name, gen_param_value):
    op = "create_dl_layer_dense"
    return _create(op, "dense", _one(dllayer_input, op, "dllayer_input"), layer_name, [num_out], gen_param_name,
                   gen_param_value)


def create_dl_layer_dropout(dllayer_input, layer_name, probability, gen_param_name, gen_param_value):
    op = "create_dl_layer_dropout"
    return _create(op, "dropout", _one(dllayer_input, op, "dllayer_input"), layer_name, [probability],
                   gen_param_name, gen_param_value)


def create_dl_layer_softmax(dllayer_input, layer_name, gen_param_name, gen_param_value):
    op = "create_dl_layer_softmax"
    return _create(op, "softmax", _one(dllayer_input, op, "dllayer_input"), layer_name, [], gen_param_name,
                   gen_param_value)


def create_dl_layer_concat(dllayer_inputs, layer_name, axis, gen_param_name, gen_param_value):
    op = "create_dl_layer_concat"
    return _create(op, "concat", layer_list(dllayer_inputs, op, "dllayer_inputs"), layer_name, [axis],
                   gen_param_name, gen_param_value)


def create_dl_layer_elementwise(dllayer_inputs, layer_name, operation, coefficients, gen_param_name,
                                gen_param_value):
    op = "create_dl_layer_elementwise"
    return _create(op, "elementwise", layer_list(dllayer_inputs, op, "dllayer_inputs"), layer_name,
                   [operation, as_list(coefficients)], gen_param_name, gen_param_value)


def create_dl_layer_identity(dllayer_input, layer_name, gen_param_name, gen_param_value):
    op = "create_dl_layer_identity"
    return _create(op, "identity", _one(dllayer_input, op, "dllayer_input"), layer_name, [], gen_param_name,
                   gen_param_value)


def create_dl_layer_reshape(dllayer_input, layer_name, shape, gen_param_name, gen_param_value):
    op = "create_dl_layer_reshape"
    return _create(op, "reshape", _one(dllayer_input, op, "dllayer_input"), layer_name, [as_list(shape)],
                   gen_param_name, gen_param_value)


def create_dl_layer_transposed_convolution(dllayer_input, layer_name, kernel_size, stride, kernel_depth, groups,
                                           padding, gen_param_name, gen_param_value):
    op = "create_dl_layer_transposed_convolution"
    return _create(op, "transposed_convolution", _one(dllayer_input, op, "dllayer_input"), layer_name,
                   [kernel_size, stride, kernel_depth, groups, padding], gen_param_name, gen_param_value)


def create_dl_layer_zoom_factor(dllayer_input, layer_name, scale_width, scale_height, interpolation, align_corners,
                                gen_param_name, gen_param_value):
    op = "create_dl_layer_zoom_factor"
    return _create(op, "zoom_factor", _one(dllayer_input, op, "dllayer_input"), layer_name,
                   [scale_width, scale_height, interpolation, align_corners], gen_param_name, gen_param_value)


def create_dl_layer_zoom_size(dllayer_input, layer_name, width, height, interpolation, align_corners,
                              gen_param_name, gen_param_value):
    op = "create_dl_layer_zoom_size"
    return _create(op, "zoom_size", _one(dllayer_input, op, "dllayer_input"), layer_name,
                   [width, height, interpolation, align_corners], gen_param_name, gen_param_value)


def create_dl_layer_zoom_to_layer_size(dllayer_input, dllayer_reference, layer_name, interpolation, align_corners,
                                       gen_param_name, gen_param_value):
    op = "create_dl_layer_zoom_to_layer_size"
    inputs = _one(dllayer_input, op, "dllayer_input") + _one(dllayer_reference, op, "dllayer_reference")
    return _create(op, "zoom_to_layer_size", inputs, layer_name, [interpolation, align_corners], gen_param_name,
                   gen_param_value)


def _depth_max(op, dllayer_input, layer_name, depth_max_mode, gen_param_name, gen_param_value):
    from .errors import HOperatorError
    mode = one_str(depth_max_mode, op, "depth_max_mode")
    if mode not in ("argmax", "value", "argmax_and_value"):
        raise HOperatorError(1303, f"depth_max_mode must be 'argmax', 'value' or 'argmax_and_value', got {mode!r}", op)
    name = one_str(layer_name, op, "layer_name")
    inp = _one(dllayer_input, op, "dllayer_input")
    names, values = as_list(gen_param_name), as_list(gen_param_value)
    arg, val = [], []
    if mode in ("argmax", "argmax_and_value"):
        arg = [wrap_layer(_core.create_layer("depth_max", inp, name, [], names + ["output"], values + ["argmax"], 4))]
    if mode in ("value", "argmax_and_value"):
        vname = name if mode == "value" else name + "_value"
        val = [wrap_layer(_core.create_layer("depth_max", inp, vname, [], names + ["output"], values + ["value"], 4))]
    return arg, val


def create_dl_layer_depth_max(dllayer_input, layer_name, depth_max_mode, gen_param_name, gen_param_value):
    return _depth_max("create_dl_layer_depth_max", dllayer_input, layer_name, depth_max_mode, gen_param_name,
                      gen_param_value)


def create_dl_layer_depth_max_s(dllayer_input, layer_name, depth_max_mode, gen_param_name, gen_param_value):
    arg, val = _depth_max("create_dl_layer_depth_max", dllayer_input, layer_name, depth_max_mode, gen_param_name,
                          gen_param_value)
    return (arg[0] if arg else None), (val[0] if val else None)


def create_dl_layer_loss_cross_entropy(dllayer_input, dllayer_target, dllayer_weights, layer_name, loss_weight,
                                       gen_param_name, gen_param_value):
    op = "create_dl_layer_loss_cross_entropy"
    inputs = (_one(dllayer_input, op, "dllayer_input") + _one(dllayer_target, op, "dllayer_target")
              + _one(dllayer_weights, op, "dllayer_weights"))
    return _create(op, "loss_cross_entropy", inputs, layer_name, [loss_weight], gen_param_name, gen_param_value)


def create_dl_layer_loss_huber(dllayer_input, dllayer_target, dllayer_weights, dllayer_normalization, layer_name,
                               loss_weight, beta, gen_param_name, gen_param_value):
    op = "create_dl_layer_loss_huber"
    inputs = (_one(dllayer_input, op, "dllayer_input") + _one(dllayer_target, op, "dllayer_target")
              + _one(dllayer_weights, op, "dllayer_weights"))
    norm = layer_or_none(dllayer_normalization, op, "dllayer_normalization")
    if norm is not None:
        inputs.append(norm)
    return _create(op, "loss_huber", inputs, layer_name, [loss_weight, beta], gen_param_name, gen_param_value)


def create_dl_layer_loss_focal(dllayer_input, dllayer_target, dllayer_weights, dllayer_normalization, layer_name,
                               loss_weight, gamma, class_weights, type, gen_param_name, gen_param_value):
    op = "create_dl_layer_loss_focal"
    inputs = (_one(dllayer_input, op, "dllayer_input") + _one(dllayer_target, op, "dllayer_target")
              + _one(dllayer_weights, op, "dllayer_weights"))
    norm = layer_or_none(dllayer_normalization, op, "dllayer_normalization")
    if norm is not None:
        inputs.append(norm)
    return _create(op, "loss_focal", inputs, layer_name, [loss_weight, gamma, as_list(class_weights), type],
                   gen_param_name, gen_param_value)


def create_dl_layer_loss_distance(dllayer_input, dllayer_target, dllayer_weights, layer_name, distance_type,
                                  loss_weight, gen_param_name, gen_param_value):
    op = "create_dl_layer_loss_distance"
    inputs = (_one(dllayer_input, op, "dllayer_input") + _one(dllayer_target, op, "dllayer_target")
              + _one(dllayer_weights, op, "dllayer_weights"))
    return _create(op, "loss_distance", inputs, layer_name, [distance_type, loss_weight], gen_param_name,
                   gen_param_value)


# ---------------------------------------------------------------------------------------------- detection layers
# Layouts, parameters and rules: cpp/src/layers/box_layers.cpp.

def create_dl_layer_anchors(dllayer_input, dllayer_input_image, layer_name, aspect_ratios, num_subscales, angles,
                            gen_param_name, gen_param_value):
    op = "create_dl_layer_anchors"
    inputs = _one(dllayer_input, op, "dllayer_input") + _one(dllayer_input_image, op, "dllayer_input_image")
    return _create(op, "anchors", inputs, layer_name, [as_list(aspect_ratios), num_subscales, as_list(angles)],
                   gen_param_name, gen_param_value)


def _box_targets(op, dllayer_box_proposal, dllayer_gtbox, dllayer_gtmask, layer_names, input_mode, output_modes,
                 num_classes, gen_param_name, gen_param_value):
    """The 6 outputs (lists of handles); the checks and the layers are made in C++ (CreateDlLayerBoxTargets)."""
    from .errors import HOperatorError
    boxes = layer_list(dllayer_box_proposal, op, "dllayer_box_proposal")
    gt = _one(dllayer_gtbox, op, "dllayer_gtbox")[0]
    mask = layer_or_none(dllayer_gtmask, op, "dllayer_gtmask")
    n = as_list(num_classes)
    if len(n) != 1 or isinstance(n[0], (str, float)):
        raise HOperatorError(1207, f"num_classes must be one integer, got {num_classes!r}", op)
    out = _core.create_box_targets(boxes, gt, [mask] if mask is not None else [], as_list(layer_names),
                                   one_str(input_mode, op, "input_mode"), as_list(output_modes), int(n[0]),
                                   as_list(gen_param_name), as_list(gen_param_value))
    return [[wrap_layer(x) for x in o] for o in out]


def create_dl_layer_box_targets(dllayer_box_proposal, dllayer_gtbox, dllayer_gtmask, layer_names, input_mode,
                                output_modes, num_classes, gen_param_name, gen_param_value):
    o = _box_targets("create_dl_layer_box_targets", dllayer_box_proposal, dllayer_gtbox, dllayer_gtmask,
                     layer_names, input_mode, output_modes, num_classes, gen_param_name, gen_param_value)
    return o[0], o[1], o[2], o[3], (o[4][0] if o[4] else []), (o[5][0] if o[5] else []), []


def create_dl_layer_box_targets_s(dllayer_box_proposal, dllayer_gtbox, dllayer_gtmask, layer_names, input_mode,
                                  output_modes, num_classes, gen_param_name, gen_param_value):
    op = "create_dl_layer_box_targets_s"
    from .errors import HOperatorError
    if len(as_list(dllayer_box_proposal)) != 1:
        raise HOperatorError(1401, "dllayer_box_proposal takes exactly one layer handle (use "
                                   "create_dl_layer_box_targets for several levels)", op)
    o = _box_targets(op, dllayer_box_proposal, dllayer_gtbox, dllayer_gtmask, layer_names, input_mode,
                     output_modes, num_classes, gen_param_name, gen_param_value)
    return tuple((x[0] if x else []) for x in o) + ([],)


def create_dl_layer_box_proposals(dllayer_class_score, dllayer_box_delta, dllayer_box, dllayer_input_image,
                                  layer_name, gen_param_name, gen_param_value):
    op = "create_dl_layer_box_proposals"
    scores = layer_list(dllayer_class_score, op, "dllayer_class_score")
    deltas = layer_list(dllayer_box_delta, op, "dllayer_box_delta")
    boxes = layer_list(dllayer_box, op, "dllayer_box")
    image = _one(dllayer_input_image, op, "dllayer_input_image")[0]
    return wrap_layer(_core.create_box_proposals(scores, deltas, boxes, image, one_str(layer_name, op, "layer_name"),
                                                 as_list(gen_param_name), as_list(gen_param_value)))


# the layer constructors only: `from .layers import *` must not export the helpers and modules imported above
__all__ = sorted(name for name in globals() if name.startswith("create_dl_layer_"))
