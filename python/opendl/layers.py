"""HALCON 26.05's layer constructors create_dl_layer_* (spec A.4): exact names, parameter names and
order, no defaults. Each builds a layer in the C++ core, which validates every parameter against the
layer's table and raises HOperatorError naming the one at fault."""

from __future__ import annotations

from . import _core
from ._convert import as_list, layer_list, layer_or_none, one_str, wrap_layer


def _create(op, type_, inputs, layer_name, positional, gen_param_name, gen_param_value):
    name = one_str(layer_name, op, "layer_name")
    return wrap_layer(_core.create_layer(type_, inputs, name, positional, as_list(gen_param_name),
                                         as_list(gen_param_value)))


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
        arg = [wrap_layer(_core.create_layer("depth_max", inp, name, [], names + ["output"], values + ["argmax"]))]
    if mode in ("value", "argmax_and_value"):
        vname = name if mode == "value" else name + "_value"
        val = [wrap_layer(_core.create_layer("depth_max", inp, vname, [], names + ["output"], values + ["value"]))]
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


_BOX_TARGET_MODES = ("cls_target", "cls_weight", "box_target", "box_weight")
_BOX_TARGET_GLOBAL = ("num_fg_instances", "assigned_idxs")
_ASSIGNMENT_PARAMS = ("fg_iou_threshold", "bg_iou_threshold", "low_quality_matches", "class_ids_no_orientation")


def _box_targets(op, dllayer_box_proposal, dllayer_gtbox, dllayer_gtmask, layer_names, input_mode, output_modes,
                 num_classes, gen_param_name, gen_param_value):
    from .errors import HOperatorError
    boxes = layer_list(dllayer_box_proposal, op, "dllayer_box_proposal")
    if not boxes:
        raise HOperatorError(1401, "dllayer_box_proposal needs at least one box layer", op)
    gt = _one(dllayer_gtbox, op, "dllayer_gtbox")
    modes = as_list(output_modes)
    for m in modes:
        if m == "mask_weight":
            raise HOperatorError(1302, "output_modes: 'mask_weight' (instance masks) is not supported", op)
        if m not in _BOX_TARGET_MODES + _BOX_TARGET_GLOBAL:
            raise HOperatorError(1302, f"output_modes: unknown mode {m!r}; allowed are "
                                       f"{', '.join(repr(x) for x in _BOX_TARGET_MODES + _BOX_TARGET_GLOBAL)}", op)
    if len(set(modes)) != len(modes) or not modes:
        raise HOperatorError(1402, f"output_modes must name each output once and at least one, got {modes!r}", op)
    if layer_or_none(dllayer_gtmask, op, "dllayer_gtmask") is not None:
        raise HOperatorError(1402, "dllayer_gtmask: instance masks ('mask_weight') are not supported; pass []", op)
    names = as_list(layer_names)
    order = [m for m in _BOX_TARGET_MODES + _BOX_TARGET_GLOBAL if m in modes]
    need = sum(len(boxes) if m in _BOX_TARGET_MODES else 1 for m in order)
    if len(names) != need or not all(isinstance(n, str) for n in names):
        raise HOperatorError(1404, f"layer_names needs {need} names ({len(boxes)} per level for each of "
                                   f"{[m for m in order if m in _BOX_TARGET_MODES]}, one for each of "
                                   f"{[m for m in order if m in _BOX_TARGET_GLOBAL]}), got {names!r}", op)
    gnames, gvalues = as_list(gen_param_name), as_list(gen_param_value)
    # One value per name, or one name with a tuple of values (as create_dl_layer_* take them); the assignment's
    # parameters go to the assignment layer, the others to each output layer.
    pairs = [(gnames[0], gvalues)] if len(gnames) == 1 else list(zip(gnames, gvalues))
    if len(gnames) != 1 and len(gnames) != len(gvalues):
        raise HOperatorError(1402, f"gen_param_name has {len(gnames)} entries but gen_param_value {len(gvalues)}", op)
    a_names, a_values, o_names, o_values = [], [], [], []
    for k, v in pairs:
        if k in _ASSIGNMENT_PARAMS:
            a_names.append(k), (a_values.extend(v) if isinstance(v, list) else a_values.append(v))
        else:
            o_names.append(k), (o_values.extend(v) if isinstance(v, list) else o_values.append(v))
    assignment = _core.create_layer("box_assignment", boxes + gt, names[0] + "_assignment",
                                    [one_str(input_mode, op, "input_mode"), num_classes], a_names, a_values)
    out = {m: [] for m in order}
    it = iter(names)
    for m in order:
        for level in range(len(boxes) if m in _BOX_TARGET_MODES else 1):
            out[m].append(wrap_layer(_core.create_layer("box_targets", [assignment] + gt, next(it), [],
                                                        o_names + ["output", "level"], o_values + [m, level])))
    return ([out.get(m, []) for m in _BOX_TARGET_MODES]
            + [(out[m][0] if m in out else []) for m in _BOX_TARGET_GLOBAL] + [[]])


def create_dl_layer_box_targets(dllayer_box_proposal, dllayer_gtbox, dllayer_gtmask, layer_names, input_mode,
                                output_modes, num_classes, gen_param_name, gen_param_value):
    return tuple(_box_targets("create_dl_layer_box_targets", dllayer_box_proposal, dllayer_gtbox, dllayer_gtmask,
                              layer_names, input_mode, output_modes, num_classes, gen_param_name, gen_param_value))


def create_dl_layer_box_targets_s(dllayer_box_proposal, dllayer_gtbox, dllayer_gtmask, layer_names, input_mode,
                                  output_modes, num_classes, gen_param_name, gen_param_value):
    op = "create_dl_layer_box_targets_s"
    from .errors import HOperatorError
    if len(as_list(dllayer_box_proposal)) != 1:
        raise HOperatorError(1401, "dllayer_box_proposal takes exactly one layer handle (use "
                                   "create_dl_layer_box_targets for several levels)", op)
    out = _box_targets(op, dllayer_box_proposal, dllayer_gtbox, dllayer_gtmask, layer_names, input_mode,
                       output_modes, num_classes, gen_param_name, gen_param_value)
    return tuple((o[0] if o else []) if isinstance(o, list) else o for o in out)


def create_dl_layer_box_proposals(dllayer_class_score, dllayer_box_delta, dllayer_box, dllayer_input_image,
                                  layer_name, gen_param_name, gen_param_value):
    from .errors import HOperatorError
    op = "create_dl_layer_box_proposals"
    scores = layer_list(dllayer_class_score, op, "dllayer_class_score")
    deltas = layer_list(dllayer_box_delta, op, "dllayer_box_delta")
    boxes = layer_list(dllayer_box, op, "dllayer_box")
    if not scores or len(boxes) != len(scores) or (deltas and len(deltas) != len(scores)):
        raise HOperatorError(1401, f"dllayer_class_score, dllayer_box_delta (or []) and dllayer_box need one layer per "
                                   f"level each, got {len(scores)}, {len(deltas)} and {len(boxes)}", op)
    names, values = as_list(gen_param_name), as_list(gen_param_value)
    if not deltas:
        names, values = names + ["apply_box_deltas"], values + ["false"]
    inputs = scores + deltas + boxes + _one(dllayer_input_image, op, "dllayer_input_image")
    return wrap_layer(_core.create_layer("box_proposals", inputs, one_str(layer_name, op, "layer_name"), [], names,
                                         values))
