// The weights of a Hugging Face model directory: one model.safetensors, several shards listed by
// model.safetensors.index.json, or every *.safetensors file in the directory. Tensors are looked
// up by their Hugging Face names; shape and dtype are checked on lookup and an error names the
// file, the tensor, what was expected and what was found.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/quant_config.h"
#include "io/safetensors.h"

namespace epserve {

class ModelWeights {
 public:
  static ModelWeights open(const std::string& model_dir);

  bool has(const std::string& name) const {
    return location_.count(stored_name(name)) != 0 || derived_.count(name) != 0;
  }
  // The tensor as stored (a view into the mapping); its shape must equal `shape` and its dtype
  // must be a floating type (F32, F16, BF16).
  Tensor get(const std::string& name, const Shape& shape) const;
  // The tensor as a matmul weight: BF16 and F32 are returned as views, F16 converted to F32.
  Tensor matrix(const std::string& name, const Shape& shape) const;
  // The tensor converted to an owned F32 tensor (norm weights, biases, small vectors).
  Tensor get_f32(const std::string& name, const Shape& shape) const;
  // The tensor as stored, any dtype; its shape is checked when `shape` is not empty.
  Tensor raw(const std::string& name, const Shape& shape = {}) const;
  DType dtype_of(const std::string& name) const;
  // config.json's quantization_config (Linear::load reads the block and group sizes from it).
  const QuantConfig& quantization() const { return quant_; }
  // Where a tensor is stored, for error messages.
  std::string file_of(const std::string& name) const;
  std::vector<std::string> names() const;
  // Bytes a tensor takes in its file.
  uint64_t nbytes(const std::string& name) const;

  // Checkpoints whose layout differs from the names the model files look up (Qwen3-VL: the
  // language model under model.language_model., experts fused in one 3-D tensor per layer):
  // `name` then reads the stored tensor `stored`.
  void add_alias(const std::string& name, const std::string& stored);
  // `name` is part of the stored 3-D tensor `stored` [E, A, B]: of its matrix `index`, rows
  // [begin, end) (a view, [end - begin, B]), or with `transpose` columns [begin, end)
  // transposed (an owned copy in the stored dtype, [end - begin, A]).
  void add_slice(const std::string& name, const std::string& stored, int64_t index, int64_t begin,
                 int64_t end, bool transpose);

 private:
  struct Slice {
    std::string stored;
    int64_t index = 0, begin = 0, end = 0;
    bool transpose = false;
  };
  const std::string& stored_name(const std::string& name) const {
    auto it = alias_.find(name);
    return it == alias_.end() ? name : it->second;
  }
  // The tensor `name` names, stored, aliased or sliced; `path` gets its file.
  Tensor fetch(const std::string& name, std::string& path) const;

  std::string model_dir_;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, size_t> location_;  // tensor name -> index into files_
  QuantConfig quant_;
  std::map<std::string, std::string> alias_;
  std::map<std::string, Slice> derived_;
};

// Converts F32, F16 or BF16 data to F32.
void convert_to_f32(const Tensor& src, float* dst);

}  // namespace epserve
