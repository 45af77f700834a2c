#include "core/tensor.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include <fmt/ranges.h>

namespace epserve {

std::string shape_str(const Shape& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Tensor Tensor::empty(DType dtype, Shape shape) {
  for (int64_t d : shape) EPS_CHECK(d >= 0, "negative dimension in shape {}", shape_str(shape));
  size_t bytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  size_t rounded = std::max<size_t>(64, (bytes + 63) / 64 * 64);
  void* data = nullptr;
  std::shared_ptr<void> owner;
  if (rounded >= (1u << 20)) {
    // Large buffers come from anonymous mappings: zero-filled, committed only when touched.
    data = mmap(nullptr, rounded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    EPS_CHECK(data != MAP_FAILED, "out of memory allocating {} bytes for shape {}", bytes,
              shape_str(shape));
    owner = std::shared_ptr<void>(data, [rounded](void* p) { munmap(p, rounded); });
  } else {
    data = std::aligned_alloc(64, rounded);
    EPS_CHECK(data != nullptr, "out of memory allocating {} bytes", bytes);
    std::memset(data, 0, rounded);
    owner = std::shared_ptr<void>(data, [](void* p) { std::free(p); });
  }
  return Tensor(dtype, std::move(shape), data, std::move(owner));
}

Tensor Tensor::slice_rows(int64_t begin, int64_t end) const {
  EPS_CHECK(ndim() >= 1 && begin >= 0 && begin <= end && end <= shape_[0],
            "slice [{}, {}) out of range for shape {}", begin, end, shape_str(shape_));
  Shape shape = shape_;
  shape[0] = end - begin;
  size_t row_bytes = shape_[0] == 0 ? 0 : nbytes() / static_cast<size_t>(shape_[0]);
  return Tensor(dtype_, std::move(shape), static_cast<char*>(data_) + begin * row_bytes, owner_);
}

Tensor Tensor::reshape(Shape shape) const {
  EPS_CHECK(shape_numel(shape) == numel(), "cannot reshape {} to {}", shape_str(shape_),
            shape_str(shape));
  return Tensor(dtype_, std::move(shape), data_, owner_);
}

}  // namespace epserve
