#include "runtime/model_runner.h"

#include "core/error.h"

namespace epserve {

void ModelRunner::encode_image(int64_t, int64_t, int64_t, const float*, float*) {
  EPS_THROW("this model runner has no vision tower");
}

LocalModelRunner::LocalModelRunner(std::unique_ptr<CausalLM> model, int64_t num_kv_slots)
    : owned_(std::move(model)),
      model_(*owned_),
      cache_(model_.config().num_layers, num_kv_slots, model_.kv_layout()) {}

LocalModelRunner::LocalModelRunner(CausalLM& model, int64_t num_kv_slots,
                                   const KvAllocator& allocate_kv)
    : model_(model),
      cache_(model_.config().num_layers, num_kv_slots, model_.kv_layout(), allocate_kv) {}

}  // namespace epserve
