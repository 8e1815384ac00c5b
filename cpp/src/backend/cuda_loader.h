// Run-time access to the optional CUDA plugin libopendl_cuda. libopendl never links CUDA: the first query
// dlopen()s the plugin, resolves its C ABI (cuda_plugin_abi.h) and enumerates the GPUs. Anything missing (plugin
// not built, cuDNN/cuBLAS/driver not installed, no GPU) makes the plugin unavailable with a reason; it never
// throws or aborts, so `import opendl` works on a machine without CUDA and lists only the CPU.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "backend/cuda_plugin_abi.h"

namespace opendl {

struct GpuInfo {
  int id = 0;  // CUDA device ordinal
  std::string name;
  uint64_t total_memory = 0;  // bytes
  int cc_major = 0, cc_minor = 0;
  int multiprocessor_count = 0;
  int pci_bus_id = 0;
};

// The loaded plugin: resolved entry points plus what was learned while loading it. Lives until process exit.
struct CudaPlugin {
  std::string path;  // file that was loaded
  OpendlCudaAbiVersionFn abi_version = nullptr;
  OpendlCudaDeviceCountFn device_count = nullptr;
  OpendlCudaDeviceInfoFn device_info = nullptr;
  OpendlCudaVersionsFn versions = nullptr;
  OpendlCudaSelftestFn selftest = nullptr;
  OpendlCudaBackendCreateFn backend_create = nullptr;
  OpendlCudaBackendDestroyFn backend_destroy = nullptr;
  OpendlCudaBackendTakeErrorFn backend_take_error = nullptr;
  OpendlCudaBackendSetOptionsFn backend_set_options = nullptr;
  OpendlCudaBackendSynchronizeFn backend_synchronize = nullptr;
  OpendlCudaVersions library_versions{};
  std::vector<GpuInfo> devices;  // never empty for a returned plugin
};

// The plugin, loaded on first call (thread-safe); nullptr when CUDA is unusable, with the reason in *why and a
// HALCON error code in *code (4204 plugin missing or broken, 7709 no driver, 7717/7718 cuBLAS/cuDNN missing,
// 7708 no GPU). Search order: $OPENDL_CUDA_PLUGIN if set, libopendl_cuda.so next to libopendl, then the
// dynamic linker's search path. OPENDL_DISABLE_CUDA=1 hides the plugin (CPU-only runs on a GPU machine).
const CudaPlugin* cuda_plugin(std::string* why = nullptr, int* code = nullptr);

// The CUDA devices, or an empty list when the plugin is unavailable.
std::vector<GpuInfo> cuda_devices();

// The plugin or an opendl::Error carrying the reason it is unavailable.
const CudaPlugin& require_cuda_plugin();

// Throws opendl::Error(code, message) for a non-zero plugin return code; `err` is the plugin's message buffer.
void check_cuda_call(int code, const char* err);

}  // namespace opendl
