// The tensors a Hugging Face checkpoint of each supported architecture holds, by name and
// shape, derived from the config. make-model writes exactly these; tests use them to check
// that a directory is complete.
#pragma once

#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/model_config.h"

namespace epserve {

enum class TensorRole { kMatrix, kEmbedding, kNorm, kRouterBias };

struct TensorSpec {
  std::string name;
  Shape shape;
  TensorRole role;
};

std::vector<TensorSpec> model_tensor_specs(const ModelConfig& config);

}  // namespace epserve
