#include "model/forward_batch.h"

#include <cstring>

#include "core/error.h"

namespace epserve {
namespace {

// Marks the optional vision section after the sequences.
constexpr int32_t kVisionSection = 0x56495331;

}  // namespace

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
  if (mrope_positions.empty() && image_rows.empty()) return out;
  // [tag, has mrope, mrope [T, 3]..., rows, width, rows..., embeds as bits...]
  out.push_back(kVisionSection);
  out.push_back(mrope_positions.empty() ? 0 : 1);
  out.insert(out.end(), mrope_positions.begin(), mrope_positions.end());
  out.push_back(static_cast<int32_t>(image_rows.size()));
  out.push_back(static_cast<int32_t>(image_embed_width));
  out.insert(out.end(), image_rows.begin(), image_rows.end());
  const size_t at = out.size();
  out.resize(at + image_embeds.size());
  std::memcpy(out.data() + at, image_embeds.data(), image_embeds.size() * sizeof(float));
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
  if (pos < data.size() && data[pos] == kVisionSection) {
    ++pos;
    const int64_t T = batch.num_tokens();
    if (next() != 0) {
      EPS_CHECK(pos + 3 * T <= data.size(), "malformed forward batch message");
      batch.mrope_positions.assign(data.begin() + pos, data.begin() + pos + 3 * T);
      pos += 3 * T;
    }
    const int64_t rows = next();
    batch.image_embed_width = next();
    const auto floats = static_cast<size_t>(rows * batch.image_embed_width);
    EPS_CHECK(rows >= 0 && pos + rows + floats <= data.size(), "malformed forward batch message");
    batch.image_rows.assign(data.begin() + pos, data.begin() + pos + rows);
    pos += rows;
    batch.image_embeds.resize(floats);
    std::memcpy(batch.image_embeds.data(), data.data() + pos, floats * sizeof(float));
    pos += floats;
  }
  EPS_CHECK(pos == data.size(), "forward batch message has {} trailing values", data.size() - pos);
  return batch;
}

}  // namespace epserve
