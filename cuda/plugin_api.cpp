// The exported C entry points of libopendl_cuda (ABI in cpp/src/backend/cuda_plugin_abi.h). Each wraps its
// body so that neither a C++ exception nor a CUDA failure crosses the dlopen boundary: the caller always gets a
// HALCON error code plus a message.
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <vector>

#include "context.h"
#include "kernels.h"
#include "plugin_api.h"

namespace opendl::cuda {
namespace {

Status count_devices(int* count) {
  *count = 0;
  cudaError_t e = cudaGetDeviceCount(count);
  if (e == cudaErrorInsufficientDriver) {
    // Also what a machine without any NVIDIA driver reports; say which of the two it is.
    int driver = 0, runtime = 0;
    (void)cudaDriverGetVersion(&driver);
    (void)cudaRuntimeGetVersion(&runtime);
    (void)cudaGetLastError();
    char buf[256];
    if (driver == 0)
      std::snprintf(buf, sizeof buf, "no NVIDIA driver found (libcuda.so.1 missing); the CUDA plugin needs a driver "
                    "for CUDA %d.%d or newer", runtime / 1000, runtime % 1000 / 10);
    else
      std::snprintf(buf, sizeof buf, "the NVIDIA driver supports CUDA %d.%d, the CUDA plugin needs %d.%d or newer",
                    driver / 1000, driver % 1000 / 10, runtime / 1000, runtime % 1000 / 10);
    return Status{OPENDL_CUDA_ERR_CUDA_LIBS_MISSING, buf};
  }
  OPENDL_CHECK_CUDA(e);
  if (*count == 0) return Status{OPENDL_CUDA_ERR_GPU_REQUIRED, "no CUDA device found"};
  return {};
}

Status check_device(int device) {
  int n = 0;
  OPENDL_CHECK_STATUS(count_devices(&n));
  if (device < 0 || device >= n) {
    char buf[128];
    std::snprintf(buf, sizeof buf, "CUDA device id %d out of range (%d device(s))", device, n);
    return Status{OPENDL_CUDA_ERR_WRONG_VALUE, buf};
  }
  return {};
}

Status device_info(int device, OpendlCudaDeviceInfo* out) {
  OPENDL_CHECK_STATUS(check_device(device));
  cudaDeviceProp p;
  OPENDL_CHECK_CUDA(cudaGetDeviceProperties(&p, device));
  std::memset(out, 0, sizeof *out);
  std::snprintf(out->name, sizeof out->name, "%s", p.name);
  out->total_memory = uint64_t(p.totalGlobalMem);
  out->cc_major = p.major;
  out->cc_minor = p.minor;
  out->multiprocessor_count = p.multiProcessorCount;
  out->pci_bus_id = p.pciBusID;
  return {};
}

Status versions(OpendlCudaVersions* out) {
  std::memset(out, 0, sizeof *out);
  OPENDL_CHECK_CUDA(cudaRuntimeGetVersion(&out->runtime));
  if (cudaDriverGetVersion(&out->driver) != cudaSuccess) {  // 0 without a driver; not an error here
    out->driver = 0;
    (void)cudaGetLastError();
  }
  out->cudnn = int64_t(cudnnGetVersion());
  int major = 0, minor = 0, patch = 0;
  OPENDL_CHECK_CUBLAS(cublasGetProperty(MAJOR_VERSION, &major));
  OPENDL_CHECK_CUBLAS(cublasGetProperty(MINOR_VERSION, &minor));
  OPENDL_CHECK_CUBLAS(cublasGetProperty(PATCH_LEVEL, &patch));
  out->cublas = major * 10000 + minor * 100 + patch;
  out->cudnn_compiled = CUDNN_VERSION;
  out->cublas_compiled = CUBLAS_VERSION;
  return {};
}

// y = relu(0.5 * (2 * x + y)) with x_i = i - n/2, y_i = 1: our kernel (axpy), cuBLAS (sscal) and cuDNN
// (activation) each touch the buffer once, so a broken library or an unsupported architecture shows up.
Status selftest(int device) {
  OPENDL_CHECK_STATUS(check_device(device));
  std::unique_ptr<CudaContext> ctx;
  OPENDL_CHECK_STATUS(CudaContext::create(device, &ctx));
  constexpr int n = 1000;
  std::vector<float> hx(n), hy(n, 1.0f), out(n);
  for (int i = 0; i < n; ++i) hx[i] = float(i - n / 2);
  DeviceBuffer x, y;
  OPENDL_CHECK_STATUS(x.alloc(n * sizeof(float)));
  OPENDL_CHECK_STATUS(y.alloc(n * sizeof(float)));
  OPENDL_CHECK_CUDA(cudaMemcpyAsync(x.f32(), hx.data(), n * sizeof(float), cudaMemcpyHostToDevice, ctx->stream()));
  OPENDL_CHECK_CUDA(cudaMemcpyAsync(y.f32(), hy.data(), n * sizeof(float), cudaMemcpyHostToDevice, ctx->stream()));
  OPENDL_CHECK_CUDA(launch_axpy(ctx->stream(), n, 2.0f, x.f32(), y.f32()));
  const float half = 0.5f;
  OPENDL_CHECK_CUBLAS(cublasSscal(ctx->cublas(), n, &half, y.f32(), 1));

  cudnnTensorDescriptor_t desc = nullptr;
  cudnnActivationDescriptor_t act = nullptr;
  Status st = [&]() -> Status {
    OPENDL_CHECK_CUDNN(cudnnCreateTensorDescriptor(&desc));
    OPENDL_CHECK_CUDNN(cudnnSetTensor4dDescriptor(desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, 1, 1, n));
    OPENDL_CHECK_CUDNN(cudnnCreateActivationDescriptor(&act));
    OPENDL_CHECK_CUDNN(cudnnSetActivationDescriptor(act, CUDNN_ACTIVATION_RELU, CUDNN_NOT_PROPAGATE_NAN, 0.0));
    const float one = 1.0f, zero = 0.0f;
    OPENDL_CHECK_CUDNN(cudnnActivationForward(ctx->cudnn(), act, &one, desc, y.f32(), &zero, desc, y.f32()));
    return {};
  }();
  if (act) cudnnDestroyActivationDescriptor(act);
  if (desc) cudnnDestroyTensorDescriptor(desc);
  OPENDL_CHECK_STATUS(st);

  OPENDL_CHECK_CUDA(cudaMemcpyAsync(out.data(), y.f32(), n * sizeof(float), cudaMemcpyDeviceToHost, ctx->stream()));
  OPENDL_CHECK_STATUS(ctx->synchronize());
  for (int i = 0; i < n; ++i) {
    float want = std::fmax(0.0f, 0.5f * (2.0f * hx[i] + 1.0f));
    if (std::fabs(out[i] - want) > 1e-5f * (1.0f + std::fabs(want))) {
      char buf[256];
      std::snprintf(buf, sizeof buf, "CUDA self-test on device %d: element %d is %g, expected %g", device, i,
                    double(out[i]), double(want));
      return Status{OPENDL_CUDA_ERR_CUDA, buf};
    }
  }
  return {};
}

template <class F>
int guarded(char* err, size_t err_len, F&& f) {
  try {
    return report(f(), err, err_len);
  } catch (const std::bad_alloc&) {
    return report(Status{6001, "out of host memory in the CUDA plugin"}, err, err_len);
  } catch (const std::exception& e) {
    return report(Status{OPENDL_CUDA_ERR_CUDA, std::string("CUDA plugin: ") + e.what()}, err, err_len);
  } catch (...) {
    return report(Status{OPENDL_CUDA_ERR_CUDA, "CUDA plugin: unknown exception"}, err, err_len);
  }
}

}  // namespace
}  // namespace opendl::cuda

