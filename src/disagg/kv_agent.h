// The KV transfer agent of a rank process (runtime/kv_transfer.h) over UCX RMA
// (comm/rma_agent.h). A decode rank's KV cache lives in one block UCX allocates (so that prefill
// ranks on the same host write it through shared memory), or, when UCX cannot, in heap memory it
// registers; either way it describes one region per layer and K/V. Each rank
// describes which kv heads it holds; a prefill rank writes, for every rank of the decode group,
// the heads that rank needs and it is chosen to send (see plan_kv_puts), with one put per run of
// consecutive slots when whole rows match and one per slot and head range otherwise.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "comm/rma_agent.h"
#include "runtime/kv_transfer.h"

namespace epserve {

struct KvAgentOptions {
  std::string mode;         // "prefill" or "decode"
  std::string net_devices;  // UCX_NET_DEVICES for the agent (from --disaggregation-ib-device)
  std::chrono::milliseconds transfer_timeout{30000};
  // Decode: the KV cache's memory comes from UCX (KvTransferAgent::allocate_kv), else the heap.
  bool allocate_kv = true;
  // Prefill: the same for the memory puts are read from (bench/kv_transfer_bench measures it;
  // the server leaves it off, see docs/benchmarks.md).
  bool allocate_source_kv = false;
  std::chrono::milliseconds drain_timeout{300000};  // DisaggTimeouts::drain()
};

// One rank's KV memory as far as a transfer needs it.
struct KvRankLayout {
  int64_t num_layers = 0;
  int64_t head_width = 0;  // floats per head per slot (MLA: the whole latent row, one "head")
  int64_t heads_total = 0;
  int64_t head_begin = 0, head_end = 0;  // heads this rank holds
  bool has_v = false;
  int64_t row_width() const { return (head_end - head_begin) * head_width; }
};

// The layout of attention-group rank `rank` of `memory.group_size` (GQA: its kv heads, replicated
// when there are fewer kv heads than ranks; MLA: every rank holds the whole latent row).
KvRankLayout kv_rank_layout(const KvMemory& memory, int rank);

// One put: `floats` floats from (layer, k or v, src slot, src offset) to (dst slot, dst offset).
struct KvPut {
  int64_t layer;
  bool v;
  int32_t src_slot;
  int64_t src_offset;
  int32_t dst_slot;
  int64_t dst_offset;
  int64_t floats;
};

// The puts prefill rank `me` (of the prefill layouts `prefill`) makes into decode rank
// `decode_index` (layout `decode`): the heads that decode rank holds, each sent by one of the
// prefill ranks holding it (spread over them by decode rank). Throws epserve::Error when the two
// layouts cannot be matched (layer count, head width or count, K/V).
std::vector<KvPut> plan_kv_puts(const std::vector<KvRankLayout>& prefill, int me,
                                const KvRankLayout& decode, int decode_index,
                                const std::vector<int32_t>& src_slots,
                                const std::vector<int32_t>& dst_slots);

// The handshake: whether the prefill group `prefill_ranks` can fill the decode group
// `decode_ranks` (each a list of KvTransferAgent::describe()); "" when it can, else why not.
std::string check_kv_layouts(const nlohmann::json& prefill_ranks,
                             const nlohmann::json& decode_ranks);

KvTransferAgentFactory make_ucx_kv_agent_factory(KvAgentOptions options);

}  // namespace epserve
