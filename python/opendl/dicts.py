"""HALCON 26.05's dictionary operators (spec A.1) in pure Python, the python_interop helpers
(from_python_dict, as_python_dict, as_python_dict_s) and as_dict_handle for operators that take dicts.

A dict handle is HHandle(content, 'dict'): content is a Python dict (insertion order is the key order), keys are
str or int, a value is either a tuple (a list of int, float, str and HHandle; a nested dict is a dict handle
inside a tuple) or an image (a numpy array (H, W) or (H, W, C) of uint8, int8, int16, uint16, int32 or float32,
HALCON's byte, int1, int2, uint2, int4 and real). Images are stored without copying, as read-only views: like
HALCON's iconic objects they are treated as immutable, so a caller must not change an array after storing it.

Decisions where HALCON's reference leaves the behaviour open or opendl has no HALCON counterpart:
- get_dict_tuple with several keys returns their tuples concatenated. remove_dict_key ignores absent keys.
- set_dict_tuple_at follows HDevelop's assign_at: Value is one value (assigned at every index) or one value per
  index; an index beyond the end extends the tuple and the gap is filled with 0; an absent key starts as the
  empty tuple. Negative indices raise 2897 (H_ERR_DICT_INVALID_INDEX).
- get_dict_param 'key_data_type' reports 'tuple' or 'object' (HALCON's two values); a nested dict is a tuple
  holding a dict handle, so it reports 'tuple'. An absent key raises 2894.
- copy_dict is a deep copy, as HALCON documents: nested dict handles are copied (a dict reached twice is copied
  once, so sharing inside the copy is kept); images are shared, since they are immutable. Its only generic
  parameter is HALCON's 'raise_error_if_content_not_serializable': with 'true' (default) a handle that cannot be
  copied (any handle but a dict, or a cleared one) raises 2455 (H_ERR_HANDLE_NOSER); with 'false' or
  'low_level' an empty handle of the same type (HHandle that raises 2450 on use) takes its place.
- write_dict writes opendl's binary container (opendl._core) or, with 'file_type' 'json' or a name ending in
  '.json', JSON text. 'raise_error_if_content_not_serializable' 'true' (default) raises 2455 naming the key for a
  value that cannot be written (a handle other than a dict, a cleared dict handle; for JSON also an image);
  'false'/'low_level' leave that key out (HALCON writes an empty handle in its place, which the container
  cannot hold). Reference cycles between dicts raise 2456 (H_ERR_HANDLE_CYCLES) in every mode.
- read_dict tries FileName, then FileName + '.hdict', then FileName + '.json' (as HALCON does). The content
  decides the format, whatever the name's ending (so that every write_dict 'file_type' reads back): a file
  starting with the container's magic bytes is a container, one whose text starts with '{' or '[' JSON; any
  other file is read as JSON when its name ends in '.json', else as a container. A file that does not parse
  raises 5238 (H_ERR_WFF).
- JSON mapping (dict_to_json, write_dict): a dict becomes an object, except that a non-empty dict whose keys are
  exactly 0, 1, ..., n-1 in that order becomes an array (the inverse of json_to_dict's default for arrays); int
  keys become their decimal text. A 1-element tuple becomes the bare value, any other tuple an array. Strings,
  ints and finite reals map to JSON strings and numbers; NaN and infinities raise 1301 (JSON has no such
  numbers); images and handles other than dicts are not serialisable (see above). Keys 1 and '1' in one dict
  would collide in JSON and raise 1301. Output is compact UTF-8 text.
- JSON mapping (json_to_dict, read_dict): an object becomes a dict with str keys; a string or number becomes a
  1-element tuple. Integers beyond 64 bits and numbers beyond the range of a double (1e999) raise 1301 (5238 in
  read_dict) naming the number: opendl's integers are 64-bit, and turning them into reals would silently change ids
  and counts. true/false/null become the values of the generic parameters 'json_value_true' (default 1),
  'json_value_false' (default 0) and 'json_value_null' (default: the empty tuple, since opendl has no HNULL).
  'convert_json_arrays_to' 'dict' (default, as in HALCON) turns an array into a dict with keys 0..n-1; 'tuple' turns
  it into one tuple (objects inside become dict handles, arrays inside become dicts with keys 0..n-1, a null element
  adds the null value). A top-level array becomes a dict either way. Text that does not parse raises 1301 naming the
  position.
- Strings are Unicode text with a UTF-8 form. A str holding lone surrogates (os.listdir's stand-in for the bytes
  of a file name in another encoding, or JSON's "\\ud800") can be neither written nor passed to the C++ layer, so
  set_dict_tuple, json_to_dict and from_python_dict refuse it as a key or value (130n of the parameter), and so
  do write_dict and dict_to_json for content stored by other means (1301), before a file is touched.
- Nesting: at most MAX_DEPTH (256) levels of dicts, in every reader and writer (2899 beyond).
- Error codes follow HALCON's numbering by parameter position: 120n wrong type, 130n wrong value, 140n wrong
  number of values of the n-th control parameter (get_dict_param's key is parameter 3, so 1203 there).
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from . import _core
from ._convert import as_list, single
from ._handles import HHandle, expect_handle
from .errors import (
    H_ERR_DICT_INVALID_INDEX, H_ERR_DICT_KEY, H_ERR_DICT_NESTED_TOO_DEEP, H_ERR_DICT_TUPLE_TYPE, H_ERR_FILE_WR,
    H_ERR_FNF, H_ERR_HANDLE_CYCLES, H_ERR_HANDLE_NOSER, H_ERR_MEM, H_ERR_WFF, H_ERR_WIPN2, H_ERR_WIPN3, H_ERR_WIPN4,
    H_ERR_WIPT1, H_ERR_WIPT2, H_ERR_WIPT3, H_ERR_WIPT4, H_ERR_WIPV1, H_ERR_WIPV2, HError, HOperatorError,
    HTupleConversionError)

__all__ = [
    "as_dict_handle", "as_python_dict", "as_python_dict_s", "clear_handle", "copy_dict", "create_dict",
    "dict_to_json", "dict_to_json_s", "from_python_dict", "get_dict_object", "get_dict_param", "get_dict_param_s",
    "get_dict_tuple", "get_dict_tuple_s", "json_to_dict", "json_to_dict_s", "read_dict", "remove_dict_key",
    "set_dict_object", "set_dict_tuple", "set_dict_tuple_at", "write_dict",
]

IMAGE_DTYPES = {np.dtype(np.uint8): "byte", np.dtype(np.int8): "int1", np.dtype(np.int16): "int2",
                np.dtype(np.uint16): "uint2", np.dtype(np.int32): "int4", np.dtype(np.float32): "real"}
# Nesting limit shared with the C++ container (cpp/src/io/container.cpp), far below Python's recursion limit.
MAX_DEPTH = 256
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_NOSER = "raise_error_if_content_not_serializable"
_TRUE_FALSE = ("true", "false", "low_level")


# ---------------------------------------------------------------- values, keys, handles


def _new_handle(content: dict | None = None) -> HHandle:
    return HHandle({} if content is None else content, "dict")


def _content(h, op: str) -> dict:
    if isinstance(h, dict):
        raise HOperatorError(H_ERR_WIPT1, "dict_handle is a plain Python dict; this operator needs a dict handle "
                                          "(create_dict or from_python_dict)", op)
    return expect_handle(h, "dict", op, "dict_handle")


def _is_live_dict(e) -> bool:
    return isinstance(e, HHandle) and e.sem_type == "dict" and e._obj is not None


def _is_utf8(s: str) -> bool:
    """False for a str holding lone surrogates, which has no UTF-8 form (see the module notes)."""
    if s.isascii():
        return True
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _not_utf8(what: str, s: str, op: str, code: int) -> HOperatorError:
    return HOperatorError(code, f"{what} {s!r}: not valid Unicode text (it holds a lone surrogate, as os.listdir "
                                "gives for a file name in another encoding)", op)


def _key(k, op: str, code: int):
    """``code``: the key parameter's wrong-type code; a str without a UTF-8 form is a wrong value (code + 100)."""
    if isinstance(k, str):
        if not _is_utf8(k):
            raise _not_utf8("key", k, op, code + 100)
        return str(k)
    if isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_)):
        v = int(k)
        if _INT64_MIN <= v <= _INT64_MAX:
            return v
    raise HOperatorError(code, f"key must be a string or a 64-bit integer, got {type(k).__name__} {k!r}", op)