using opendl::cuda::guarded;
using opendl::cuda::Status;

OPENDL_CUDA_EXPORT int opendl_cuda_abi_version(void) { return OPENDL_CUDA_ABI_VERSION; }

OPENDL_CUDA_EXPORT int opendl_cuda_device_count(int* count, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    if (!count) return Status{OPENDL_CUDA_ERR_WRONG_VALUE, "opendl_cuda_device_count: count is null"};
    return opendl::cuda::count_devices(count);
  });
}

OPENDL_CUDA_EXPORT int opendl_cuda_device_info(int device, OpendlCudaDeviceInfo* out, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    if (!out) return Status{OPENDL_CUDA_ERR_WRONG_VALUE, "opendl_cuda_device_info: out is null"};
    return opendl::cuda::device_info(device, out);
  });
}

OPENDL_CUDA_EXPORT int opendl_cuda_versions(OpendlCudaVersions* out, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    if (!out) return Status{OPENDL_CUDA_ERR_WRONG_VALUE, "opendl_cuda_versions: out is null"};
    return opendl::cuda::versions(out);
  });
}

OPENDL_CUDA_EXPORT int opendl_cuda_selftest(int device, char* err, size_t err_len) {
  return guarded(err, err_len, [&] { return opendl::cuda::selftest(device); });
}
