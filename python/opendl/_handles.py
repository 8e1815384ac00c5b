"""HHandle: opaque, hashable handles like HALCON's. Two handles are equal when they refer to the same
object; a cleared handle raises HOperatorError 2450 when used."""

from __future__ import annotations

from .errors import H_ERR_HANDLE_NOSER, HOperatorError, H_ERR_WHDL


class HHandle:
    __slots__ = ("_obj", "_sem_type", "_id", "__weakref__")
    _next_id = 1

    def __init__(self, obj, sem_type: str):
        self._obj = obj
        self._sem_type = sem_type
        self._id = HHandle._next_id
        HHandle._next_id += 1

    @property
    def sem_type(self) -> str:
        return self._sem_type

    def core(self, operator: str):
        if self._obj is None:
            raise HOperatorError(H_ERR_WHDL, f"the {self._sem_type} handle was cleared", operator)
        return self._obj

    def clear(self) -> None:
        self._obj = None

    def __eq__(self, other) -> bool:
        return isinstance(other, HHandle) and self._id == other._id

    def __hash__(self) -> int:
        return hash(("HHandle", self._id))

    def __repr__(self) -> str:
        return f"HHandle{{type: {self._sem_type}, id: {self._id}}}"

    def __copy__(self) -> "HHandle":
        """A copy of a handle refers to the same resource (clearing either clears it), as in HALCON."""
        return self

    def __reduce_ex__(self, protocol):
        """pickle and copy.deepcopy: a model travels as its serialized file content (deepcopy gives an independent
        model, as serialize_dl_model / deserialize_dl_model do), a serialized item as its bytes; other handles
        (layers, dicts, devices) cannot be serialized this way."""
        op = "pickle"
        obj = self.core(op)
        if self._sem_type == "dl_model":
            return _model_handle, (bytes(obj.serialize()),)
        if self._sem_type == "serialized_item":
            return HHandle, (bytes(obj), "serialized_item")
        raise HOperatorError(H_ERR_HANDLE_NOSER, f"a {self._sem_type} handle cannot be pickled or deep-copied",
                             op)


def _model_handle(data: bytes) -> HHandle:
    from . import _core
    return HHandle(_core.deserialize_model(data), "dl_model")


def expect_handle(h, sem_type: str, operator: str, param: str):
    """Returns the core object of handle ``h`` of the given semantic type, or raises naming ``param``."""
    if not isinstance(h, HHandle):
        raise HOperatorError(1201, f"{param} must be a {sem_type} handle, got {type(h).__name__}", operator)
    if h.sem_type != sem_type:
        raise HOperatorError(H_ERR_WHDL, f"{param} is a {h.sem_type} handle, expected {sem_type}", operator)
    return h.core(operator)
