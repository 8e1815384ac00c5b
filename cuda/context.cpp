// CudaContext and the translation of CUDA, cuDNN and cuBLAS status codes into HALCON error codes. Out-of-memory
// from any library becomes 4104 so that callers (runtime_init 'immediately', batch size search) can react to it
// the same way; a missing device or driver becomes 7708 / 7709 rather than a generic 4200.
#include "context.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "plugin_api.h"

namespace opendl::cuda {
namespace {

Status make(int code, const char* lib, const char* what, const char* call, const char* file, int line) {
  const char* base = std::strrchr(file, '/');
  char buf[1024];
  std::snprintf(buf, sizeof buf, "%s error: %s (in %s at %s:%d)", lib, what, call, base ? base + 1 : file, line);
  return Status{code, buf};
}

}  // namespace

Status cuda_status(cudaError_t e, const char* call, const char* file, int line) {
  int code = OPENDL_CUDA_ERR_CUDA;
  if (e == cudaErrorMemoryAllocation) code = OPENDL_CUDA_ERR_OUT_OF_DEVICE_MEM;
  else if (e == cudaErrorNoDevice) code = OPENDL_CUDA_ERR_GPU_REQUIRED;
  else if (e == cudaErrorInsufficientDriver || e == cudaErrorCompatNotSupportedOnDevice)
    code = OPENDL_CUDA_ERR_CUDA_LIBS_MISSING;
  char what[512];
  std::snprintf(what, sizeof what, "%s (%s, %d)", cudaGetErrorString(e), cudaGetErrorName(e), int(e));
  // Reset CUDA's per-thread last error so that a later cudaGetLastError() does not report this one again.
  (void)cudaGetLastError();
  return make(code, "CUDA", what, call, file, line);
}

Status cudnn_status(cudnnStatus_t s, const char* call, const char* file, int line) {
  int code = OPENDL_CUDA_ERR_CUDNN;
  // cuDNN 9 reports failed allocations of its own buffers (cudnnFind*'s trial buffers among them) under either
  // name; ALLOC_FAILED is the legacy API's documented one.
  if (s == CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED || s == CUDNN_STATUS_ALLOC_FAILED)
    code = OPENDL_CUDA_ERR_OUT_OF_DEVICE_MEM;
  else if (s == CUDNN_STATUS_SUBLIBRARY_LOADING_FAILED || s == CUDNN_STATUS_NOT_SUPPORTED_SUBLIBRARY_UNAVAILABLE)
    code = OPENDL_CUDA_ERR_CUDNN_LIBS_MISSING;
  else if (s == CUDNN_STATUS_NOT_SUPPORTED_INCOMPATIBLE_CUDA_DRIVER) code = OPENDL_CUDA_ERR_CUDA_LIBS_MISSING;
  // cuDNN 9 keeps a more specific message per thread; fall back to the status name.
  char detail[512] = {0};
  cudnnGetLastErrorString(detail, sizeof detail);
  char what[768];
  std::snprintf(what, sizeof what, "%s (%d)%s%s", cudnnGetErrorString(s), int(s), detail[0] ? ": " : "", detail);
  return make(code, "cuDNN", what, call, file, line);
}

Status cublas_status(cublasStatus_t s, const char* call, const char* file, int line) {
  int code = s == CUBLAS_STATUS_ALLOC_FAILED ? OPENDL_CUDA_ERR_OUT_OF_DEVICE_MEM : OPENDL_CUDA_ERR_CUBLAS;
  char what[256];
  std::snprintf(what, sizeof what, "%s (%s, %d)", cublasGetStatusString(s), cublasGetStatusName(s), int(s));
  return make(code, "cuBLAS", what, call, file, line);
}

int report(const Status& s, char* err, size_t err_len) {
  if (err && err_len > 0) {
    size_t n = std::min(s.message.size(), err_len - 1);
    std::memcpy(err, s.message.data(), n);
    err[n] = '\0';
  }
  return s.code;
}

Status CudaContext::create(int device, std::unique_ptr<CudaContext>* out) {
  std::unique_ptr<CudaContext> ctx(new CudaContext(device));
  OPENDL_CHECK_CUDA(cudaSetDevice(device));
  OPENDL_CHECK_CUDA(cudaStreamCreateWithFlags(&ctx->stream_, cudaStreamNonBlocking));
  OPENDL_CHECK_CUDNN(cudnnCreate(&ctx->cudnn_));
  OPENDL_CHECK_CUDNN(cudnnSetStream(ctx->cudnn_, ctx->stream_));
  OPENDL_CHECK_CUBLAS(cublasCreate(&ctx->cublas_));
  OPENDL_CHECK_CUBLAS(cublasSetStream(ctx->cublas_, ctx->stream_));
  *out = std::move(ctx);
  return {};
}

// Destruction must not fail loudly: errors here (e.g. a device lost earlier) are already reported elsewhere.
CudaContext::~CudaContext() {
  if (cudaSetDevice(device_) != cudaSuccess) (void)cudaGetLastError();
  if (cublas_) cublasDestroy(cublas_);
  if (cudnn_) cudnnDestroy(cudnn_);
  if (stream_) cudaStreamDestroy(stream_);
  (void)cudaGetLastError();
}

Status CudaContext::activate() const {
  OPENDL_CHECK_CUDA(cudaSetDevice(device_));
  return {};
}

Status CudaContext::synchronize() const {
  OPENDL_CHECK_CUDA(cudaStreamSynchronize(stream_));
  return {};
}

DeviceBuffer::~DeviceBuffer() {
  if (ptr_ && cudaFree(ptr_) != cudaSuccess) (void)cudaGetLastError();
}

Status DeviceBuffer::alloc(size_t bytes) {
  if (ptr_) {
    if (cudaFree(ptr_) != cudaSuccess) (void)cudaGetLastError();
    ptr_ = nullptr;
  }
  OPENDL_CHECK_CUDA(cudaMalloc(&ptr_, bytes));
  return {};
}

}  // namespace opendl::cuda
