"""HALCON 26.05's model operators (spec A.2): create_dl_model, read/write/serialize/deserialize_dl_model,
load_dl_model_weights, set/get_dl_model_param, train_dl_model_batch, apply_dl_model and the layer inspection
operators. DLSample, DLTrainResult and DLResult are dict handles as in HALCON; samples may also be plain Python
dicts."""

from __future__ import annotations

import numpy as np

from . import _core
from ._convert import as_list, layer_list, one_str, single, wrap_layer
from ._handles import HHandle, expect_handle
from .devices import device_for
from .dicts import _file_name, _from_tree, _new_handle, _to_tree, as_dict_handle
from .errors import HOperatorError


def _model(h, op):
    return expect_handle(h, "dl_model", op, "dlmodel_handle")


def create_dl_model(output_layers):
    op = "create_dl_model"
    return HHandle(_core.create_model(layer_list(output_layers, op, "output_layers")), "dl_model")


def create_dl_model_detection(backbone, num_classes, dlmodel_detection_param):
    """A RetinaNet-style detector (feature pyramid, class and box heads per level, anchors) on a classifier
    backbone: a built-in classifier name or a classifier model file. dlmodel_detection_param: a dict (handle)
    with keys of spec B.3, or [] for the defaults. Instance type 'rectangle1' (axis-aligned boxes)."""
    op = "create_dl_model_detection"
    name = _file_name(backbone, op, 1201)
    items = as_list(num_classes)
    n = items[0] if len(items) == 1 else None
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
        raise HOperatorError(1202, f"num_classes must be an integer, got {num_classes!r}", op)
    if isinstance(dlmodel_detection_param, (list, tuple)) and len(dlmodel_detection_param) == 0:
        tree = {}
    else:
        tree = _to_tree(as_dict_handle(dlmodel_detection_param, op, "dlmodel_detection_param"), op, True, set())
    return HHandle(_core.create_model_detection(name, int(n), tree), "dl_model")


def clear_dl_model(dlmodel_handle):
    """Frees the models; every handle is checked first, so a bad one clears none."""
    handles = as_list(dlmodel_handle)
    for h in handles:
        expect_handle(h, "dl_model", "clear_dl_model", "dlmodel_handle")
    for h in handles:
        h.clear()


def read_dl_model(file_name):
    """Reads an opendl model file. The bare names of HALCON's built-in classifiers
    ('pretrained_dl_classifier_compact.hdl', '..._enhanced', '..._resnet18', '..._resnet50', '..._mobilenet_v2',
    '..._alexnet') give those architectures with seeded random weights when no such file exists."""
    op = "read_dl_model"
    return HHandle(_core.read_model(_file_name(file_name, op, 1201)), "dl_model")


def write_dl_model(dlmodel_handle, file_name):
    """Writes architecture, weights, solver state, parameters and RNG state atomically to one checksummed file."""
    op = "write_dl_model"
    _model(dlmodel_handle, op).write(_file_name(file_name, op, 1202))


def serialize_dl_model(dlmodel_handle):
    """The model's file content as a serialized item handle (sem_type 'serialized_item', holding bytes)."""
    op = "serialize_dl_model"
    return HHandle(_model(dlmodel_handle, op).serialize(), "serialized_item")


def serialized_bytes(serialized_item_handle, op: str) -> bytes:
    """The bytes of a serialized item handle (or of bytes given directly)."""
    data = serialized_item_handle
    if isinstance(serialized_item_handle, HHandle):
        data = expect_handle(serialized_item_handle, "serialized_item", op, "serialized_item_handle")
    if not isinstance(data, (bytes, bytearray)):
        raise HOperatorError(1201, "serialized_item_handle must be a serialized item handle", op)
    return bytes(data)


def deserialize_dl_model(serialized_item_handle):
    op = "deserialize_dl_model"
    return HHandle(_core.deserialize_model(serialized_bytes(serialized_item_handle, op)), "dl_model")


def load_dl_model_weights(dlmodel_handle_source, dlmodel_handle_target):
    """Copies the weights of every target layer whose name, type and weight shapes match a source layer;
    returns per target layer (in graph order) the number of weight values copied (0: layer unchanged)."""
    op = "load_dl_model_weights"
    src = expect_handle(dlmodel_handle_source, "dl_model", op, "dlmodel_handle_source")
    tgt = expect_handle(dlmodel_handle_target, "dl_model", op, "dlmodel_handle_target")
    return list(tgt.load_weights_from(src))


