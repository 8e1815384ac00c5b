"""opendl: an open deep-learning training engine for machine vision with HALCON's operators.

    import opendl as ha
    img = ha.create_dl_layer_input("image", [32, 32, 3], [], [])
"""

from ._loader import preload_onednn as _preload

_preload()

from . import _core  # noqa: E402
from .errors import HError, HOperatorError, HTupleConversionError  # noqa: E402
from ._handles import HHandle  # noqa: E402
from .dicts import (  # noqa: E402,F401
    as_dict_handle, as_python_dict, as_python_dict_s, clear_handle, copy_dict, create_dict, dict_to_json,
    dict_to_json_s, from_python_dict, get_dict_object, get_dict_param, get_dict_param_s, get_dict_tuple,
    get_dict_tuple_s, json_to_dict, json_to_dict_s, read_dict, remove_dict_key, set_dict_object, set_dict_tuple,
    set_dict_tuple_at, write_dict)
from .devices import (  # noqa: E402,F401
    get_dl_device_param, get_dl_device_param_s, query_available_dl_devices, query_available_dl_devices_s,
    set_dl_device_param)
from .layers import *  # noqa: E402,F401,F403
from .model import (  # noqa: E402,F401
    apply_dl_model, clear_dl_model, create_dl_model, create_dl_model_detection, deserialize_dl_model, get_dl_layer_param, get_dl_layer_param_s,
    get_dl_model_layer, get_dl_model_layer_activations, get_dl_model_layer_gradients, get_dl_model_layer_param,
    get_dl_model_layer_param_s, get_dl_model_layer_s, get_dl_model_layer_weights, get_dl_model_param,
    get_dl_model_param_s, load_dl_model_weights, optimize_dl_model_for_inference, read_dl_model, serialize_dl_model,
    set_dl_model_layer_weights, set_dl_model_param, train_dl_model_batch, write_dl_model)
from .system import get_system, get_system_s, set_system  # noqa: E402,F401
from .images import read_image, write_image  # noqa: E402,F401
from .datasets import (  # noqa: E402,F401
    find_dl_samples, gen_dl_samples, gen_dl_samples_from_images, read_dl_dataset_anomaly,
    read_dl_dataset_classification, read_dl_dataset_from_coco, read_dl_dataset_segmentation, read_dl_samples,
    split_dl_dataset, write_dl_samples)
from .preprocess import (  # noqa: E402,F401
    augment_dl_samples, check_dl_preprocess_param, create_dl_preprocess_param, create_dl_preprocess_param_from_model,
    preprocess_dl_dataset, preprocess_dl_samples)
from .evaluation import create_evaluation_default_param, evaluate_dl_model, gen_confusion_matrix  # noqa: E402,F401
from .detection_params import determine_dl_model_detection_param  # noqa: E402,F401
from .training import create_dl_train_param, reduce_dl_evaluation_result, train_dl_model  # noqa: E402,F401
from .legacy import (  # noqa: E402,F401
    apply_dl_classifier, clear_dl_classifier, clear_dl_classifier_result, clear_dl_classifier_train_result,
    deserialize_dl_classifier, get_dl_classifier_param, get_dl_classifier_param_s, get_dl_classifier_result,
    get_dl_classifier_result_s, get_dl_classifier_train_result, get_dl_classifier_train_result_s, read_dl_classifier,
    serialize_dl_classifier, set_dl_classifier_param, train_dl_classifier_batch, write_dl_classifier)
from .legacy_procedures import (  # noqa: E402,F401
    apply_dl_classifier_batchwise, evaluate_dl_classifier, preprocess_dl_classifier_images, read_dl_classifier_data_set,
    split_dl_classifier_data_set)

__version__ = "0.1.0"


def cmake_dir() -> str:
    """Directory holding opendlConfig.cmake (pass to CMake as opendl_DIR or in CMAKE_PREFIX_PATH)."""
    import os
    return os.path.join(os.path.dirname(__file__), "lib", "cmake", "opendl")
