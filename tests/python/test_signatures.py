"""Operator signatures equal HALCON 26.05's Python interface: same names, parameter names and order, no
defaults. The reference JSON was generated from the mvtec-halcon 26050.0.0 wheel by
tools/extract_halcon_signatures.py (HALCON cannot be imported without a HALCON installation)."""

import inspect
import json
import os

import pytest

import opendl as ha

HERE = os.path.dirname(__file__)
with open(os.path.join(HERE, "..", "fixtures", "halcon_signatures_26050.json")) as f:
    HALCON = json.load(f)
with open(os.path.join(HERE, "..", "fixtures", "halcon_signatures_20110.json")) as f:
    HALCON_20110 = json.load(f)

# Operators this version provides; each must exist and match HALCON exactly.
PROVIDED = [
    "create_dl_layer_input", "create_dl_layer_convolution", "create_dl_layer_batch_normalization",
    "create_dl_layer_activation", "create_dl_layer_pooling", "create_dl_layer_dense", "create_dl_layer_dropout",
    "create_dl_layer_softmax", "create_dl_layer_concat", "create_dl_layer_elementwise", "create_dl_layer_identity",
    "create_dl_layer_reshape", "create_dl_layer_transposed_convolution", "create_dl_layer_zoom_factor",
    "create_dl_layer_zoom_size", "create_dl_layer_zoom_to_layer_size", "create_dl_layer_depth_max",
    "create_dl_layer_depth_max_s", "create_dl_layer_loss_cross_entropy", "create_dl_layer_loss_huber",
    "create_dl_layer_loss_focal", "create_dl_layer_loss_distance", "create_dl_layer_anchors",
    "create_dl_layer_box_targets", "create_dl_layer_box_targets_s", "create_dl_layer_box_proposals", "create_dl_model", "clear_dl_model",
    "get_dl_layer_param", "get_dl_layer_param_s", "get_dl_model_layer", "get_dl_model_layer_s",
    "get_dl_model_layer_param", "get_dl_model_layer_param_s", "get_dl_model_layer_weights",
    "set_dl_model_layer_weights", "get_dl_model_layer_activations", "get_dl_model_layer_gradients",
    "set_dl_model_param", "get_dl_model_param", "get_dl_model_param_s", "train_dl_model_batch", "apply_dl_model",
    "set_system", "get_system", "get_system_s",
    "create_dict", "set_dict_tuple", "get_dict_tuple", "get_dict_tuple_s", "set_dict_tuple_at", "set_dict_object",
    "get_dict_object", "get_dict_param", "get_dict_param_s", "remove_dict_key", "copy_dict", "read_dict",
    "write_dict", "dict_to_json", "dict_to_json_s", "json_to_dict", "json_to_dict_s", "clear_handle",
    "read_dl_model", "write_dl_model", "serialize_dl_model", "deserialize_dl_model", "load_dl_model_weights",
    "query_available_dl_devices", "query_available_dl_devices_s", "get_dl_device_param", "get_dl_device_param_s",
    "set_dl_device_param",
]


# The legacy classifier operators, removed by 26.05, follow HALCON 20.11's interface.
LEGACY_20110 = [
    "read_dl_classifier", "write_dl_classifier", "serialize_dl_classifier", "deserialize_dl_classifier",
    "set_dl_classifier_param", "get_dl_classifier_param", "get_dl_classifier_param_s", "train_dl_classifier_batch",
    "get_dl_classifier_train_result", "get_dl_classifier_train_result_s", "apply_dl_classifier",
    "get_dl_classifier_result", "get_dl_classifier_result_s", "clear_dl_classifier", "clear_dl_classifier_result",
    "clear_dl_classifier_train_result",
]


@pytest.mark.parametrize("name, version", [(n, "26.05") for n in PROVIDED] + [(n, "20.11") for n in LEGACY_20110])
def test_signature_matches_halcon(name, version):
    reference = HALCON if version == "26.05" else HALCON_20110
    assert name in reference, f"{name} is not a HALCON operator of that version"
    fn = getattr(ha, name, None)
    assert callable(fn), f"opendl lacks {name}"
    params = list(inspect.signature(fn).parameters.values())
    assert [p.name for p in params] == reference[name]["params"]
    assert all(p.default is inspect.Parameter.empty for p in params), "HALCON operators have no defaults"
    assert all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params)


def test_every_halcon_named_function_matches():
    # Any public opendl function that shares a name with a HALCON operator must share its signature too.
    for name, spec in HALCON.items():
        fn = getattr(ha, name, None)
        if callable(fn):
            assert [p for p in inspect.signature(fn).parameters] == spec["params"], name


def test_s_twins_return_scalars_and_lists_otherwise():
    img = ha.create_dl_layer_input("image", [5, 4, 3], [], [])
    assert ha.get_dl_layer_param(img, "shape") == [5, 4, 3]
    assert ha.get_dl_layer_param_s(img, "name") == "image"
    with pytest.raises(ha.HTupleConversionError):
        ha.get_dl_layer_param_s(img, "shape")
    m = ha.create_dl_model(ha.create_dl_layer_softmax(img, "sm", [], []))
    assert ha.get_dl_model_param(m, "batch_size") == [1]
    assert ha.get_dl_model_param_s(m, "batch_size") == 1


def test_package_namespace_holds_no_stray_modules_or_helpers():
    # `import opendl as ha; dir(ha)` is what users tab-complete: operators, procedures, error classes and the
    # package's own submodules, never the standard-library modules or private helpers a submodule imported.
    import types
    stray_modules = [n for n, v in vars(ha).items() if isinstance(v, types.ModuleType)
                     and not n.startswith("_") and not v.__name__.startswith("opendl.")]
    assert stray_modules == []
    for helper in ("annotations", "as_list", "layer_list", "layer_or_none", "one_str", "wrap_layer"):
        assert not hasattr(ha, helper), helper
    assert all(callable(getattr(ha, n)) for n in ha.layers.__all__)
