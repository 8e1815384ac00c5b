"""HALCON's exception types (spec F.1) and the error codes opendl raises (spec F.3)."""

from __future__ import annotations

import sys

H_MSG_OK = 2
H_ERR_WIPT1 = 1201
H_ERR_WIPT2 = 1202
H_ERR_WIPT3 = 1203
H_ERR_WIPT4 = 1204
H_ERR_WIPV1 = 1301
H_ERR_WIPV2 = 1302
H_ERR_WIPV3 = 1303
H_ERR_WIPV4 = 1304
H_ERR_WIPN1 = 1401
H_ERR_WIPN2 = 1402
H_ERR_WIPN3 = 1403
H_ERR_WIPN4 = 1404
H_ERR_WFV = 2403
H_ERR_WHDL = 2450
H_ERR_HANDLE_NOSER = 2455
H_ERR_HANDLE_CYCLES = 2456
H_ERR_DICT_KEY = 2894
H_ERR_DICT_TUPLE_LENGTH = 2895
H_ERR_DICT_TUPLE_TYPE = 2896
H_ERR_DICT_INVALID_INDEX = 2897
H_ERR_DICT_NESTED_TOO_DEEP = 2899
H_ERR_FILE_WR = 3142
H_ERR_OUT_OF_DEVICE_MEM = 4104
H_ERR_FNF = 5200
H_ERR_WFF = 5238
H_ERR_MEM = 6001
H_ERR_CNN_TRAINING_FAILED = 7720
H_ERR_CNN_INVALID_SHAPE = 7735
H_ERR_DL_INTERNAL = 7779
H_ERR_DL_INPUTS_MISSING = 7783
H_ERR_DL_INPUT_WRONG_BS = 7784
H_ERR_DL_INVALID_NAME = 7785
H_ERR_DL_DUPLICATE_NAME = 7786
H_ERR_DL_INVALID_OUTPUT = 7787
H_ERR_DL_PARAM_NOT_AVAILABLE = 7788
H_ERR_DL_INPUT_WRONG_LENGTH = 7789
H_ERR_DL_INPUT_WRONG_TYPE = 7790
H_ERR_DL_INPUT_WRONG_VALUES = 7791
H_ERR_DL_WRONG_BS_MULTIPLIER = 7799
H_ERR_DL_INPUT_WRONG_BS_WITH_MULTIPLIER = 7800
H_ERR_DL_SOLVER_INVALID_TYPE = 7840
H_ERR_DL_MODEL_UNSUPPORTED_GENPARAM = 7911
H_ERR_DL_MODEL_UNSUPPORTED_GENVALUE = 7914


class HError(Exception):
    """Base of every opendl error, as in HALCON's Python interface."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class HOperatorError(HError):
    """An operator failed. ``error_code`` is HALCON's code; ``message`` names the parameter, key, shape or
    value at fault; ``operator_name`` the operator. ``extended_error_*`` mirror HALCON's attributes."""

    def __init__(self, error_code: int, message: str = "", operator_name: str = ""):
        self.error_code = int(error_code)
        self.operator_name = operator_name
        self.extended_error_code = self.error_code
        self.extended_error_message = message
        text = f"HALCON error #{self.error_code}"
        if operator_name:
            text += f" in operator {operator_name}"
        super().__init__(f"{text}: {message}" if message else text)


def _caller_operator() -> str:
    """The opendl operator on the Python stack, for errors of the C++ binding's argument conversion, which fail
    before the C++ operator (which names itself) runs."""
    f = sys._getframe(1)
    while f is not None:
        code = f.f_code
        if f.f_globals.get("__name__", "").startswith("opendl") and not code.co_name.startswith(("_", "<")):
            return getattr(code, "co_qualname", code.co_name)
        f = f.f_back
    return ""


class HTupleConversionError(HOperatorError):
    """A Python value could not be converted to or from a HALCON tuple. HALCON's Python interface raises it
    apart from operator errors; here it is also an HOperatorError, so that one ``except HOperatorError`` sees
    every refused input, with the code of the parameter at fault (1201.. wrong type of parameter n)."""

    def __init__(self, message: str, operator_name: str = "", error_code: int = 1201):
        super().__init__(error_code, message, operator_name)
