// The scheduler of one attention group: continuous batching over the paged KV cache, as SGLang
// schedules. Each step() builds one forward batch from the running requests (one decode token
// each) and waiting requests (prompt chunks of at most chunked_prefill_size tokens), runs it,
// samples, and reports new tokens. When the cache runs short it evicts cached prefixes, then
// retracts the newest running request (its pages go back; it resumes later by recomputing),
// so no request is ever killed for want of memory. Finished and aborted requests free their
// pages at once (whole pages stay in the prefix cache for later requests to reuse).
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/batch_log.h"
#include "runtime/kv_transfer.h"
#include "runtime/model_runner.h"
#include "runtime/prefix_cache.h"
#include "runtime/protocol.h"
#include "runtime/request.h"
#include "runtime/slot_allocator.h"

namespace epserve {

struct SchedulerConfig {
  int64_t max_running_requests = 256;
  // Prompt tokens per step (<= 0: whole prompts in one step). The budget is shared by the prompts
  // of one step and every prompt of a step gets its first token only when the step ends, so on a
  // CPU, where a token costs far more time than on a GPU, a GPU-sized budget (SGLang's 8192) makes
  // every request of a burst wait for the whole burst's prefill. 512 tokens (llama.cpp's physical
  // batch) keep each step's GEMMs large while the first prompts of a burst start decoding early.
  int64_t chunked_prefill_size = 512;
  int64_t page_size = 1;
  int64_t context_length = 0;  // 0: the model's max_position_embeddings
  bool enable_prefix_cache = true;
  bool enable_mixed_chunk = false;     // prefill chunks and decodes in one batch
  std::vector<int32_t> eos_token_ids;  // empty: the model config's
  int64_t decode_log_interval = 40;    // a "Decode batch" log line every this many decode batches
  // PD disaggregation (scheduler_disagg.cpp): "null", "prefill" or "decode".
  std::string disaggregation_mode = "null";
  DisaggTimeouts disagg_timeouts;
};

// Decode server (PD): per request, from the prefill server's answer reaching this server to the
// start of the request's first decode step (Scheduler::step); Prometheus-style buckets with
// SGLang's per-stage bounds (1 ms * 1.62^i, 30 of them), counts per bucket plus one past the last.
struct HandoffLatency {
  static const std::vector<double>& bounds();
  std::vector<uint64_t> counts = std::vector<uint64_t>(bounds().size() + 1, 0);
  double sum = 0;
  uint64_t count = 0;
  void observe(double seconds);
};

struct SchedulerStats {
  int64_t steps = 0;
  int64_t prefill_tokens = 0;
  int64_t decode_tokens = 0;
  int64_t retractions = 0;
  double forward_seconds = 0;
  double schedule_seconds = 0;  // step time outside the model forward
  HandoffLatency pd_handoff;
};

class Scheduler {
 public:
  Scheduler(ModelRunner& runner, SchedulerConfig config);

  // Queues a request; an invalid one comes back at once as a finished output with an error.
  void add(GenerateInput input, std::vector<TokenOutput>& out);
  // Aborts one request (or all, for an empty rid); its pages are freed now.
  void abort(const std::string& rid, std::vector<TokenOutput>& out);
  bool has_work() const { return !running_.empty() || !waiting_.empty(); }

