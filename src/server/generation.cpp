#include "server/generation.h"

#include "core/error.h"
#include "server/metrics.h"

namespace epserve {

Generation::Generation(Frontend& frontend, const tokenizer::Tokenizer& tokenizer, Metrics* metrics,
                       std::vector<GenerateInput> inputs, std::vector<ChoiceOptions> options,
                       int dp_rank)
    : metrics_(metrics), unfinished_(inputs.size()) {
  EPS_CHECK(inputs.size() == options.size(), "generation: {} inputs but {} option sets",
            inputs.size(), options.size());
  choices_.reserve(options.size());
  for (auto& o : options) choices_.emplace_back(tokenizer, std::move(o));
  group_ = frontend.submit(std::move(inputs), dp_rank);
}

Generation::~Generation() {
  if (metrics_ == nullptr) return;
  for (const ChoiceStream& c : choices_) {
    if (!c.finished()) {
      metrics_->request_finished("abort", c.prompt_tokens(), c.completion_tokens(),
                                 c.cached_tokens(), elapsed_seconds());
    }
  }
}

bool Generation::next(size_t& index, ChoiceUpdate& update) {
  while (unfinished_ > 0) {
    OutputEvent event;
    if (!group_->next(event, std::chrono::milliseconds(1000))) continue;
    ChoiceStream& choice = choices_[event.index];
    if (choice.finished()) continue;
    update = choice.apply(event.output, event.error_status);
    if (choice.stop_string_hit()) group_->abort(event.index);
    if (choice.finished()) {
      --unfinished_;
      if (metrics_ != nullptr) {
        metrics_->request_finished(choice.finish_reason(), choice.prompt_tokens(),
                                   choice.completion_tokens(), choice.cached_tokens(),
                                   elapsed_seconds());
      }
    }
    index = event.index;
    return true;
  }
  return false;
}

void Generation::wait() {
  size_t index;
  ChoiceUpdate update;
  while (next(index, update)) {
  }
}

double Generation::elapsed_seconds() const {
  return std::chrono::duration<double>(Clock::now() - group_->created()).count();
}

}  // namespace epserve