def set_dl_model_param(dlmodel_handle, gen_param_name, gen_param_value):
    op = "set_dl_model_param"
    m = _model(dlmodel_handle, op)
    name = one_str(gen_param_name, op, "gen_param_name")
    if name == "meta_data":
        values = as_list(gen_param_value) if not isinstance(gen_param_value, dict) else [gen_param_value]
        if len(values) != 1:
            raise HOperatorError(1403, "'meta_data' takes one dict handle", op)
        m.set_meta_data(_to_tree(as_dict_handle(values[0], op, "gen_param_value"), op, True, set()))
        return
    if name == "device":
        values = as_list(gen_param_value)
        if len(values) != 1:
            raise HOperatorError(1403, "'device' takes one device handle from query_available_dl_devices", op)
        info = expect_handle(values[0], "dl_device", op, "gen_param_value")
        if info["runtime"] == "gpu":
            m.set_param("gpu", info["id"])
        m.set_param("runtime", info["runtime"])
        return
    m.set_param(name, as_list(gen_param_value))


def get_dl_model_param(dlmodel_handle, gen_param_name):
    op = "get_dl_model_param"
    m = _model(dlmodel_handle, op)
    name = one_str(gen_param_name, op, "gen_param_name")
    if name == "meta_data":
        return [_from_tree(m.get_meta_data())]
    if name == "device":
        dev = device_for(m.get_param("runtime")[0], m.get_param("gpu")[0])
        return [dev] if dev is not None else []
    if name == "summary":
        rows = []
        for n in m.get_param("layer_names"):
            layer = m.layer(n)
            w, h, d = layer.param("shape")
            rows.append(f"{n}: {layer.param('type')[0]}, output {w} x {h} x {d}")
        return rows
    return m.get_param(name)


def get_dl_model_param_s(dlmodel_handle, gen_param_name):
    return single(get_dl_model_param(dlmodel_handle, gen_param_name), "get_dl_model_param")


def _samples(dlsample_batch, op, param="dlsample_batch", pos=2):
    """DLSample dict handles or plain dicts -> plain {key: value} dicts for the core (no copies of images).
    ``param`` and ``pos``: name and position of the operator's samples parameter, for messages and codes."""
    if isinstance(dlsample_batch, (dict, HHandle)):
        items = [dlsample_batch]
    else:
        items = as_list(dlsample_batch)
    out = []
    for i, s in enumerate(items):
        if isinstance(s, HHandle):
            s = expect_handle(s, "dict", op, f"{param}[{i}]")
        elif not isinstance(s, dict):
            raise HOperatorError(1200 + pos, f"{param} entry {i} is a {type(s).__name__}, not a dict", op)
        out.append(s)
    return out


def train_dl_model_batch(dlmodel_handle, dlsample_batch):
    """One optimiser step on exactly batch_size * batch_size_multiplier samples. Returns the DLTrainResult
    dict handle: 'total_loss', one entry per loss layer (its loss_weight times its value; the built-in
    classifiers' layer is 'cross_entropy') and 'regularization' (the weight_prior term)."""
    op = "train_dl_model_batch"
    res = _model(dlmodel_handle, op).train_batch(_samples(dlsample_batch, op))
    return _new_handle({k: [float(v)] for k, v in res.items()})


def apply_dl_model(dlmodel_handle, dlsample_batch, outputs):
    """Inference on up to batch_size samples. One DLResult dict handle per sample. Classification models give
    'classification_class_ids', 'classification_class_names' and 'classification_confidences' (all classes,
    by descending confidence); multi-label models the classes above min_confidence and every class's
    confidence; segmentation models 'segmentation_image' and 'segmentation_confidence' (outputs may name those
    and 'segmentation_confidences'); a requested layer name gives its output as a float32 image (height,
    width, depth)."""
    op = "apply_dl_model"
    names = [one_str(o, op, "outputs") for o in as_list(outputs)]
    return [_from_tree(r) for r in _model(dlmodel_handle, op).apply(_samples(dlsample_batch, op), names)]