  // PD disaggregation (scheduler_disagg.cpp). Prefill: a request stops after its first token and
  // keeps its pages until its KV has been sent (send_kv, to the target a DisaggInput brings) or
  // the bootstrap timeout passes. Decode: a request reserves pages for its prompt (the slots go
  // out as a DisaggOutput), waits for its KV and first token (a DisaggInput), then decodes.
  // A send runs while the scheduler goes on with other batches: start() begins it on every rank
  // of the group, poll() returns the sends that have finished (runtime/kv_send_queue.h). The
  // request keeps its pages (the puts read them) until its send has finished.
  using KvSendStart = std::function<void(int64_t id, const nlohmann::json& target,
                                         const std::vector<int32_t>& slots)>;
  using KvSendPoll = std::function<std::vector<KvSendResult>()>;
  // `cancel(id)` drops a send that has not started on any rank yet (optional; its result then
  // comes back cancelled through `poll`).
  using KvSendCancel = std::function<void(int64_t id)>;
  void set_kv_async_sender(KvSendStart start, KvSendPoll poll, KvSendCancel cancel = {}) {
    send_start_ = std::move(start);
    send_poll_ = std::move(poll);
    send_cancel_ = std::move(cancel);
  }
  // A synchronous sender (tests): each send finishes within start().
  using KvSender =
      std::function<int64_t(const nlohmann::json& target, const std::vector<int32_t>& slots)>;
  void set_kv_sender(KvSender sender);
  bool sending_kv() const { return !sends_.empty(); }
  // Prefill: the decode ranks (their described "address") that failed sends may still write
  // into, over the group (KvTransferAgent::draining); without one, a failed send is settled.
  using KvDrainCheck = std::function<std::vector<std::string>()>;
  void set_kv_drain_check(KvDrainCheck check) { kv_draining_ = std::move(check); }
  void disagg(const DisaggInput& input, std::vector<TokenOutput>& out);
  // Transfers that are due, reservations, timeouts; cheap when there are none.
  void poll_disagg(std::vector<TokenOutput>& out);
  std::vector<DisaggOutput> take_disagg_outputs() { return std::move(disagg_out_); }
  // One forward pass over the next batch (nothing when idle); appends outputs. With
  // must_forward the model runs even with nothing to compute (an empty batch: under DP
  // attention every group joins every step).
  void step(std::vector<TokenOutput>& out, bool must_forward = false);
  // Empties the prefix cache; false while requests are running.
  bool flush_cache();

  int64_t max_total_tokens() const { return allocator_.num_pages() * allocator_.page_size(); }
  int64_t context_length() const { return context_length_; }
  int64_t num_running() const { return static_cast<int64_t>(running_.size()); }
  int64_t num_waiting() const { return static_cast<int64_t>(waiting_.size()); }
  // KV slots held by requests and by the prefix cache.
  int64_t used_tokens() const;
  int64_t cached_tokens() const { return prefix_cache_.cached_pages() * allocator_.page_size(); }
  const SchedulerStats& stats() const { return stats_; }
  nlohmann::json stats_json() const;

 private:
  struct Entry {
    SchedRequest* request;
    int64_t num_new;
    bool samples;  // the chunk reaches the end of the tokens: a new token follows
  };