def _keys(key, op: str) -> list:
    keys = [_key(k, op, H_ERR_WIPT2) for k in as_list(key)]
    if not keys:
        raise HOperatorError(H_ERR_WIPN2, "key is empty; give at least one key", op)
    return keys


def _one_key(key, op: str):
    keys = [_key(k, op, H_ERR_WIPT2) for k in as_list(key)]
    if len(keys) != 1:
        raise HOperatorError(H_ERR_WIPN2, f"key takes exactly one key, got {len(keys)}", op)
    return keys[0]


def _element(v, op: str, where: str, code: int = H_ERR_WIPT1):
    """One tuple element: int (64-bit), float, str or HHandle; numpy scalars become Python numbers, bools ints,
    and a plain Python dict becomes a new dict handle. ``code``: the parameter's wrong-type code; values of the
    right type that cannot be stored raise its wrong-value code (code + 100)."""
    if isinstance(v, str):
        if not _is_utf8(v):
            raise _not_utf8(f"{where} holds the string", v, op, code + 100)
        return str(v)
    if isinstance(v, HHandle):
        return v
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    if isinstance(v, (int, np.integer)):
        i = int(v)
        if not _INT64_MIN <= i <= _INT64_MAX:
            raise HTupleConversionError(f"{where} holds {i}, outside the 64-bit integer range", op, code)
        return i
    if isinstance(v, (float, np.floating)):
        return float(v)
    if isinstance(v, dict):
        return _from_python(v, None, op, set())
    raise HTupleConversionError(f"{where} holds a {type(v).__name__}, which is no tuple element (int, float, str or "
                                "handle)", op, code)


