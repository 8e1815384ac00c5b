// The C ABI between libopendl and the optional CUDA plugin libopendl_cuda. libopendl never links the plugin:
// it dlopen()s it (backend/cuda_loader.cpp) and resolves these symbols by name, so this header must stay plain C
// with no CUDA include. Every entry returns 0 on success or a HALCON error code, with a NUL-terminated message
// written to `err` (at most err_len bytes); none of them throws or aborts. Bump OPENDL_CUDA_ABI_VERSION whenever
// a signature or struct below changes.
#pragma once

#include <stddef.h>
#include <stdint.h>

#define OPENDL_CUDA_ABI_VERSION 2

// HALCON error codes the plugin returns (spec/halcon-api.md, error table).
#define OPENDL_CUDA_ERR_OUT_OF_DEVICE_MEM 4104  // H_ERR_OUT_OF_DEVICE_MEM
#define OPENDL_CUDA_ERR_CUDA 4200               // H_ERR_CUDA_ERROR
#define OPENDL_CUDA_ERR_CUDNN 4201              // H_ERR_CUDNN_ERROR
#define OPENDL_CUDA_ERR_CUBLAS 4202             // H_ERR_CUBLAS_ERROR
#define OPENDL_CUDA_ERR_NOT_AVAILABLE 4204      // H_ERR_CUDA_NOT_AVAILABLE (plugin not built / not loadable)
#define OPENDL_CUDA_ERR_GPU_REQUIRED 7708       // H_ERR_CNN_GPU_REQUIRED (no CUDA device)
#define OPENDL_CUDA_ERR_CUDA_LIBS_MISSING 7709  // H_ERR_CNN_CUDA_LIBS_MISSING (no / too old driver)
#define OPENDL_CUDA_ERR_CUBLAS_LIBS_MISSING 7717
#define OPENDL_CUDA_ERR_CUDNN_LIBS_MISSING 7718
#define OPENDL_CUDA_ERR_WRONG_VALUE 1301        // bad argument (e.g. device id out of range)

#ifdef __cplusplus
extern "C" {
#endif

typedef struct OpendlCudaDeviceInfo {
  char name[256];
  uint64_t total_memory;  // bytes
  int32_t cc_major;       // compute capability
  int32_t cc_minor;
  int32_t multiprocessor_count;
  int32_t pci_bus_id;
  int32_t reserved[8];
} OpendlCudaDeviceInfo;

typedef struct OpendlCudaVersions {
  int32_t runtime;  // cudaRuntimeGetVersion, e.g. 13000
  int32_t driver;   // cudaDriverGetVersion (0 when no driver is installed)
  int64_t cudnn;    // cudnnGetVersion, e.g. 92800
  int32_t cublas;   // cublasGetProperty major*10000 + minor*100 + patch
  int32_t cudnn_compiled;   // CUDNN_VERSION the plugin was compiled against
  int32_t cublas_compiled;  // CUBLAS_VERSION the plugin was compiled against
  int32_t reserved[7];
} OpendlCudaVersions;

int opendl_cuda_abi_version(void);
// Number of CUDA devices in *count; fails with 7708 when there is none or 7709 when no usable driver is installed.
int opendl_cuda_device_count(int* count, char* err, size_t err_len);
int opendl_cuda_device_info(int device, OpendlCudaDeviceInfo* out, char* err, size_t err_len);
// Library versions; needs no device (driver is 0 when absent).
int opendl_cuda_versions(OpendlCudaVersions* out, char* err, size_t err_len);
// Creates a context on `device` (stream, cuDNN and cuBLAS handles), runs a kernel, a cuBLAS and a cuDNN call on
// a small buffer, checks the result on the host and releases everything.
int opendl_cuda_selftest(int device, char* err, size_t err_len);

// The backend of one device: an opendl::Backend (backend/backend.h) behind an opaque pointer. `backend_abi` is
// libopendl's fingerprint of backend.h (OPENDL_BACKEND_ABI); a plugin built from another version refuses with
// 4204. Backend methods never throw: the first failure is kept and every later call does nothing until
// opendl_cuda_backend_take_error returns it (0: none) and clears it.
int opendl_cuda_backend_create(int device, const char* backend_abi, void** out, char* err, size_t err_len);
void opendl_cuda_backend_destroy(void* backend);
int opendl_cuda_backend_take_error(void* backend, char* err, size_t err_len);
// TF32 tensor cores allowed for convolutions and matrix products; only deterministic cuDNN algorithms. Applies to
// convolution shapes planned afterwards (plans are cached per setting).
void opendl_cuda_backend_set_options(void* backend, int tf32, int deterministic);
// Waits for all work enqueued so far.
int opendl_cuda_backend_synchronize(void* backend, char* err, size_t err_len);

typedef int (*OpendlCudaAbiVersionFn)(void);
typedef int (*OpendlCudaDeviceCountFn)(int*, char*, size_t);
typedef int (*OpendlCudaDeviceInfoFn)(int, OpendlCudaDeviceInfo*, char*, size_t);
typedef int (*OpendlCudaVersionsFn)(OpendlCudaVersions*, char*, size_t);
typedef int (*OpendlCudaSelftestFn)(int, char*, size_t);
typedef int (*OpendlCudaBackendCreateFn)(int, const char*, void**, char*, size_t);
typedef void (*OpendlCudaBackendDestroyFn)(void*);
typedef int (*OpendlCudaBackendTakeErrorFn)(void*, char*, size_t);
typedef void (*OpendlCudaBackendSetOptionsFn)(void*, int, int);
typedef int (*OpendlCudaBackendSynchronizeFn)(void*, char*, size_t);

#ifdef __cplusplus
}
#endif
