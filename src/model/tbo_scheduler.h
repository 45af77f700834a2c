// The stage scheduler of two-batch overlap: a forward pass is written once as a list of
// operations cut by yield points into stages (per MoE layer: attention and routing, dispatch
// start | dispatch wait, experts, combine start | combine wait, ...), and the two micro-batches
// run the same stages with B `delta` stages behind A, as SGLang's execute_overlapped_operations
// runs them:
//   A0 .. A(delta-1), then (A i, B i-delta) for i = delta .. n-1, then B(n-delta) .. B(n-1).
// So whenever A has just started a dispatch or combine, B's compute runs before A waits for it.
// The strategies are SGLang's operations_strategy for DeepSeek-style MoE layers: prefill (extend)
// with delta 0 and stages [attn, route, dispatch start | dispatch wait, experts, combine start |
// shared experts, combine wait]; decode with delta 2 and stages [attn | route | dispatch start,
// shared experts | dispatch wait, experts, combine start | combine wait]. Every rank runs the
// same list in the same order, so the collectives inside the stages match.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace epserve {

// One operation of the pass for one micro-batch (0 = A, 1 = B).
struct TboOperation {
  std::string name;  // e.g. "attn", "dispatch_start" (the trace's span names)
  int layer = -1;
  bool communication = false;  // starts or waits for communication (the trace's category)
  std::function<void(int micro_batch)> run;
};

// Operations grouped into stages: a yield ends a stage.
class TboProgram {
 public:
  void add(TboOperation op) { current_.push_back(std::move(op)); }
  void yield();
  // The stages (the last one closed).
  std::vector<std::vector<TboOperation>> finish();

 private:
  std::vector<std::vector<TboOperation>> stages_;
  std::vector<TboOperation> current_;
};

// Runs the stages for micro-batches A and B, B `delta` stages behind. `on_op` (may be empty) is
// called around each operation (begin = true, then false) for the trace.
void run_overlapped(const std::vector<std::vector<TboOperation>>& stages, int delta,
                    const std::function<void(const TboOperation&, int, bool)>& on_op = {});

// The stages for one micro-batch (A) alone, in order.
void run_single(const std::vector<std::vector<TboOperation>>& stages,
                const std::function<void(const TboOperation&, int, bool)>& on_op = {});

// SGLang's delta stages: 0 for extend (prefill), 2 for decode.
inline int tbo_delta_stages(bool extend) {
  return extend ? 0 : 2;
}

}  // namespace epserve
