// What one forward pass computes: the new tokens of several sequences, each with the KV-cache
// slots of all its tokens (cached ones first, then the new ones), and which logits to return.
#pragma once

#include <cstdint>
#include <vector>

namespace epserve {

enum class LogitsWanted : uint8_t { kNone, kLast, kAll };

struct SequenceInput {
  int64_t token_offset = 0;  // first of this sequence's new tokens in ForwardBatch::token_ids
  int64_t num_new = 0;
  int64_t num_past = 0;        // tokens already in the KV cache
  std::vector<int32_t> slots;  // KV slot of every position 0 .. num_past + num_new - 1
  LogitsWanted logits = LogitsWanted::kLast;
};

struct ForwardBatch {
  std::vector<int32_t> token_ids;  // [T] the new tokens of all sequences, sequence by sequence
  std::vector<int32_t> positions;  // [T]
  std::vector<SequenceInput> seqs;
  // Qwen3-VL. mrope_positions [T, 3]: the t/h/w rotary positions of every new token (empty: the
  // 1-D position on all three, which is plain RoPE). image_rows: the rows of the batch that are
  // image tokens, ascending; image_embeds [image_rows, image_embed_width]: their vision-tower
  // outputs (the merger's row, then one row per DeepStack feature).
  std::vector<int32_t> mrope_positions;
  std::vector<int32_t> image_rows;
  std::vector<float> image_embeds;
  int64_t image_embed_width = 0;

  int64_t num_tokens() const { return static_cast<int64_t>(token_ids.size()); }
  // Rows of the logits output, in sequence order: all new tokens, the last one, or none.
  int64_t num_logit_rows() const;
  // Appends a sequence; positions continue from num_past.
  void add_sequence(const int32_t* new_tokens, int64_t num_new, int64_t num_past,
                    std::vector<int32_t> slots, LogitsWanted logits);

  int64_t num_image_rows() const { return static_cast<int64_t>(image_rows.size()); }

  // A flat int32 encoding (vision fields included, floats as their bits), for handing the batch to
  // the other ranks of a group.
  std::vector<int32_t> serialize() const;
  static ForwardBatch deserialize(const std::vector<int32_t>& data);
};

}  // namespace epserve
