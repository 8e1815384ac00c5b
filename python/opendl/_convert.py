"""Conversions shared by the operators: HALCON tuple semantics and handle lists."""

from __future__ import annotations

from ._handles import HHandle, expect_handle
from .errors import HOperatorError, HTupleConversionError


def as_list(value) -> list:
    """HALCON's tuple rule: a scalar (also a str) is a 1-element tuple, any sized iterable a tuple. A dict is one
    element (HALCON's dict handle), never the tuple of its keys."""
    if value is None:
        return []
    if isinstance(value, (str, bytes, dict)) or not (hasattr(value, "__iter__") and hasattr(value, "__len__")):
        return [value]
    return list(value)


def single(values: list, operator: str):
    """The `_s` twins: exactly one value or HTupleConversionError."""
    if len(values) != 1:
        raise HTupleConversionError(f"{operator}_s expects exactly one value, the result holds {len(values)}",
                                    f"{operator}_s", 1401)
    return values[0]


def layer_list(value, operator: str, param: str) -> list:
    handles = as_list(value)
    return [expect_handle(h, "dl_layer", operator, param) for h in handles]


def layer_or_none(value, operator: str, param: str):
    """Optional layer inputs given as [] (HALCON's empty tuple) or None."""
    items = as_list(value)
    if not items:
        return None
    if len(items) != 1:
        raise HOperatorError(1401, f"{param} takes one layer handle or [], got {len(items)}", operator)
    return expect_handle(items[0], "dl_layer", operator, param)


def one_str(value, operator: str, param: str) -> str:
    items = as_list(value)
    if len(items) != 1 or not isinstance(items[0], str):
        raise HOperatorError(1201, f"{param} must be one string, got {value!r}", operator)
    return items[0]


def wrap_layer(core_layer) -> HHandle:
    return HHandle(core_layer, "dl_layer")
