"""set_system / get_system for the settings that concern deep learning: 'seed_rand' (seed of models
created afterwards), 'thread_num' (CPU threads), 'cudnn_deterministic' ('true'/'false'; the GPU backend then
uses only deterministic cuDNN algorithms; the CPU backend is deterministic for a fixed thread count either way)
opendl's own 'gpu_tf32' ('true' by default: convolutions and matrix products on the GPU may use TF32 tensor
cores, about 10 bits of mantissa in the products; 'false' computes them in full FP32) and opendl's own
'gpu_graphs' ('true' by default: a training step on the GPU is recorded once as a CUDA graph and replayed;
'false' launches every kernel from the host)."""

from __future__ import annotations

from . import _core
from ._proc import is_int as _is_int
from ._convert import as_list, single
from .errors import HOperatorError

_flags = {"cudnn_deterministic": "false", "gpu_tf32": "true", "gpu_graphs": "true"}
_NAMES = "'seed_rand', 'thread_num', 'cudnn_deterministic', 'gpu_tf32', 'gpu_graphs'"
_SETTERS = {"cudnn_deterministic": "set_cudnn_deterministic", "gpu_tf32": "set_gpu_tf32",
            "gpu_graphs": "set_gpu_graphs"}

# The OpenMP team size the CPU backend accepts (the C++ SetThreadNum's limit): far beyond any machine's cores,
# small enough that starting the team cannot exhaust memory (100000 threads crashed the process).
_MAX_THREADS = 1024


def set_system(system_parameter, value):
    """Every name and value is checked before any is applied: a bad pair changes nothing."""
    op = "set_system"
    names, values = as_list(system_parameter), as_list(value)
    if len(names) != len(values):
        raise HOperatorError(1402, f"{len(names)} parameter name(s) but {len(values)} value(s)", op)
    for n, v in zip(names, values):
        if not isinstance(n, str):
            raise HOperatorError(1201, f"system_parameter must hold names (strings), got {n!r}", op)
        if n == "seed_rand":
            if not _is_int(v) or not 0 <= v < 2**64:
                raise HOperatorError(1302, f"'seed_rand' needs an integer in [0, 2^64), got {v!r}", op)
        elif n == "thread_num":
            if not _is_int(v) or not 1 <= v <= _MAX_THREADS:
                raise HOperatorError(1302, f"'thread_num' needs an integer in [1, {_MAX_THREADS}], got {v!r}", op)
        elif n in _SETTERS:
            if v not in ("true", "false"):
                raise HOperatorError(1302, f"{n!r} takes 'true' or 'false', got {v!r}", op)
        else:
            raise HOperatorError(1301, f"unknown system parameter {n!r} (available: {_NAMES})", op)
    for n, v in zip(names, values):
        if n == "seed_rand":
            _core.set_seed(int(v))
            from ._proc import RANDOM
            RANDOM.reseed(int(v))  # the procedures' random source restarts too, also when the seed is the same
        elif n == "thread_num":
            _core.set_thread_num(int(v))
        else:
            getattr(_core, _SETTERS[n])(v == "true")
            _flags[n] = v


def get_system(query):
    op = "get_system"
    out = []
    for q in as_list(query):
        if not isinstance(q, str):
            raise HOperatorError(1201, f"query must hold names (strings), got {q!r}", op)
        if q == "seed_rand":
            out.append(_core.get_seed())
        elif q == "thread_num":
            out.append(_core.get_thread_num())
        elif q in _flags:
            out.append(_flags[q])
        else:
            raise HOperatorError(1301, f"unknown system parameter {q!r} (available: {_NAMES})", op)
    return out


def get_system_s(query):
    return single(get_system(query), "get_system")