def _tuple(value, op: str, where: str, code: int) -> list:
    """HALCON's tuple rule on an input: a scalar is a 1-element tuple, a sequence or 1-D array a tuple."""
    if value is None:
        return []
    if isinstance(value, np.ndarray):
        if value.ndim > 1:
            raise HTupleConversionError(f"{where} is a {value.ndim}-D array; store images with set_dict_object", op,
                                        code)
        items = [value[()]] if value.ndim == 0 else list(value)
    elif isinstance(value, (str, bytes, dict)) or not (hasattr(value, "__iter__") and hasattr(value, "__len__")):
        items = [value]
    else:
        items = list(value)
    return [_element(v, op, where, code) for v in items]


def _image(obj, op: str, where: str = "object") -> np.ndarray:
    """Checks an image and returns a read-only view of it (no copy)."""
    if not isinstance(obj, np.ndarray):
        raise HOperatorError(H_ERR_WIPT1, f"{where} must be an image (numpy array), got {type(obj).__name__}", op)
    if obj.dtype not in IMAGE_DTYPES:
        raise HOperatorError(H_ERR_WIPT1, f"{where} has dtype {obj.dtype}; images are uint8, int8, int16, uint16, "
                                          "int32 or float32 (byte, int1, int2, uint2, int4, real)", op)
    if obj.ndim not in (2, 3) or obj.size == 0:
        raise HOperatorError(H_ERR_WIPT1, f"{where} has shape {obj.shape}; images are (height, width) or "
                                          "(height, width, channels) with every size at least 1", op)
    view = obj.view()
    view.flags.writeable = False
    return view


def _lookup(d: dict, k, op: str):
    try:
        return d[k]
    except KeyError:
        raise HOperatorError(H_ERR_DICT_KEY, f"the dict has no key {k!r}", op) from None


def _enter(h, path: set, op: str) -> None:
    if h in path:
        raise HOperatorError(H_ERR_HANDLE_CYCLES, "the dict contains itself (a reference cycle of dict handles)",
                             op)
    if len(path) >= MAX_DEPTH:
        raise HOperatorError(H_ERR_DICT_NESTED_TOO_DEEP, f"dicts are nested more than {MAX_DEPTH} levels deep", op)
    path.add(h)


def _gen_params(names, values, op: str, pos: int, allowed: dict) -> dict:
    """Generic parameters; ``pos`` is gen_param_name's position among the control parameters, so errors carry
    HALCON's codes: 130<pos> unknown name, 130<pos+1> bad value, 140<pos+1> unequal counts."""
    names, values = as_list(names), as_list(values)
    if len(names) != len(values):
        raise HOperatorError(1400 + pos + 1, f"{len(names)} gen_param_name(s) but {len(values)} "
                                             "gen_param_value(s)", op)
    out = {}
    for n, v in zip(names, values):
        if not isinstance(n, str) or n not in allowed:
            raise HOperatorError(1300 + pos, f"unknown gen_param_name {n!r} (available: "
                                             f"{', '.join(repr(a) for a in allowed)})", op)
        choices = allowed[n]
        if choices is not None and (not isinstance(v, str) or v not in choices):
            raise HOperatorError(1300 + pos + 1, f"{n!r} takes one of {', '.join(map(repr, choices))}, got {v!r}",
                                 op)
        if choices is None and not isinstance(v, (int, float, str)):
            raise HOperatorError(1300 + pos + 1, f"{n!r} takes an int, float or str, got {v!r}", op)
        if choices is None and isinstance(v, int) and not _INT64_MIN <= v <= _INT64_MAX:
            raise HOperatorError(1300 + pos + 1, f"{n!r} must fit 64 bits, got {v}", op)
        if isinstance(v, str) and not _is_utf8(v):
            raise _not_utf8(f"the value of {n!r}", v, op, 1300 + pos + 1)
        out[n] = int(v) if isinstance(v, bool) else v
    return out


def _not_serializable(e, k, what: str, op: str) -> HOperatorError:
    kind = "a cleared dict handle" if isinstance(e, HHandle) and e.sem_type == "dict" else \
        f"a {e.sem_type} handle" if isinstance(e, HHandle) else "an image"
    return HOperatorError(H_ERR_HANDLE_NOSER, f"key {k!r} holds {kind}, which {what}; set "
                                              f"'{_NOSER}' to 'false' to leave it out", op)


# ---------------------------------------------------------------- operators


def create_dict():
    """A new, empty dict handle."""
    return _new_handle()


def clear_handle(handle):
    """Frees handles of any type; using one afterwards raises 2450. Clearing a cleared handle does nothing."""
    handles = as_list(handle)
    for h in handles:
        if not isinstance(h, HHandle):
            raise HOperatorError(H_ERR_WIPT1, f"handle must hold handles, got {type(h).__name__}", "clear_handle")
    for h in handles:  # checked first: a bad entry clears none
        h.clear()


