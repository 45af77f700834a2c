#include "model/tbo_scheduler.h"

#include <algorithm>

#include "core/error.h"

namespace epserve {

void TboProgram::yield() {
  stages_.push_back(std::move(current_));
  current_.clear();
}

std::vector<std::vector<TboOperation>> TboProgram::finish() {
  if (!current_.empty()) yield();
  return std::move(stages_);
}

void run_overlapped(const std::vector<std::vector<TboOperation>>& stages, int delta,
                    const std::function<void(const TboOperation&, int, bool)>& on_op) {
  const int n = static_cast<int>(stages.size());
  EPS_CHECK(delta >= 0, "TBO delta stages {} is negative", delta);
  delta = std::min(delta, n);
  auto run_stage = [&](int stage, int micro_batch) {
    for (const TboOperation& op : stages[stage]) {
      if (on_op) on_op(op, micro_batch, true);
      op.run(micro_batch);
      if (on_op) on_op(op, micro_batch, false);
    }
  };
  for (int i = 0; i < delta; ++i) run_stage(i, 0);
  for (int i = delta; i < n; ++i) {
    run_stage(i, 0);
    run_stage(i - delta, 1);
  }
  for (int i = n - delta; i < n; ++i) run_stage(i, 1);
}

void run_single(const std::vector<std::vector<TboOperation>>& stages,
                const std::function<void(const TboOperation&, int, bool)>& on_op) {
  for (const auto& stage : stages) {
    for (const TboOperation& op : stage) {
      if (on_op) on_op(op, 0, true);
      op.run(0);
      if (on_op) on_op(op, 0, false);
    }
  }
}

}  // namespace epserve
