"""Helpers shared by the HDevelop workflow procedures (datasets, preprocess, evaluation): access to dict handles
and plain dicts alike, GenParam dicts, boolean-ish values, and the procedures' random source.

Error-code convention of the procedures (HALCON's procedures throw strings, so a code is opendl's choice): a bad
value of the n-th control parameter (or of a key of a dict passed as that parameter) raises 130n, a wrong type
120n, a wrong number of values 140n; a key that must be there and is not raises 2894 (H_ERR_DICT_KEY); a file
that is not there 5200. Every message names the parameter, key and value at fault.
"""

from __future__ import annotations

import numpy as np

from . import _core
from ._handles import HHandle, expect_handle
from .dicts import _new_handle, from_python_dict
from .errors import H_ERR_DICT_KEY, HOperatorError

H_ERR_DL_MODEL_OPERATOR_UNSUPPORTED = 7912

TRUE_VALUES = ("true", 1, True)
FALSE_VALUES = ("false", 0, False)


def content(h, op: str, param: str, code: int = 1201) -> dict:
    """The key -> value mapping of a dict handle (values: lists or images) or of a plain Python dict."""
    if isinstance(h, HHandle):
        return expect_handle(h, "dict", op, param)
    if isinstance(h, dict):
        return h
    raise HOperatorError(code, f"{param} must be a dict handle, got {type(h).__name__}", op)


def as_tuple(v) -> list:
    """A stored value (a plain-dict scalar or a handle's list) as a HALCON tuple."""
    if v is None:
        return []
    if isinstance(v, np.ndarray):
        return [v] if v.ndim >= 2 else list(v)
    if isinstance(v, (list, tuple)):
        return list(v)
    return [v]


def get(d: dict, key, default=None):
    """Tuple under ``key`` of a content mapping, or ``default`` when absent."""
    if key not in d:
        return default
    v = d[key]
    return v if isinstance(v, np.ndarray) and v.ndim >= 2 else as_tuple(v)


def get1(d: dict, key, default=None):
    """Single value under ``key``; ``default`` when absent or empty."""
    t = get(d, key)
    if t is None or isinstance(t, np.ndarray) or len(t) == 0:
        return default
    return t[0]


def require(d: dict, key, op: str, where: str):
    if key not in d:
        raise HOperatorError(H_ERR_DICT_KEY, f"{where} has no key {key!r}", op)
    return get(d, key)


def put(d: dict, key, value) -> None:
    """Stores a tuple (list or scalar) or an image under key of a content mapping (handle content or plain dict)."""
    if isinstance(value, np.ndarray) and value.ndim >= 2:
        view = value.view()
        view.flags.writeable = False
        d[key] = view
    elif isinstance(value, dict):
        d[key] = [from_python_dict(value)]
    else:
        d[key] = as_tuple(value)


def new_dict(items: dict | None = None) -> HHandle:
    h = _new_handle()
    d = h.core("create_dict")
    for k, v in (items or {}).items():
        put(d, k, v)
    return h


def sub_dict(d: dict, key, op: str, where: str):
    """The content of the nested dict stored under ``key`` (one dict handle, or a plain nested dict)."""
    v = d.get(key)
    if isinstance(v, dict):
        return v
    t = as_tuple(v)
    if len(t) == 1 and isinstance(t[0], (HHandle, dict)):
        return content(t[0], op, where)
    return None


def samples_of(ds: dict, op: str) -> list:
    """The sample contents of a DLDataset content mapping (its 'samples' tuple of dict handles)."""
    items = require(ds, "samples", op, "dldataset")
    return [content(s, op, f"dldataset['samples'][{i}]") for i, s in enumerate(items)]


def gen_params(gen_param, op: str, pos: int, allowed) -> dict:
    """A procedure's GenParam dict ([] / None for none, a dict handle or a Python dict) as {key: tuple}.
    Unknown keys raise 130<pos> naming the key and the accepted ones."""
    if gen_param is None or (isinstance(gen_param, (list, tuple)) and len(gen_param) == 0):
        return {}
    if isinstance(gen_param, (list, tuple)) and len(gen_param) == 1:
        gen_param = gen_param[0]
    if not isinstance(gen_param, (HHandle, dict)):
        raise HOperatorError(1200 + pos, f"gen_param must be a dict or [], got {type(gen_param).__name__}", op)
    d = content(gen_param, op, "gen_param")
    out = {}
    for k, v in d.items():
        if k not in allowed:
            raise HOperatorError(1300 + pos, f"unknown gen_param key {k!r} (accepted: "
                                             f"{', '.join(repr(a) for a in allowed)})", op)
        out[k] = v if isinstance(v, np.ndarray) and v.ndim >= 2 else as_tuple(v)
    return out


def name_value_params(names, values, op: str, pos: int, allowed) -> dict:
    """GenParamName / GenParamValue pairs (``pos`` = position of GenParamName) as {name: value}."""
    from ._convert import as_list
    names, values = as_list(names), as_list(values)
    if len(names) != len(values):
        raise HOperatorError(1400 + pos + 1, f"{len(names)} gen_param_name(s) but {len(values)} gen_param_value(s)",
                             op)
    out = {}
    for n, v in zip(names, values):
        if n not in allowed:
            raise HOperatorError(1300 + pos, f"unknown gen_param_name {n!r} (accepted: "
                                             f"{', '.join(repr(a) for a in allowed)})", op)
        out[n] = v
    return out


def flag(value, op: str, code: int, what: str) -> bool:
    """HALCON's boolean spellings: 'true'/'false', 1/0 (procedure dicts store ints, operators take strings)."""
    v = value[0] if isinstance(value, list) and len(value) == 1 else value
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, str) and v in ("true", "false"):
        return v == "true"
    if isinstance(v, (int, np.integer)) and int(v) in (0, 1):
        return bool(int(v))
    raise HOperatorError(code, f"{what} takes 'true'/'false' or 1/0, got {value!r}", op)


def is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


# ---------------------------------------------------------------- random source of the procedures

class _ProcRandom:
    """The random source of split_dl_dataset, augment_dl_samples and the training procedures, standing in for
    HALCON's tuple_rand (numpy PCG64). set_system('seed_rand', s) restarts it from s (system.py calls reseed);
    should the process seed change by another path, it restarts from the new seed when next used."""

    def __init__(self):
        self.seed = None
        self.gen = None

    def reseed(self, seed: int) -> None:
        self.seed = int(seed)
        self.gen = np.random.Generator(np.random.PCG64(self.seed))

    def generator(self) -> np.random.Generator:
        s = int(_core.get_seed())
        if self.gen is None or s != self.seed:
            self.reseed(s)
        return self.gen


RANDOM = _ProcRandom()


def rng() -> np.random.Generator:
    return RANDOM.generator()