def optimize_dl_model_for_inference(dlmodel_handle, dldevice_handle, precision, dlsamples, gen_param):
    """A copy of the model optimized for inference on the device (the source model is unchanged) and a
    conversion report dict. The CPU and each GPU convert to precision 'float32' (the copy lives on that device;
    on a GPU TF32 follows set_system 'gpu_tf32'): the copy has
    'optimize_for_inference' 'true' (batch normalisations folded into the convolutions before them, residual
    sums and the ReLUs after them computed by the convolutions' post-ops, gradient buffers released, activations
    in one liveness-planned arena; it cannot be trained) and 'precision_is_converted' 'true'. The report holds
    'runtime', 'precision', 'folded_layers' and 'fused_layers' (the elementwise sums and ReLU layers merged
    into the convolutions or batch normalisations before them when the model's outputs alone are asked for;
    model parameters 'fuse_conv_relu' / 'fuse_bn_relu' switch the ReLU merging). dlsamples
    (calibration samples, needed by HALCON for 'int8' only) may be empty; gen_param must be an empty dict or
    []. Other precisions raise: this build has no float16 / int8 kernels."""
    op = "optimize_dl_model_for_inference"
    # Codes carry the parameter positions: dldevice_handle 2, precision 3, dlsamples 4, gen_param 5.
    m = _model(dlmodel_handle, op)
    devices = as_list(dldevice_handle)
    if len(devices) != 1:
        raise HOperatorError(1402, f"dldevice_handle must be one device handle, got {len(devices)}", op)
    if not isinstance(devices[0], HHandle):
        raise HOperatorError(1202, f"dldevice_handle must be a dl_device handle, got {type(devices[0]).__name__}", op)
    info = expect_handle(devices[0], "dl_device", op, "dldevice_handle")
    precs = as_list(precision)
    if len(precs) != 1 or not isinstance(precs[0], str):
        raise HOperatorError(1203, f"precision must be one string, got {precision!r}", op)
    prec = precs[0]
    if prec not in info["precisions"]:
        avail = ", ".join(f"'{p}'" for p in info["precisions"])
        raise HOperatorError(1303, f"precision '{prec}' is not available on device '{info['name']}' "
                                   f"(available: {avail})", op)
    if info["conversion_supported"] != "true":
        raise HOperatorError(1302, f"device '{info['name']}' (runtime '{info['runtime']}') supports no conversion "
                                   "in this build", op)
    if not (isinstance(dlsamples, (list, tuple)) and len(dlsamples) == 0):
        _samples(dlsamples, op, "dlsamples", 4)
    if not (isinstance(gen_param, (list, tuple)) and len(gen_param) == 0):
        if not isinstance(gen_param, (dict, HHandle)):
            raise HOperatorError(1205, f"gen_param must be a dict handle, a Python dict or [], got "
                                       f"{type(gen_param).__name__}", op)
        tree = _to_tree(as_dict_handle(gen_param, op, "gen_param"), op, True, set())
        if tree:
            raise HOperatorError(7911, f"gen_param key '{next(iter(tree))}' is not supported (no key is)", op)
    converted, report = m.optimize_for_inference(info["runtime"], prec, int(info["id"]))
    return HHandle(converted, "dl_model"), _from_tree(report)


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
    try:
        arr = np.asarray(weights)
    except (ValueError, TypeError) as e:  # ragged nested lists
        raise HOperatorError(1201, f"weights must be a numeric array of one shape: {e}", op) from None
    if arr.dtype != np.float32:
        if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
            raise HOperatorError(1201, f"weights must be a real-valued numeric array, got dtype {arr.dtype}", op)
        arr = arr.astype(np.float32)
    _model(dlmodel_handle, op).set_weights(np.ascontiguousarray(arr), one_str(layer_name, op, "layer_name"),
                                           one_str(weights_type, op, "weights_type"))


def get_dl_model_layer_activations(dlmodel_handle, layer_name):
    """The layer's output of the last train or apply call, (batch, height, width, depth) float32."""
    op = "get_dl_model_layer_activations"
    return _model(dlmodel_handle, op).activations(one_str(layer_name, op, "layer_name"))


def get_dl_model_layer_gradients(dlmodel_handle, layer_name):
    """Gradient of the total loss with respect to the layer's output in the last training step,
    (batch, height, width, depth) float32.

    To save memory, training shares the layer-output gradient buffers (planned by liveness), so by default no
    layer's gradient survives the step and this raises 7788; set_dl_model_param(model, 'keep_layer_gradients',
    'true') before training keeps every layer's gradient, input layers included (opendl's parameter, not
    HALCON's). Layers no gradient reaches read as zeros."""
    op = "get_dl_model_layer_gradients"
    return _model(dlmodel_handle, op).gradients(one_str(layer_name, op, "layer_name"))