def set_dict_tuple(dict_handle, key, tuple):  # noqa: A002 (HALCON's parameter name)
    """Stores ``tuple`` under each key (a sequence of keys sets them all). Replacing a key keeps its position."""
    op = "set_dict_tuple"
    d = _content(dict_handle, op)
    keys = _keys(key, op)
    values = _tuple(tuple, op, "tuple", H_ERR_WIPT3)
    for k in keys:
        d[k] = list(values)


def get_dict_tuple(dict_handle, key):
    """The tuple stored under key; with several keys their tuples concatenated. 2894 for an absent key, 2896
    for a key holding an image."""
    op = "get_dict_tuple"
    d = _content(dict_handle, op)
    out = []
    for k in _keys(key, op):
        v = _lookup(d, k, op)
        if isinstance(v, np.ndarray):
            raise HOperatorError(H_ERR_DICT_TUPLE_TYPE, f"key {k!r} holds an image; read it with get_dict_object",
                                 op)
        out.extend(v)
    return out


def get_dict_tuple_s(dict_handle, key):
    return single(get_dict_tuple(dict_handle, key), "get_dict_tuple")


def set_dict_tuple_at(dict_handle, key, index, value):
    """Assigns value(s) at the given indices of the tuple under key, like HDevelop's assign_at."""
    op = "set_dict_tuple_at"
    d = _content(dict_handle, op)
    k = _one_key(key, op)
    indices = []
    for i in as_list(index):
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
            raise HOperatorError(H_ERR_WIPT3, f"index must hold integers, got {type(i).__name__} {i!r}", op)
        if i < 0 or i > _INT64_MAX:
            raise HOperatorError(H_ERR_DICT_INVALID_INDEX, f"index {int(i)} is not a valid tuple index", op)
        indices.append(int(i))
    values = _tuple(value, op, "value", H_ERR_WIPT4)
    if len(values) != 1 and len(values) != len(indices):
        raise HOperatorError(H_ERR_WIPN4, f"value holds {len(values)} values for {len(indices)} indices; give one "
                                          "value or one per index", op)
    current = d.get(k, [])
    if isinstance(current, np.ndarray):
        raise HOperatorError(H_ERR_DICT_TUPLE_TYPE, f"key {k!r} holds an image, not a tuple", op)
    if not indices:
        return
    new = list(current)
    for n, i in enumerate(indices):
        if i >= len(new):
            try:
                new.extend([0] * (i + 1 - len(new)))
            except MemoryError:
                raise HOperatorError(H_ERR_MEM, f"index {i} would need a tuple of {i + 1} elements", op) from None
        new[i] = values[0] if len(values) == 1 else values[n]
    d[k] = new


def set_dict_object(object, dict_handle, key):  # noqa: A002 (HALCON's parameter name)
    """Stores an image under key without copying it; the caller must not change the array afterwards."""
    op = "set_dict_object"
    d = _content(dict_handle, op)
    k = _one_key(key, op)
    d[k] = _image(object, op)


def get_dict_object(dict_handle, key):
    """The image under key, as a read-only array. 2894 for an absent key, 2896 for a key holding a tuple."""
    op = "get_dict_object"
    d = _content(dict_handle, op)
    k = _one_key(key, op)
    v = _lookup(d, k, op)
    if not isinstance(v, np.ndarray):
        raise HOperatorError(H_ERR_DICT_TUPLE_TYPE, f"key {k!r} holds a tuple; read it with get_dict_tuple", op)
    return v


def get_dict_param(dict_handle, gen_param_name, key):
    """'keys' (key must be []): all keys in order; 'key_exists': 1 or 0 per key; 'key_data_type': 'tuple' or
    'object' per key."""
    op = "get_dict_param"
    d = _content(dict_handle, op)
    names = as_list(gen_param_name)
    if len(names) != 1:
        raise HOperatorError(H_ERR_WIPN2, f"gen_param_name takes one name, got {len(names)}", op)
    name = names[0]
    if not isinstance(name, str):
        raise HOperatorError(H_ERR_WIPT2, f"gen_param_name must be a string, got {type(name).__name__}", op)
    raw = as_list(key)
    if name == "keys":
        if raw:
            raise HOperatorError(H_ERR_WIPN3, "key must be [] for 'keys'", op)
        return list(d)
    if name not in ("key_exists", "key_data_type"):
        raise HOperatorError(H_ERR_WIPV2, f"unknown gen_param_name {name!r} (available: 'keys', 'key_exists', "
                                          "'key_data_type')", op)
    keys = [_key(k, op, H_ERR_WIPT3) for k in raw]
    if name == "key_exists":
        return [int(k in d) for k in keys]
    return ["object" if isinstance(_lookup(d, k, op), np.ndarray) else "tuple" for k in keys]


def get_dict_param_s(dict_handle, gen_param_name, key):
    return single(get_dict_param(dict_handle, gen_param_name, key), "get_dict_param")


