"""Smoke test of a built libopendl_cuda through its C ABI (ctypes, no opendl import): loads the plugin, prints
the library versions and the GPUs, and runs the self-test on each GPU. Without a GPU or driver it checks that
the plugin reports a HALCON error code instead of crashing and exits 0; with a GPU a failed self-test exits 1.
A backend requested with a foreign backend.h fingerprint must be refused (4204) either way.
Usage: python cuda/plugin_smoke.py path/to/libopendl_cuda.so"""

import ctypes
import sys

NO_GPU_CODES = {7708, 7709}


class DeviceInfo(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char * 256), ("total_memory", ctypes.c_uint64), ("cc_major", ctypes.c_int32),
                ("cc_minor", ctypes.c_int32), ("multiprocessor_count", ctypes.c_int32),
                ("pci_bus_id", ctypes.c_int32), ("reserved", ctypes.c_int32 * 8)]


class Versions(ctypes.Structure):
    _fields_ = [("runtime", ctypes.c_int32), ("driver", ctypes.c_int32), ("cudnn", ctypes.c_int64),
                ("cublas", ctypes.c_int32), ("cudnn_compiled", ctypes.c_int32),
                ("cublas_compiled", ctypes.c_int32), ("reserved", ctypes.c_int32 * 7)]


def main(path):
    lib = ctypes.CDLL(path)
    err = ctypes.create_string_buffer(1024)
    print(f"plugin {path}: ABI version {lib.opendl_cuda_abi_version()}")
    v = Versions()
    rc = lib.opendl_cuda_versions(ctypes.byref(v), err, ctypes.c_size_t(len(err)))
    if rc != 0:
        print(f"versions: error {rc}: {err.value.decode()}")
        return 1
    print(f"CUDA runtime {v.runtime}, driver {v.driver}, cuDNN {v.cudnn} (built {v.cudnn_compiled}), "
          f"cuBLAS {v.cublas} (built {v.cublas_compiled})")
    # A libopendl built from another backend.h is refused before any device is touched, GPU or not.
    handle = ctypes.c_void_p()
    rc = lib.opendl_cuda_backend_create(0, b"not-this-build", ctypes.byref(handle), err, ctypes.c_size_t(len(err)))
    print(f"backend_create with a foreign backend.h fingerprint: error {rc}: {err.value.decode()}")
    if rc != 4204 or handle.value is not None:
        print("backend_create: expected error 4204 and no backend")
        return 1
    count = ctypes.c_int(-1)
    rc = lib.opendl_cuda_device_count(ctypes.byref(count), err, ctypes.c_size_t(len(err)))
    if rc != 0:
        print(f"device_count: error {rc}: {err.value.decode()}")
        return 0 if rc in NO_GPU_CODES else 1
    status = 0
    for i in range(count.value):
        d = DeviceInfo()
        rc = lib.opendl_cuda_device_info(i, ctypes.byref(d), err, ctypes.c_size_t(len(err)))
        if rc != 0:
            print(f"device_info({i}): error {rc}: {err.value.decode()}")
            status = 1
            continue
        print(f"GPU {i}: {d.name.decode()}, {d.total_memory / 2**30:.1f} GiB, sm_{d.cc_major}{d.cc_minor}, "
              f"{d.multiprocessor_count} SMs")
        rc = lib.opendl_cuda_selftest(i, err, ctypes.c_size_t(len(err)))
        print(f"selftest({i}): " + ("ok" if rc == 0 else f"error {rc}: {err.value.decode()}"))
        status |= rc != 0
    rc = lib.opendl_cuda_device_info(count.value, ctypes.byref(DeviceInfo()), err, ctypes.c_size_t(len(err)))
    print(f"device_info({count.value}) (out of range): error {rc}: {err.value.decode()}")
    return status | (rc == 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
