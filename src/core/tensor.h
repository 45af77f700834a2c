// Tensor: a dtype, a shape and a pointer, with shared ownership of whatever holds the bytes
// (an mmapped file, a heap buffer). Weights are views into mmapped safetensors files;
// activations are heap tensors made with Tensor::empty.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"

namespace epserve {

using Shape = std::vector<int64_t>;

std::string shape_str(const Shape& shape);  // "[2, 3]"
int64_t shape_numel(const Shape& shape);

class Tensor {
 public:
  Tensor() = default;
  Tensor(DType dtype, Shape shape, void* data, std::shared_ptr<void> owner)
      : dtype_(dtype), shape_(std::move(shape)), data_(data), owner_(std::move(owner)) {}

  // A zero-filled, 64-byte aligned heap tensor.
  static Tensor empty(DType dtype, Shape shape);

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const { return shape_.at(i < 0 ? shape_.size() + i : i); }
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  bool defined() const { return data_ != nullptr || !shape_.empty(); }

  void* data() const { return data_; }
  template <typename T>
  T* ptr() const {
    return static_cast<T*>(data_);
  }
  float* f32() const {
    EPS_CHECK(dtype_ == DType::F32, "tensor is {}, expected F32", dtype_name(dtype_));
    return static_cast<float*>(data_);
  }

  // Rows [begin, end) of the first dimension, sharing the storage.
  Tensor slice_rows(int64_t begin, int64_t end) const;
  // The same bytes seen with another shape of equal element count.
  Tensor reshape(Shape shape) const;

 private:
  DType dtype_ = DType::F32;
  Shape shape_;
  void* data_ = nullptr;
  std::shared_ptr<void> owner_;
};

}  // namespace epserve