  std::string validate(const GenerateInput& input) const;
  // The tokens the prefix cache knows the request by (image tokens keyed by content).
  std::vector<int32_t> cache_key(const SchedRequest& request) const;
  bool admit(SchedRequest& request);
  // An image of the request's uncomputed positions has neither embeddings nor pixels (a decode
  // server's request resumed after retraction, its image KV evicted).
  bool lacks_image_kv(const SchedRequest& request) const;
  bool reserve(SchedRequest& request, int64_t num_tokens);
  void release_pages(SchedRequest& request);
  void retract_newest();
  std::vector<Entry> schedule();
  void process(const std::vector<Entry>& entries, const ForwardBatch& batch,
               const std::vector<float>& logits, std::vector<TokenOutput>& out);
  // Decode server (PD): the handoff latency of the requests whose first decode step this is
  // (scheduler_handoff.cpp).
  void observe_pd_handoff(const std::vector<Entry>& entries);
  nlohmann::json pd_handoff_json() const;
  // When a decode request's KV arrived: the relay's stamp in `body` ("arrived_at"), else now.
  static double kv_arrival_time(const nlohmann::json& body);
  void finish(SchedRequest& request, const std::string& reason, std::vector<TokenOutput>& out);
  // finish() without freeing the pages: the output (and, on a prefill server, the decode side's
  // notice) only.
  // tell: on a prefill server, an aborted request tells its decode side (not while its KV send
  // is in flight: the send's own result does, once it has finished).
  void report_end(SchedRequest& request, const std::string& reason, std::vector<TokenOutput>& out,
                  bool tell = true);
  // Prefill server: tells the decode side that an aborted request's KV will not come.
  void tell_decode_aborted(const SchedRequest& request);
  // Appends a sampled token (the first one may come from the prefill server); reports it or
  // ends the request. Returns true when the request finished.
  bool accept_token(SchedRequest& request, int32_t token, std::vector<TokenOutput>& out);
  bool disagg_add(std::unique_ptr<SchedRequest>& request, std::vector<TokenOutput>& out);
  bool disagg_park(SchedRequest& request);
  void disagg_abort(const std::string& rid, std::vector<TokenOutput>& out);
  void fail(std::unique_ptr<SchedRequest> request, const std::string& error, int status,
            std::vector<TokenOutput>& out);
  std::unique_ptr<SchedRequest> take_running(SchedRequest& request);
  // Decode: ends a request whose slots went out to a prefill server (error empty: aborted) but
  // keeps its pages in held_ until the prefill side answers that nothing more will be written;
  // `cancel` asks the relay to tell the prefill server.
  void hold(std::unique_ptr<SchedRequest> request, const std::string& error, int status,
            bool cancel, std::vector<TokenOutput>& out);
  // Prefill: the decode side cancelled this request's transfer.
  void cancel_transfer(const std::string& rid, std::vector<TokenOutput>& out);
  void poll_drained();
  struct Undrained {
    int64_t room = -1;
    std::vector<std::string> addresses;  // the decode ranks of its target
  };
  // The decode ranks still drained into now; nullopt when the ranks cannot be asked.
  std::optional<std::vector<std::string>> draining_now();
  static bool drained(const Undrained& u, const std::optional<std::vector<std::string>>& now);
  BatchLogState log_state() const;

  ModelRunner& runner_;
  SchedulerConfig config_;
  int64_t context_length_;
  int64_t vocab_size_;
  SlotAllocator allocator_;
  PrefixCache prefix_cache_;
  std::list<std::unique_ptr<SchedRequest>> running_;  // admission order
  std::deque<std::unique_ptr<SchedRequest>> waiting_;
  uint64_t next_arrival_ = 0;
  SchedulerStats stats_;
  BatchLog log_;

  using SteadyTime = std::chrono::steady_clock::time_point;
  struct Parked {
    std::unique_ptr<SchedRequest> request;
    SteadyTime since;
    int32_t first_token = -1;  // prefill: the token sampled after the prompt
    nlohmann::json target;     // prefill: where the KV goes (null until the decode side asks)
    int64_t send_id = -1;      // prefill: the send in flight
    SteadyTime send_started{};
    bool ended =
        false;  // prefill: aborted while its send was in flight (the client has its answer)
  };
  KvSendStart send_start_;
  KvSendPoll send_poll_;
  KvSendCancel send_cancel_;
  std::vector<KvSendResult> sync_done_;  // set_kv_sender's results
  int64_t next_send_id_ = 1;
  std::map<int64_t, std::string> sends_;  // prefill: sends in flight -> rid
  void finish_sends(std::vector<TokenOutput>& out);
  void complete_send(std::map<std::string, Parked>::iterator it, const KvSendResult& sent,
                     std::vector<TokenOutput>& out);
  std::deque<std::unique_ptr<SchedRequest>> prealloc_;  // decode: waiting for pages
  std::map<std::string, Parked> parked_;  // prefill: waiting to send; decode: waiting to receive
  std::map<std::string, nlohmann::json> early_targets_;  // prefill: targets of unfinished prompts
  std::vector<DisaggOutput> disagg_out_;
  // Decode: pages of ended requests that a prefill server may still write into (see hold()).
  std::map<std::string, Parked> held_;
  // Prefill: failed sends whose puts may still land, by rid, until no agent of the group drains
  // into their decode ranks any more: then the decode side is told it may reuse its pages.
  KvDrainCheck kv_draining_;
  std::map<std::string, Undrained> undrained_;
  SteadyTime last_drain_check_{};
};

}  // namespace epserve
