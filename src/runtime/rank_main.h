// The main loop of a rank process under `epserve serve`. The leader of an attention group runs
// the scheduler: it takes requests from the frontend over ZeroMQ (runtime/protocol.h), steps the
// model, and sends back tokens; the other ranks of the group run the batches it hands them.
// The server module turns its flags into RankOptions; the launcher (comm/launcher.h) starts the
// ranks, and run_rank is what each of them runs.
#pragma once

#include <cstdint>
#include <string>

#include "runtime/expert_runtime.h"
#include "runtime/kv_transfer.h"
#include "runtime/parallel_setup.h"
#include "runtime/scheduler.h"

namespace epserve {

struct RankOptions {
  std::string model_path;
  ParallelOptions parallel;
  std::string ipc_base;  // EPSERVE_IPC_BASE
  SchedulerConfig scheduler;
  ExpertRuntimeOptions experts;      // recorder, its metrics, live EPLB
  int64_t max_total_tokens = 0;      // KV slots; 0: from mem_fraction_static
  double mem_fraction_static = 0.0;  // 0: the default (see kv_slots_for_memory)
  int num_threads = 0;               // 0: the cores this process may use
  std::string log_level = "info";
  // PD disaggregation (scheduler.disaggregation_mode prefill/decode): makes each rank's agent.
  KvTransferAgentFactory kv_agent_factory;
};

int run_rank(const RankOptions& options);

// KV slots that fit in mem_fraction_static of this machine's memory, shared by the local ranks,
// after the weights: (fraction * MemTotal / local_ranks - weight_bytes) / bytes_per_slot.
int64_t kv_slots_for_memory(double mem_fraction_static, int num_local_ranks, int64_t weight_bytes,
                            int64_t bytes_per_slot);

}  // namespace epserve
