// PD disaggregation as the rank processes see it. A prefill server's ranks write the KV cache of
// a finished prompt straight into the pages a decode server reserved for it; each rank has a
// KvTransferAgent (implemented in src/disagg over UCX, comm/rma_agent.h) that describes its own
// KV memory and, on the prefill side, writes its share. The runtime only moves the descriptions
// and jobs around: the decode group's descriptions go to the frontend in the ready message, a
// prefill send starts on every rank of the group (GroupLeaderRunner::run_task) and runs on a thread
// of the rank's own while the scheduler goes on (runtime/kv_send_queue.h). A rank makes its agent
// before its KV cache, so that the cache can live in memory the agent allocates.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/kv_cache.h"

namespace epserve {

// One rank's KV cache as a transfer sees it (filled by the rank from its model and cache).
struct KvMemory {
  std::vector<float*> k, v;  // per layer; v empty for MLA
  int64_t num_slots = 0;
  int64_t k_width = 0, v_width = 0;  // floats per slot and layer
  bool mla = false;
  int64_t num_kv_heads = 0, head_dim = 0;  // GQA's kv heads (all ranks) and their size
  int group_rank = 0, group_size = 1;      // in the attention group (tensor parallel)
};

class KvTransferAgent {
 public:
  virtual ~KvTransferAgent() = default;
  // Memory for this rank's whole KV cache (model/kv_cache.h) that the transfer writes into
  // directly (a decode rank's: allocated by UCX); data null when the agent gives none (the cache
  // then takes the heap's, which the agent registers in attach()). The memory may outlive the
  // agent.
  virtual KvStorage allocate_kv(size_t bytes) {
    (void)bytes;
    return {};
  }
  // Once, with the rank's KV cache, before describe() and send().
  virtual void attach(const KvMemory& memory) = 0;
  // This rank's KV memory as a writer needs it (worker address, keys, addresses, heads held).
  virtual nlohmann::json describe() const = 0;
  // Prefill: writes this rank's share of positions 0..slots.size()-1 (held in this server's
  // `slots`) into the decode group `target` ({"ranks": [describe()...], "slots": [...]}).
  // Returns the bytes written; throws epserve::Error.
  virtual int64_t send(const nlohmann::json& target, const std::vector<int32_t>& slots) = 0;
  // Prefill: the decode ranks (their describe()["address"]) that sends which timed out may
  // still write into (puts queued in transport buffers, comm/rma_agent.h); empty when nothing
  // of a failed send can land any more.
  virtual std::vector<std::string> draining() { return {}; }
};

// One finished send of a group (runtime/kv_send_queue.h): its bytes, or why it failed.
struct KvSendResult {
  int64_t id = 0;
  int64_t bytes = 0;
  std::string error;       // empty: sent
  bool cancelled = false;  // dropped before it started on every rank: nothing was written
};

using KvTransferAgentFactory = std::function<std::unique_ptr<KvTransferAgent>()>;

// SGLang's disaggregation timeouts (SGLANG_DISAGGREGATION_BOOTSTRAP_TIMEOUT,
// SGLANG_DISAGGREGATION_WAITING_TIMEOUT, 300 s each) and epserve's transfer timeout
// (EPSERVE_DISAGGREGATION_TRANSFER_TIMEOUT, 30 s), read from the environment.
//
// Page ownership (docs/expert_parallelism.md, "Prefill/decode disaggregation"): a decode server
// whose request ends before its KV arrived (aborted, timed out, or the transfer failed) keeps the
// reserved pages until the prefill server answers that nothing more will be written. Derived
// bounds, so that no page is held forever:
// - drain(): how long a prefill rank waits for the puts of a timed-out transfer to complete or
//   fail before it force-closes that endpoint;
// - lost_contact(): how long a decode server keeps asking a prefill server it cannot reach for
//   that answer (the prefill server cancels a room whose decode server stopped asking for
//   kRoomLease, and a transfer it already started ends within `transfer`);
// - hold_limit(): the decode scheduler's last resort, longer than any of the above.
struct DisaggTimeouts {
  std::chrono::milliseconds bootstrap{300000};  // prefill: a computed prompt waits for its decode
  std::chrono::milliseconds waiting{300000};    // decode: reserved pages wait for their KV
  std::chrono::milliseconds transfer{30000};    // prefill: one transfer, puts to remote completion
  static constexpr std::chrono::milliseconds kRoomLease{5000};
  std::chrono::milliseconds drain() const { return waiting; }
  std::chrono::milliseconds lost_contact() const {
    return kRoomLease + transfer + std::chrono::milliseconds(2000);
  }
  std::chrono::milliseconds hold_limit() const {
    return waiting + drain() + lost_contact() + std::chrono::milliseconds(10000);
  }
  static DisaggTimeouts from_env();
};

}  // namespace epserve
