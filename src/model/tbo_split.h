// Two-batch overlap (TBO): where a forward batch is cut into micro-batches A and B, as SGLang's
// two_batch_overlap.py cuts it.
//   decode (every sequence has one new token): by sequences, A = the first num_seqs / 2.
//   extend (any prompt token): at the sequence boundary that best balances the tokens; when even
//     that leaves either side under threshold * tokens (--tbo-token-distribution-threshold,
//     default 0.48), at token total / 2, which cuts one sequence in two (its first part in A).
//   empty (an idle DP group): both micro-batches empty.
// A is always tokens [0, split_token) and B [split_token, T): the micro-batches are contiguous row
// ranges of the batch, so per-token buffers need no copies.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "model/forward_batch.h"

namespace epserve {

struct TboSplit {
  int64_t split_seq = 0;    // extend with two_chunk: the sequence cut in two; else B's first
  int64_t split_token = 0;  // A = tokens [0, split_token)
  bool two_chunk = false;   // one sequence is cut in two
};

// SGLang's _split_array_by_balanced_sum: the first index i >= 1 at which |sum(lens[:i]) -
// sum(lens[i:])| stops decreasing (ties move right); 0 for fewer than two entries.
int64_t split_by_balanced_sum(const std::vector<int64_t>& lens);
// SGLang's _split_array_by_cum_less_than_half: the first i with sum(lens[:i+1]) > total / 2.
int64_t split_by_cum_less_than_half(const std::vector<int64_t>& lens);
// SGLang's _is_two_chunk_split_enabled.
bool two_chunk_split_enabled(const std::vector<int64_t>& lens, double threshold);

// True when the batch has a prompt token (SGLang's extend mode), false for pure decode.
bool batch_is_extend(const ForwardBatch& batch);
// The split of a batch (extend: by the sequences' new-token counts; decode: by sequences).
TboSplit compute_tbo_split(const ForwardBatch& batch, double threshold);
// The two micro-batches, each self-contained (token offsets from 0). A sequence cut in two keeps
// its KV slots: A's part covers positions [0, num_past + a), B's part has num_past + a cached
// tokens (written by A's attention of the same layer, which runs first) and the rest as new.
// Qwen3-VL's per-token fields go with their rows, as SGLang's filter_batch slices mrope_positions:
// each micro-batch gets the 3-D positions of its rows and the image rows among them, renumbered
// from its first row, with their embeddings (so an image cut by the split is cut there too).
std::pair<ForwardBatch, ForwardBatch> split_forward_batch(const ForwardBatch& batch,
                                                          const TboSplit& split);

// Whether TBO runs this step on this group, before the world agrees (SGLang's local_can_run_tbo):
// not for an extend batch dispatched in low-latency mode.
bool local_can_run_tbo(bool is_extend, bool low_latency_mode_forced);
// What each group contributes to the agreement, reduced with max over the world:
// [cannot run, has an extend batch, has a decode batch] (an empty batch is neither, SGLang's IDLE).
std::vector<int64_t> tbo_vote(const ForwardBatch& batch, bool low_latency_mode_forced);
// TBO runs when no group refuses and the non-idle groups agree on the mode (SGLang's
// compute_output); votes are max-reduced over the world.
bool tbo_agreed(const std::vector<int64_t>& max_votes);

// epserve's rule on top of SGLang's agreement: whether splitting a step can pay on a CPU
// (EPSERVE_TBO_POLICY=auto, the default; "always" splits whenever SGLang's agreement does).
// Each micro-batch reads every local expert's weights again, so a split costs one more read of
// the routed experts per layer unless the expert GEMMs have enough rows; and on one node the
// dispatch is a shared-memory copy by the compute threads, with little to hide. A split runs only
// when the job spans nodes and each micro-batch brings every routed expert at least
// min_rows_per_expert rows on average (EPSERVE_TBO_MIN_ROWS_PER_EXPERT, default 64). On the bench
// model: prefill over the link (256 rows) won 1.10-1.21x in the four pairs at moderate load;
// decode (4 and 16 rows) and one node lost in most pairs (docs/benchmarks.md, "Two-batch overlap").
struct TboPolicy {
  bool always = false;  // EPSERVE_TBO_POLICY=always
  int64_t min_rows_per_expert = 0;
};
inline constexpr int64_t kTboMinRowsPerExpert = 64;
// From EPSERVE_TBO_POLICY (auto | always; default auto) and EPSERVE_TBO_MIN_ROWS_PER_EXPERT.
TboPolicy tbo_policy_from_env();
// group_tokens: this attention group's tokens this step (every group is assumed alike: each
// votes with its own size and the world takes the max, so one small group keeps the step whole).
bool tbo_split_pays(const TboPolicy& policy, bool multi_node, int64_t group_tokens, int num_groups,
                    int top_k, int num_physical_experts);

}  // namespace epserve
