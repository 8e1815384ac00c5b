// Tensor: a dense, row-major host array with a runtime dtype and an arbitrary shape. It is the public
// exchange type (sample images, weights, activations); inside the network the backend owns the physical
// layout of activations and converts only at the graph's edges.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace opendl {

// HALCON image types (spec 0): byte, int1, int2, uint2, int4, real.
enum class DType : int { kFloat32 = 0, kUInt8, kInt8, kInt16, kUInt16, kInt32 };
size_t dtype_size(DType t);
const char* dtype_name(DType t);  // HALCON's name: "real", "byte", ...

class Tensor {
 public:
  Tensor() = default;
  Tensor(std::vector<int64_t> shape, DType dtype = DType::kFloat32);  // zero-initialised
  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t dim(size_t i) const { return shape_.at(i); }
  size_t ndim() const { return shape_.size(); }
  int64_t numel() const;
  DType dtype() const { return dtype_; }
  bool empty() const { return !data_; }
  void* raw() { return data_.get(); }
  const void* raw() const { return data_.get(); }
  float* f32();
  const float* f32() const;
  Tensor clone() const;

 private:
  std::vector<int64_t> shape_;
  DType dtype_ = DType::kFloat32;
  std::shared_ptr<uint8_t> data_;  // 64-byte aligned
};

}  // namespace opendl
