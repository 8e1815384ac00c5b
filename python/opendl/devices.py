"""Deep-learning devices (spec A.3): query_available_dl_devices, get_dl_device_param, set_dl_device_param.
The CPU is always device 0 of runtime 'cpu'; GPUs appear when the CUDA plugin, its libraries and a driver are
present (libopendl_cuda is loaded on the first query). A device handle is an HHandle of type 'dl_device'.

Each query (and get_dl_model_param 'device') returns new handle objects on one read-only info mapping per
device. Handles on one device compare equal (the device is one object), but clear_handle empties only the
handle object it is given: with one shared object, clearing it made every later query and every model's
'device' raise 2450 for the rest of the process."""

from __future__ import annotations

import os
import platform
from types import MappingProxyType

from . import _core
from ._convert import as_list, one_str, single
from ._handles import HHandle, expect_handle
from .errors import HOperatorError

_cache: dict = {}


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def _devices() -> list:
    """One handle per device, created once per process and never handed out: it gives the info mapping and the
    id that the handles of _handle share."""
    if "all" not in _cache:
        infos = [{"type": "cpu", "runtime": "cpu", "id": 0, "name": _cpu_name(), "num_threads": os.cpu_count() or 1,
                  "precisions": ["float32"], "inference_only": "false"}]
        for g in _core.cuda_devices():
            infos.append({"type": "gpu", "runtime": "gpu", "id": g["id"], "name": g["name"],
                          "total_memory": int(g["total_memory"]), "compute_capability": g["compute_capability"],
                          "multiprocessor_count": g["multiprocessor_count"], "pci_bus_id": g["pci_bus_id"],
                          "precisions": ["float32"], "inference_only": "false"})
        for d in infos:
            # optimize_dl_model_for_inference converts for either (float32, batch normalisations folded).
            d.update({"ai_accelerator_interface": "none", "calibration_precisions": [],
                      "conversion_supported": "true", "settable_device_params": []})
        _cache["all"] = [HHandle(MappingProxyType({k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}),
                                 "dl_device") for d in infos]
    return _cache["all"]


def _handle(proto: HHandle) -> HHandle:
    """A new handle on the device of ``proto``: equal to every other handle on it, cleared on its own."""
    h = HHandle(proto._obj, "dl_device")
    h._id = proto._id
    return h


def device_for(runtime: str, gpu_id: int = 0):
    """A new handle on the device of the runtime (and GPU id), or None."""
    for proto in _devices():
        info = proto._obj
        if info["runtime"] == runtime and (runtime == "cpu" or info["id"] == gpu_id):
            return _handle(proto)
    return None


def query_available_dl_devices(gen_param_name, gen_param_value):
    """All devices matching every given filter ('runtime', 'type', 'id', 'name'); several values for one name
    match any of them (HALCON's ['runtime', 'runtime'], ['gpu', 'cpu'])."""
    op = "query_available_dl_devices"
    names, values = as_list(gen_param_name), as_list(gen_param_value)
    if len(names) != len(values):
        raise HOperatorError(1402, f"{len(names)} gen_param_name(s) but {len(values)} gen_param_value(s)", op)
    wanted: dict = {}
    for n, v in zip(names, values):
        if n not in ("runtime", "type", "id", "name"):
            raise HOperatorError(1301, f"unknown filter {n!r} (available: 'runtime', 'type', 'id', 'name')", op)
        wanted.setdefault(n, []).append(v)
    return [_handle(proto) for proto in _devices() if all(proto._obj[n] in vs for n, vs in wanted.items())]


def query_available_dl_devices_s(gen_param_name, gen_param_value):
    return single(query_available_dl_devices(gen_param_name, gen_param_value), "query_available_dl_devices")


def get_dl_device_param(dldevice_handle, gen_param_name):
    op = "get_dl_device_param"
    info = expect_handle(dldevice_handle, "dl_device", op, "dldevice_handle")
    name = one_str(gen_param_name, op, "gen_param_name")
    if name not in info:
        raise HOperatorError(1302, f"unknown device parameter {name!r} (available: {', '.join(sorted(info))})", op)
    return list(as_list(info[name]))


def get_dl_device_param_s(dldevice_handle, gen_param_name):
    return single(get_dl_device_param(dldevice_handle, gen_param_name), "get_dl_device_param")


def set_dl_device_param(dldevice_handle, gen_param_name, gen_param_value):
    op = "set_dl_device_param"
    info = expect_handle(dldevice_handle, "dl_device", op, "dldevice_handle")
    names, values = as_list(gen_param_name), as_list(gen_param_value)
    if len(names) != len(values):  # as the other gen_param operators: 140n of gen_param_value
        raise HOperatorError(1403, f"{len(names)} gen_param_name(s) but {len(values)} gen_param_value(s)", op)
    if names:
        raise HOperatorError(1302, f"device parameter {names[0]!r} cannot be set: the {info['type']} device has "
                                   "no settable parameters", op)
