// Host tensor storage: 64-byte aligned, zero-initialised, shared on copy (clone() copies the data).
#include "opendl/tensor.h"

#include <cstdlib>
#include <cstring>

#include "opendl/error.h"

namespace opendl {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::kFloat32: case DType::kInt32: return 4;
    case DType::kInt16: case DType::kUInt16: return 2;
    default: return 1;
  }
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::kFloat32: return "real";
    case DType::kUInt8: return "byte";
    case DType::kInt8: return "int1";
    case DType::kInt16: return "int2";
    case DType::kUInt16: return "uint2";
    case DType::kInt32: return "int4";
  }
  return "unknown";
}

Tensor::Tensor(std::vector<int64_t> shape, DType dtype) : shape_(std::move(shape)), dtype_(dtype) {
  size_t bytes = static_cast<size_t>(numel()) * dtype_size(dtype);
  size_t padded = ((bytes + 63) / 64) * 64;
  if (padded == 0) padded = 64;
  void* p = std::aligned_alloc(64, padded);
  if (!p) fail(err::kHostMem, "out of host memory allocating " + std::to_string(bytes) + " bytes");
  std::memset(p, 0, padded);
  data_ = std::shared_ptr<uint8_t>(static_cast<uint8_t*>(p), [](uint8_t* q) { std::free(q); });
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (auto d : shape_) n *= d;
  return n;
}

float* Tensor::f32() {
  if (dtype_ != DType::kFloat32) fail(err::kInternal, "tensor is not float32");
  return reinterpret_cast<float*>(data_.get());
}
const float* Tensor::f32() const { return const_cast<Tensor*>(this)->f32(); }

Tensor Tensor::clone() const {
  Tensor t(shape_, dtype_);
  if (data_) std::memcpy(t.raw(), raw(), static_cast<size_t>(numel()) * dtype_size(dtype_));
  return t;
}

}  // namespace opendl