def remove_dict_key(dict_handle, key):
    """Removes the keys; absent keys are ignored."""
    op = "remove_dict_key"
    d = _content(dict_handle, op)
    for k in _keys(key, op):
        d.pop(k, None)


def copy_dict(dict_handle, gen_param_name, gen_param_value):
    """A deep copy: nested dicts are copied, images shared (they are immutable). See the module notes for
    'raise_error_if_content_not_serializable'."""
    op = "copy_dict"
    h = as_dict_handle(dict_handle, op, "dict_handle")
    params = _gen_params(gen_param_name, gen_param_value, op, 2, {_NOSER: _TRUE_FALSE})
    return _deep_copy(h, op, params.get(_NOSER, "true") == "true", {}, set())


def _deep_copy(h: HHandle, op: str, strict: bool, memo: dict, path: set) -> HHandle:
    d = h.core(op)
    _enter(h, path, op)  # before the memo, so that a cycle raises instead of being copied
    if h in memo:
        path.discard(h)
        return memo[h]
    content = {}
    out = memo[h] = _new_handle(content)
    for k, v in d.items():
        if isinstance(v, np.ndarray):
            content[k] = v
            continue
        new = []
        for e in v:
            if _is_live_dict(e):
                new.append(_deep_copy(e, op, strict, memo, path))
            elif isinstance(e, HHandle):
                if strict:
                    raise _not_serializable(e, k, "cannot be copied", op)
                new.append(HHandle(None, e.sem_type))
            else:
                new.append(e)
        content[k] = new
    path.discard(h)
    return out


# ---------------------------------------------------------------- files


def _call_core(name: str, op: str, *args):
    fn = getattr(_core, name, None)
    if fn is None:
        raise HError(f"{op}: this build of opendl._core lacks {name}; rebuild the extension")
    try:
        return fn(*args)
    except HOperatorError as e:
        if e.operator_name:
            raise
        raise HOperatorError(e.error_code, e.extended_error_message, op) from e


def _file_name(file_name, op: str, code: int) -> str:
    items = [file_name] if isinstance(file_name, os.PathLike) else as_list(file_name)
    if len(items) != 1 or not isinstance(items[0], (str, os.PathLike)):
        raise HOperatorError(code, f"file_name must be one file name, got {file_name!r}", op)
    path = os.fspath(items[0])
    # The C++ layer would end the name at a NUL and so read or overwrite another file.
    if "\0" in (path if isinstance(path, str) else path.decode("utf-8", "replace")):
        raise HOperatorError(code, f"file_name must not contain a NUL character, got {path!r}", op)
    if isinstance(path, str) and not _is_utf8(path):  # the C++ layer takes UTF-8 names
        raise _not_utf8("file_name", path, op, code + 100)
    return path


def _to_tree(h: HHandle, op: str, strict: bool, path: set) -> dict:
    """The plain tree the C++ container writes: {key: list or ndarray}, nested dicts as nested trees."""
    d = h.core(op)
    _enter(h, path, op)
    tree = {}
    for k, v in d.items():
        _check_text(k, op)
        if isinstance(v, np.ndarray):
            tree[k] = np.ascontiguousarray(v)
            continue
        out = []
        for e in v:
            if _is_live_dict(e):
                out.append(_to_tree(e, op, strict, path))
            elif isinstance(e, HHandle):
                if strict:
                    raise _not_serializable(e, k, "cannot be written to a file", op)
                break
            else:
                _check_text(e, op, k)
                out.append(e)
        else:
            tree[k] = out
    path.discard(h)
    return tree


def _check_text(s, op: str, key=None) -> None:
    """Content stored by other means than the checked operators (a dataset reader's file names) is checked when
    written: dict_handle is parameter 1, so a key (``key`` None) or a string under ``key`` without a UTF-8 form
    raises 1301 naming it."""
    if isinstance(s, str) and not _is_utf8(s):
        raise _not_utf8("key" if key is None else f"key {key!r} holds the string", s, op, H_ERR_WIPV1)


def _from_tree(tree: dict, op: str = "", depth: int = 1) -> HHandle:
    # The C++ container's reader and writer have the same limit (kMaxDepth in cpp/src/io/container.cpp).
    if depth > MAX_DEPTH:
        raise HOperatorError(H_ERR_DICT_NESTED_TOO_DEEP, f"dicts are nested more than {MAX_DEPTH} levels deep", op)
    content = {}
    for k, v in tree.items():
        if isinstance(v, np.ndarray):
            view = v.view()
            view.flags.writeable = False
            content[k] = view
        else:
            content[k] = [_from_tree(e, op, depth + 1) if isinstance(e, dict) else e for e in v]
    return _new_handle(content)


