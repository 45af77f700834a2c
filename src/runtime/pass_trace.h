// --trace-file PATH: a Chrome / Perfetto trace (JSON object format, "traceEvents") of the forward
// passes' operations. Every rank is a process (pid = world rank, named "rank R"), each
// micro-batch a thread (tid 0 = micro-batch A, 1 = B; without two-batch overlap everything is
// A), and every operation of model/tbo_scheduler.h a complete ("X") event with category "comm"
// (dispatch start/wait, combine start/wait: time the thread spends sending or waiting) or
// "compute", and args {layer, pass, prefill}. Each rank writes PATH.rank<R> when it ends; the
// launching process merges them into PATH (one rank: PATH directly). Open it in ui.perfetto.dev or
// chrome://tracing.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace epserve {

class CausalLM;

class PassTrace {
 public:
  // Records the operations of `model`'s passes; writes `path` at destruction.
  PassTrace(CausalLM& model, std::string path, int rank);
  ~PassTrace();
  PassTrace(const PassTrace&) = delete;
  PassTrace& operator=(const PassTrace&) = delete;
  void write() const;

 private:
  struct Span {
    std::string name;
    bool communication;
    int micro_batch;
    int layer;
    int64_t pass;
    bool prefill;  // the pass has a prompt token
    int64_t begin_ns;
    int64_t end_ns;
  };
  CausalLM& model_;
  std::string path_;
  int rank_;
  std::chrono::steady_clock::time_point origin_;
  int64_t open_begin_ns_ = 0;
  std::vector<Span> spans_;
};

// The file rank `rank` of `world` writes.
std::string rank_trace_path(const std::string& path, int rank, int world);
// A trace for this rank when `path` is not empty (else null).
std::unique_ptr<PassTrace> make_pass_trace(CausalLM& model, const std::string& path, int rank,
                                           int world);
// Merges the files of ranks 0..world-1 that exist into `path` and removes them.
void merge_rank_traces(const std::string& path, int world);

}  // namespace epserve
