#include "model/tbo_split.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <numeric>

#include "core/error.h"

namespace epserve {

int64_t split_by_balanced_sum(const std::vector<int64_t>& lens) {
  const int64_t total = std::accumulate(lens.begin(), lens.end(), int64_t{0});
  int64_t left = 0;
  int64_t min_diff = std::numeric_limits<int64_t>::max();
  int64_t best = 0;
  for (size_t i = 1; i < lens.size(); ++i) {
    left += lens[i - 1];
    const int64_t diff = std::llabs(left - (total - left));
    if (diff > min_diff) break;
    min_diff = diff;
    best = static_cast<int64_t>(i);
  }
  return best;
}

int64_t split_by_cum_less_than_half(const std::vector<int64_t>& lens) {
  const int64_t total = std::accumulate(lens.begin(), lens.end(), int64_t{0});
  const int64_t half = total / 2;
  int64_t left = 0;
  for (size_t i = 0; i < lens.size(); ++i) {
    left += lens[i];
    if (left > half) return static_cast<int64_t>(i);
  }
  return 0;
}

bool two_chunk_split_enabled(const std::vector<int64_t>& lens, double threshold) {
  EPS_CHECK(threshold >= 0 && threshold <= 0.5,
            "--tbo-token-distribution-threshold {} is outside [0, 0.5]", threshold);
  const int64_t index = split_by_balanced_sum(lens);
  const int64_t left = std::accumulate(lens.begin(), lens.begin() + index, int64_t{0});
  const double total = static_cast<double>(std::accumulate(lens.begin(), lens.end(), int64_t{0}));
  return left < total * threshold || left > total * (1 - threshold);
}

bool batch_is_extend(const ForwardBatch& batch) {
  return std::any_of(batch.seqs.begin(), batch.seqs.end(),
                     [](const SequenceInput& s) { return s.num_new > 1 || s.num_past == 0; });
}

TboSplit compute_tbo_split(const ForwardBatch& batch, double threshold) {
  TboSplit split;
  if (batch.seqs.empty()) return split;
  if (!batch_is_extend(batch)) {
    split.split_seq = static_cast<int64_t>(batch.seqs.size()) / 2;
    split.split_token = split.split_seq;
    return split;
  }
  std::vector<int64_t> lens;
  for (const SequenceInput& s : batch.seqs) lens.push_back(s.num_new);
  const int64_t total = batch.num_tokens();
  if (two_chunk_split_enabled(lens, threshold)) {
    split.split_seq = split_by_cum_less_than_half(lens);
    split.split_token = total / 2;
    split.two_chunk = true;
    // SGLang cuts inside the chosen sequence; when total / 2 falls on its start (it cannot
    // fall on its end), A simply ends before it.
    return split;
  }
  split.split_seq = split_by_balanced_sum(lens);
  split.split_token = std::accumulate(lens.begin(), lens.begin() + split.split_seq, int64_t{0});
  return split;
}

namespace {

// Qwen3-VL: the 3-D positions of rows [t0, t0 + count) and the image rows among them (with their
// embeddings: the input row and every DeepStack feature), rebased to start at row `at` of out.
void add_vision_part(const ForwardBatch& batch, int64_t t0, int64_t count, int64_t at,
                     ForwardBatch& out) {
  if (!batch.mrope_positions.empty()) {
    EPS_CHECK(batch.mrope_positions.size() == 3 * batch.token_ids.size(),
              "{} 3-D positions for {} tokens", batch.mrope_positions.size() / 3,
              batch.token_ids.size());
    out.mrope_positions.insert(out.mrope_positions.end(), batch.mrope_positions.begin() + 3 * t0,
                               batch.mrope_positions.begin() + 3 * (t0 + count));
  }
  if (batch.image_rows.empty()) return;
  const int64_t W = batch.image_embed_width;
  out.image_embed_width = W;
  // image_rows are ascending: the rows of this part are one run of them.
  auto first = std::lower_bound(batch.image_rows.begin(), batch.image_rows.end(), t0);
  auto last = std::lower_bound(first, batch.image_rows.end(), t0 + count);
  for (auto it = first; it != last; ++it) {
    const int64_t j = it - batch.image_rows.begin();
    out.image_rows.push_back(static_cast<int32_t>(at + (*it - t0)));
    out.image_embeds.insert(out.image_embeds.end(), batch.image_embeds.begin() + j * W,
                            batch.image_embeds.begin() + (j + 1) * W);
  }
}

// Appends sequence s's new tokens [first, first + count) to out as one sequence.
void add_part(const ForwardBatch& batch, const SequenceInput& s, int64_t first, int64_t count,
              ForwardBatch& out) {
  SequenceInput part;
  part.token_offset = out.num_tokens();
  part.num_new = count;
  part.num_past = s.num_past + first;
  part.slots.assign(s.slots.begin(), s.slots.begin() + part.num_past + count);
  // Logits are taken from the whole batch's hidden rows; the parts keep the request's wish.
  part.logits = s.logits;
  const int64_t t0 = s.token_offset + first;
  out.token_ids.insert(out.token_ids.end(), batch.token_ids.begin() + t0,
                       batch.token_ids.begin() + t0 + count);
  out.positions.insert(out.positions.end(), batch.positions.begin() + t0,
                       batch.positions.begin() + t0 + count);
  add_vision_part(batch, t0, count, part.token_offset, out);
  out.seqs.push_back(std::move(part));
}

}  // namespace

std::pair<ForwardBatch, ForwardBatch> split_forward_batch(const ForwardBatch& batch,
                                                          const TboSplit& split) {
  ForwardBatch a, b;
  for (const SequenceInput& s : batch.seqs) {
    const int64_t begin = s.token_offset;
    const int64_t end = s.token_offset + s.num_new;
    if (end <= split.split_token) {
      add_part(batch, s, 0, s.num_new, a);
    } else if (begin >= split.split_token) {
      add_part(batch, s, 0, s.num_new, b);
    } else {
      add_part(batch, s, 0, split.split_token - begin, a);
      add_part(batch, s, split.split_token - begin, end - split.split_token, b);
    }
  }
  EPS_CHECK(a.num_tokens() == split.split_token, "TBO split at token {} gave A {} tokens",
            split.split_token, a.num_tokens());
  return {std::move(a), std::move(b)};
}

bool local_can_run_tbo(bool is_extend, bool low_latency_mode_forced) {
  return !(is_extend && low_latency_mode_forced);
}

std::vector<int64_t> tbo_vote(const ForwardBatch& batch, bool low_latency_mode_forced) {
  if (batch.seqs.empty()) return {0, 0, 0};
  const bool extend = batch_is_extend(batch);
  return {local_can_run_tbo(extend, low_latency_mode_forced) ? 0 : 1, extend ? 1 : 0,
          extend ? 0 : 1};
}

bool tbo_agreed(const std::vector<int64_t>& max_votes) {
  EPS_CHECK(max_votes.size() == 3, "TBO vote has {} entries", max_votes.size());
  const bool someone_refuses = max_votes[0] != 0;
  const bool modes_differ = max_votes[1] != 0 && max_votes[2] != 0;
  const bool all_idle = max_votes[1] == 0 && max_votes[2] == 0;
  return !someone_refuses && !modes_differ && !all_idle;
}

TboPolicy tbo_policy_from_env() {
  TboPolicy policy;
  policy.min_rows_per_expert = kTboMinRowsPerExpert;
  if (const char* v = std::getenv("EPSERVE_TBO_POLICY"); v && *v) {
    EPS_CHECK(std::strcmp(v, "auto") == 0 || std::strcmp(v, "always") == 0,
              "EPSERVE_TBO_POLICY='{}' must be 'auto' or 'always'", v);
    policy.always = std::strcmp(v, "always") == 0;
  }
  if (const char* v = std::getenv("EPSERVE_TBO_MIN_ROWS_PER_EXPERT"); v && *v) {
    char* end = nullptr;
    long n = std::strtol(v, &end, 10);
    EPS_CHECK(end && *end == '\0' && n >= 0,
              "EPSERVE_TBO_MIN_ROWS_PER_EXPERT='{}' must be a "
              "non-negative integer",
              v);
    policy.min_rows_per_expert = n;
  }
  return policy;
}

bool tbo_split_pays(const TboPolicy& policy, bool multi_node, int64_t group_tokens, int num_groups,
                    int top_k, int num_physical_experts) {
  if (policy.always) return true;
  if (!multi_node) return false;
  if (num_physical_experts <= 0) return true;
  // Rows per routed expert of one micro-batch: half the step's (token, slot) pairs over experts.
  const int64_t pairs = group_tokens * num_groups * top_k;
  return pairs >= 2 * policy.min_rows_per_expert * num_physical_experts;
}

}  // namespace epserve