def write_dict(dict_handle, file_name, gen_param_name, gen_param_value):
    """Writes the dict to opendl's versioned, checksummed container (atomically), or as JSON text for
    'file_type' 'json' or a name ending in '.json'."""
    op = "write_dict"
    h = as_dict_handle(dict_handle, op, "dict_handle")
    path = _file_name(file_name, op, H_ERR_WIPT2)
    params = _gen_params(gen_param_name, gen_param_value, op, 3,
                         {_NOSER: _TRUE_FALSE, "file_type": ("hdict", "json")})
    strict = params.get(_NOSER, "true") == "true"
    file_type = params.get("file_type", "json" if path.lower().endswith(".json") else "hdict")
    if file_type == "json":
        text = _dict_to_json_text(h, op, strict).encode("utf-8")
        _write_atomically(path, lambda f: f.write(text), op)
    else:
        _call_core("dict_write_file", op, path, _to_tree(h, op, strict, set()))


def _write_atomically(path: str, write, op: str) -> None:
    """Writes a file through ``write(binary_file)`` into a new file in the target's directory and renames it over
    ``path`` only when all went well: a failure at any point (a full disk, an encoder refusing the data) leaves an
    existing file as it was and no temporary file behind, and maps to 3142. The new file gets the permissions
    open() gives (0666 less the umask), as the C++ container's files do; mkstemp's would be 0600."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        while tmp is None:
            name = os.path.join(directory, f".opendl-{os.urandom(6).hex()}.tmp")
            try:
                f = open(name, "xb")  # a named file object: tifffile needs the name
            except FileExistsError:
                continue
            tmp = name
        with f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except HOperatorError:
        raise
    except Exception as e:  # OSError, and whatever an encoder raises (imagecodecs' Jpeg8Error is a RuntimeError)
        raise HOperatorError(H_ERR_FILE_WR, f"cannot write {path!r}: {getattr(e, 'strerror', None) or e}", op) \
            from e
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


_CONTAINER_MAGIC = b"OPENDLC\0"  # the first bytes of every container (cpp/src/io/container.cpp)


def _looks_like_json(path: str) -> bool:
    """The content decides, whatever the extension, so that write_dict's 'file_type' output always reads back;
    the name only decides for a file that is neither (and so gets that format's error message)."""
    with open(path, "rb") as f:
        head = f.read(64)
    if head.startswith(_CONTAINER_MAGIC):
        return False
    if head.lstrip()[:1] in (b"{", b"["):
        return True
    return path.lower().endswith(".json")


def read_dict(file_name, gen_param_name, gen_param_value):
    """Reads a dict written by write_dict (container or JSON). See the module notes for the JSON parameters."""
    op = "read_dict"
    path = _file_name(file_name, op, H_ERR_WIPT1)
    params = _gen_params(gen_param_name, gen_param_value, op, 2, _JSON_READ_PARAMS)
    for candidate in (path, path + ".hdict", path + ".json"):
        if os.path.isfile(candidate):
            break
    else:
        if os.path.isdir(path):  # as read_dl_model says
            raise HOperatorError(H_ERR_FNF, f"{path!r} is a directory, not a file", op)
        raise HOperatorError(H_ERR_FNF, f"file {path!r} not found", op)
    try:
        is_json = _looks_like_json(candidate)
        if is_json:
            with open(candidate, "rb") as f:
                text = f.read().decode("utf-8")
    except OSError as e:
        raise HOperatorError(H_ERR_FNF, f"cannot open {candidate!r}: {e.strerror or e}", op) from e
    except UnicodeDecodeError as e:
        raise HOperatorError(H_ERR_WFF, f"{candidate!r} is not UTF-8 JSON text: {e}", op) from e
    if is_json:
        return _json_text_to_handle(text, op, params, H_ERR_WFF)
    tree = _call_core("dict_read_file", op, candidate)
    if isinstance(tree, dict) and list(tree.get("format", [])) == ["opendl_model"] and "format_version" in tree:
        raise HOperatorError(H_ERR_WFF, f"{candidate!r} is a deep-learning model file (write_dl_model); read it "
                                        "with read_dl_model", op)
    return _from_tree(tree, op)


# ---------------------------------------------------------------- JSON


def _to_json_value(h: HHandle, op: str, strict: bool, path: set):
    d = h.core(op)
    _enter(h, path, op)
    keys = list(d)
    items = []
    for k, v in d.items():
        _check_text(k, op)
        if isinstance(v, np.ndarray):
            if strict:
                raise _not_serializable(v, k, "JSON cannot represent", op)
            continue
        conv = []
        for e in v:
            if _is_live_dict(e):
                conv.append(_to_json_value(e, op, strict, path))
            elif isinstance(e, HHandle):
                if strict:
                    raise _not_serializable(e, k, "JSON cannot represent", op)
                break
            elif isinstance(e, float) and not math.isfinite(e):
                raise HOperatorError(H_ERR_WIPV1, f"key {k!r} holds {e}, which JSON cannot represent", op)
            else:
                _check_text(e, op, k)
                conv.append(e)
        else:
            items.append((k, conv[0] if len(conv) == 1 else conv))
    path.discard(h)
    if keys and keys == list(range(len(keys))) and len(items) == len(keys):
        return [v for _, v in items]
    out = {}
    for k, v in items:
        name = str(k)
        if name in out:
            raise HOperatorError(H_ERR_WIPV1, f"keys {name!r} and {int(name)} both become the JSON name "
                                              f"\"{name}\"", op)
        out[name] = v
    return out


def _dict_to_json_text(h: HHandle, op: str, strict: bool) -> str:
    return json.dumps(_to_json_value(h, op, strict, set()), ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False)


def dict_to_json(dict_handle, gen_param_name, gen_param_value):
    """One JSON text per dict handle; the mapping is in the module notes."""
    op = "dict_to_json"
    handles = [dict_handle] if isinstance(dict_handle, dict) else as_list(dict_handle)
    params = _gen_params(gen_param_name, gen_param_value, op, 2, {_NOSER: _TRUE_FALSE})
    strict = params.get(_NOSER, "true") == "true"
    return [_dict_to_json_text(as_dict_handle(h, op, "dict_handle"), op, strict) for h in handles]


def dict_to_json_s(dict_handle, gen_param_name, gen_param_value):
    return single(dict_to_json(dict_handle, gen_param_name, gen_param_value), "dict_to_json")


_JSON_READ_PARAMS = {"json_value_true": None, "json_value_false": None, "json_value_null": None,
                     "convert_json_arrays_to": ("dict", "tuple")}


class _JsonReader:
    def __init__(self, params: dict, op: str, bad_code: int):
        self.true = [params.get("json_value_true", 1)]
        self.false = [params.get("json_value_false", 0)]
        self.null = [params["json_value_null"]] if "json_value_null" in params else []
        self.arrays_as_dict = params.get("convert_json_arrays_to", "dict") == "dict"
        self.op = op
        self.bad_code = bad_code

    def handle(self, node, depth: int) -> HHandle:
        if depth >= MAX_DEPTH:  # depth 0 is the top level: MAX_DEPTH levels in all, as the writers allow
            raise HOperatorError(H_ERR_DICT_NESTED_TOO_DEEP, f"the JSON is nested more than {MAX_DEPTH} levels "
                                                             "deep", self.op)
        items = node.items() if isinstance(node, dict) else enumerate(node)
        content = {}
        for k, v in items:
            if isinstance(k, str) and not _is_utf8(k):  # JSON's "\ud800" escape gives a lone surrogate
                raise _not_utf8("the JSON name", k, self.op, self.bad_code)
            content[k] = self.tuple(v, depth, k)
        return _new_handle(content)

    def tuple(self, v, depth: int, key) -> list:
        if isinstance(v, list) and not self.arrays_as_dict:
            out = []
            for e in v:
                out.extend([self.handle(e, depth + 1)] if isinstance(e, (dict, list)) else self.scalar(e, key))
            return out
        if isinstance(v, (dict, list)):
            return [self.handle(v, depth + 1)]
        return self.scalar(v, key)

    def scalar(self, v, key) -> list:
        if v is True:
            return list(self.true)
        if v is False:
            return list(self.false)
        if v is None:
            return list(self.null)
        if isinstance(v, str) and not _is_utf8(v):
            raise _not_utf8(f"the JSON value of {key!r}", v, self.op, self.bad_code)
        return [v]


class _JsonValueError(ValueError):
    pass


def _json_text_to_handle(text: str, op: str, params: dict, bad_code: int) -> HHandle:
    def integer(digits: str) -> int:
        v = int(digits) if len(digits) <= 20 else None  # longer: beyond 64 bits (and maybe Python's digit limit)
        if v is None or not _INT64_MIN <= v <= _INT64_MAX:
            raise _JsonValueError(f"the integer {digits[:20]}{'...' if len(digits) > 20 else ''} does not fit "
                                  "64 bits (opendl's integers are 64-bit; write it as a real, e.g. 1.8e19)")
        return v

    def real(digits: str) -> float:
        v = float(digits)
        if not math.isfinite(v):
            raise _JsonValueError(f"the number {digits[:20]}{'...' if len(digits) > 20 else ''} is out of range "
                                  "(beyond the largest double)")
        return v

    def constant(name: str):
        raise ValueError(f"{name} is not a JSON value (JSON has no NaN or infinity)")

    try:
        node = json.loads(text, parse_int=integer, parse_float=real, parse_constant=constant)
    except _JsonValueError as e:  # valid JSON that opendl's values cannot hold
        raise HOperatorError(bad_code, f"the JSON text holds a value opendl cannot store: {e}", op) from None
    except (ValueError, RecursionError) as e:  # json.JSONDecodeError is a ValueError, as is Python's digit limit
        raise HOperatorError(bad_code, f"the text is no valid JSON: {e}", op) from None
    if not isinstance(node, (dict, list)):
        raise HOperatorError(bad_code, f"the JSON text must hold an object or an array, not {type(node).__name__}",
                             op)
    return _JsonReader(params, op, bad_code).handle(node, 0)


def json_to_dict(json_string, gen_param_name, gen_param_value):
    """One dict handle per JSON text; the mapping and the generic parameters are in the module notes."""
    op = "json_to_dict"
    params = _gen_params(gen_param_name, gen_param_value, op, 2, _JSON_READ_PARAMS)
    out = []
    for s in as_list(json_string):
        if not isinstance(s, str):
            raise HOperatorError(H_ERR_WIPT1, f"json_string must hold strings, got {type(s).__name__}", op)
        out.append(_json_text_to_handle(s, op, params, H_ERR_WIPV1))
    return out


def json_to_dict_s(json_string, gen_param_name, gen_param_value):
    return single(json_to_dict(json_string, gen_param_name, gen_param_value), "json_to_dict")


# ---------------------------------------------------------------- Python interop


def as_dict_handle(value, op: str, param: str) -> HHandle:
    """For operators that take a dict: a dict handle is returned as it is (checked), a plain Python dict is
    converted to a new dict handle with from_python_dict's rules."""
    if isinstance(value, HHandle):
        expect_handle(value, "dict", op, param)
        return value
    if isinstance(value, dict):
        return _from_python(value, None, op, set())
    raise HOperatorError(H_ERR_WIPT1, f"{param} must be a dict handle or a Python dict, got {type(value).__name__}",
                         op)


_KNOWN_TYPES = (int, float, str, list, tuple, set, frozenset, dict, HHandle, np.ndarray, np.generic)


def _from_python(dict_val, hook, op: str, active: set) -> HHandle:
    if not isinstance(dict_val, dict):
        raise HOperatorError(H_ERR_WIPT1, f"expected a Python dict, got {type(dict_val).__name__}", op)
    if id(dict_val) in active:
        raise HOperatorError(H_ERR_HANDLE_CYCLES, "the Python dict contains itself", op)
    if len(active) >= MAX_DEPTH:
        raise HOperatorError(H_ERR_DICT_NESTED_TOO_DEEP, f"dicts are nested more than {MAX_DEPTH} levels deep", op)
    active.add(id(dict_val))

    def hooked(v):
        return v if hook is None or v is None or isinstance(v, _KNOWN_TYPES) else hook(v)

    def element(e, k):
        e = hooked(e)
        if isinstance(e, dict):
            return _from_python(e, hook, op, active)
        if isinstance(e, np.ndarray) and e.ndim >= 2:
            raise HTupleConversionError(f"key {k!r} holds a list with an image; lists of images are not supported",
                                        op)
        return _element(e, op, f"the list under key {k!r}")

    content = {}
    for k, v in dict_val.items():
        key = _key(k, op, H_ERR_WIPT2)
        v = hooked(v)
        if isinstance(v, dict):
            content[key] = [_from_python(v, hook, op, active)]
        elif isinstance(v, np.ndarray) and v.ndim >= 2:
            content[key] = _image(v, op, f"the image under key {key!r}")
        elif isinstance(v, (list, tuple, set, frozenset)) or (isinstance(v, np.ndarray) and v.ndim == 1):
            content[key] = [element(e, key) for e in v]
        elif v is None:
            content[key] = []
        else:
            content[key] = [_element(v[()] if isinstance(v, np.ndarray) else v, op, f"key {key!r}")]
    active.discard(id(dict_val))
    return _new_handle(content)


def from_python_dict(dict_val, unknown_hook=None):
    """A new dict handle from a Python dict. Nested dicts (also inside lists) become nested dict handles,
    (H, W) and (H, W, C) arrays images, lists/tuples/sets/1-D arrays tuples, scalars 1-element tuples, None the
    empty tuple. Lists of lists, of images, or mixing images with other values are refused. ``unknown_hook`` is
    called with every value (also list elements) of a type outside those, and its result is used instead.
    The Python dict is not changed."""
    return _from_python(dict_val, unknown_hook, "from_python_dict", set())


def _as_python(h, as_lists: bool, hook, op: str, path: set) -> dict:
    d = expect_handle(h, "dict", op, "hhandle")
    _enter(h, path, op)
    out = {}
    for k, v in d.items():
        if isinstance(v, np.ndarray):
            out[k] = hook(v) if hook is not None else v
            continue
        if not as_lists and len(v) != 1:
            raise HTupleConversionError(f"key {k!r} holds {len(v)} values; every tuple must hold exactly one", op)
        conv = [_as_python(e, as_lists, hook, op, path) if isinstance(e, HHandle) and e.sem_type == "dict" else e
                for e in v]
        out[k] = conv if as_lists else conv[0]
    path.discard(h)
    return out


def as_python_dict(hhandle, hobject_hook=None):
    """A Python dict from a dict handle: every tuple becomes a list (nested dict handles become nested Python
    dicts), images stay arrays or go through ``hobject_hook``."""
    return _as_python(hhandle, True, hobject_hook, "as_python_dict", set())


def as_python_dict_s(hhandle, hobject_hook=None):
    """Like as_python_dict, but every tuple becomes its single value; HTupleConversionError when a tuple does
    not hold exactly one value."""
    return _as_python(hhandle, False, hobject_hook, "as_python_dict_s", set())
