#include "model/forward_batch.h"

#include "core/error.h"

namespace epserve {

int64_t ForwardBatch::num_logit_rows() const {
  int64_t rows = 0;
  for (const auto& s : seqs) {
    rows += s.logits == LogitsWanted::kAll ? s.num_new : (s.logits == LogitsWanted::kLast ? 1 : 0);
  }
  return rows;
}

void ForwardBatch::add_sequence(const int32_t* new_tokens, int64_t num_new, int64_t num_past,
                                std::vector<int32_t> slots, LogitsWanted logits) {
  EPS_CHECK(num_new > 0, "a sequence in a forward batch needs at least one new token");
  EPS_CHECK(static_cast<int64_t>(slots.size()) == num_past + num_new,
            "sequence has {} KV slots for {} positions", slots.size(), num_past + num_new);
  SequenceInput s;
  s.token_offset = num_tokens();
  s.num_new = num_new;
  s.num_past = num_past;
  s.slots = std::move(slots);
  s.logits = logits;
  for (int64_t i = 0; i < num_new; ++i) {
    token_ids.push_back(new_tokens[i]);
    positions.push_back(static_cast<int32_t>(num_past + i));
  }
  seqs.push_back(std::move(s));
}

}  // namespace epserve
