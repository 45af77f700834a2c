// Writing safetensors files (used by `epserve make-model` and tests): tensors are declared with
// name, dtype and shape, then written in declaration order, each filled by a callback, so a
// multi-gigabyte model never has to sit in memory. Large models are split into shards with a
// model.safetensors.index.json, as Hugging Face's save_pretrained does.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace epserve {

struct TensorToWrite {
  std::string name;
  DType dtype;
  Shape shape;
  // Fills `bytes` bytes at dst with the tensor's data.
  std::function<void(void* dst, size_t bytes)> fill;
};

// Writes one safetensors file holding `tensors`.
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Writes model.safetensors, or model-0000i-of-0000n.safetensors shards of at most
// max_shard_bytes plus model.safetensors.index.json when the tensors do not fit in one.
void write_model_safetensors(const std::string& dir, const std::vector<TensorToWrite>& tensors,
                             size_t max_shard_bytes);

}  // namespace epserve
