// CudaContext: everything one device needs to run work (device id, a non-blocking stream, a cuDNN and a cuBLAS
// handle bound to that stream). One is created per device by its owner; there is no global or per-process
// context. Failures never throw or abort inside the plugin: every CUDA/cuDNN/cuBLAS call goes through the
// OPENDL_CHECK_* macros, which return a Status carrying a HALCON error code and a message naming the call.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include <memory>
#include <string>

namespace opendl::cuda {

struct Status {
  int code = 0;  // 0 or a HALCON error code (OPENDL_CUDA_ERR_*)
  std::string message;
  bool ok() const { return code == 0; }
};

Status cuda_status(cudaError_t e, const char* call, const char* file, int line);
Status cudnn_status(cudnnStatus_t s, const char* call, const char* file, int line);
Status cublas_status(cublasStatus_t s, const char* call, const char* file, int line);

// Copies a Status into the caller's (err, err_len) buffer and returns its code.
int report(const Status& s, char* err, size_t err_len);

}  // namespace opendl::cuda

// Each macro evaluates the call once and returns the failing Status from the enclosing function.
#define OPENDL_CHECK_CUDA(call)                                                               \
  do {                                                                                        \
    cudaError_t opendl_e_ = (call);                                                           \
    if (opendl_e_ != cudaSuccess) return ::opendl::cuda::cuda_status(opendl_e_, #call, __FILE__, __LINE__); \
  } while (0)
#define OPENDL_CHECK_CUDNN(call)                                                              \
  do {                                                                                        \
    cudnnStatus_t opendl_s_ = (call);                                                         \
    if (opendl_s_ != CUDNN_STATUS_SUCCESS)                                                    \
      return ::opendl::cuda::cudnn_status(opendl_s_, #call, __FILE__, __LINE__);              \
  } while (0)
#define OPENDL_CHECK_CUBLAS(call)                                                             \
  do {                                                                                        \
    cublasStatus_t opendl_s_ = (call);                                                        \
    if (opendl_s_ != CUBLAS_STATUS_SUCCESS)                                                   \
      return ::opendl::cuda::cublas_status(opendl_s_, #call, __FILE__, __LINE__);             \
  } while (0)
// Propagates a Status returned by a plugin function.
#define OPENDL_CHECK_STATUS(expr)                  \
  do {                                             \
    ::opendl::cuda::Status opendl_st_ = (expr);    \
    if (!opendl_st_.ok()) return opendl_st_;       \
  } while (0)

namespace opendl::cuda {

class CudaContext {
 public:
  // Makes `device` current on the calling thread and creates the stream and library handles.
  static Status create(int device, std::unique_ptr<CudaContext>* out);
  ~CudaContext();
  CudaContext(const CudaContext&) = delete;
  CudaContext& operator=(const CudaContext&) = delete;

  // Makes this context's device current on the calling thread (CUDA's current device is per host thread).
  Status activate() const;
  Status synchronize() const;

  int device() const { return device_; }
  cudaStream_t stream() const { return stream_; }
  cudnnHandle_t cudnn() const { return cudnn_; }
  cublasHandle_t cublas() const { return cublas_; }

 private:
  explicit CudaContext(int device) : device_(device) {}
  int device_;
  cudaStream_t stream_ = nullptr;
  cudnnHandle_t cudnn_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
};

// Device memory owned by a unique_ptr-like holder; freed on destruction (errors at free time are ignored).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  Status alloc(size_t bytes);
  float* f32() const { return static_cast<float*>(ptr_); }

 private:
  void* ptr_ = nullptr;
};

}  // namespace opendl::cuda
