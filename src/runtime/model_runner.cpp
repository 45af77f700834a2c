#include "runtime/model_runner.h"

namespace epserve {

LocalModelRunner::LocalModelRunner(std::unique_ptr<CausalLM> model, int64_t num_kv_slots)
    : model_(std::move(model)),
      cache_(model_->config().num_layers, num_kv_slots, model_->kv_layout()) {}

}  // namespace epserve
