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

// Layout: [num_seqs, then per sequence: num_new, num_past, logits, slots..., tokens...].
std::vector<int32_t> ForwardBatch::serialize() const {
  std::vector<int32_t> out;
  out.push_back(static_cast<int32_t>(seqs.size()));
  for (const SequenceInput& s : seqs) {
    out.push_back(static_cast<int32_t>(s.num_new));
    out.push_back(static_cast<int32_t>(s.num_past));
    out.push_back(static_cast<int32_t>(s.logits));
    out.insert(out.end(), s.slots.begin(), s.slots.end());
    out.insert(out.end(), token_ids.begin() + s.token_offset,
               token_ids.begin() + s.token_offset + s.num_new);
  }
  return out;
}

ForwardBatch ForwardBatch::deserialize(const std::vector<int32_t>& data) {
  ForwardBatch batch;
  size_t pos = 0;
  auto next = [&]() {
    EPS_CHECK(pos < data.size(), "truncated forward batch message");
    return data[pos++];
  };
  int32_t num_seqs = next();
  for (int32_t i = 0; i < num_seqs; ++i) {
    int64_t num_new = next();
    int64_t num_past = next();
    auto logits = static_cast<LogitsWanted>(next());
    EPS_CHECK(num_new > 0 && num_past >= 0 && pos + num_past + 2 * num_new <= data.size(),
              "malformed forward batch message");
    std::vector<int32_t> slots(data.begin() + pos, data.begin() + pos + num_past + num_new);
    pos += num_past + num_new;
    batch.add_sequence(data.data() + pos, num_new, num_past, std::move(slots), logits);
    pos += num_new;
  }
  EPS_CHECK(pos == data.size(), "forward batch message has {} trailing values", data.size() - pos);
  return batch;
}

}  // namespace epserve
