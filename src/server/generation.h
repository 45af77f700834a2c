// The generation behind one HTTP request: its GenerateInputs submitted to the frontend as one
// group, and a ChoiceStream per input turning outputs into text. Handlers pull updates with
// next() (streaming) or wait(); a stop-string match aborts that choice at the scheduler, and
// destroying the Generation early (client gone) aborts every unfinished choice. `dp_rank`: see
// Frontend::submit.
#pragma once

#include <memory>
#include <vector>

#include "server/choice_stream.h"
#include "server/frontend.h"

namespace epserve {

class Metrics;

class Generation {
 public:
  Generation(Frontend& frontend, const tokenizer::Tokenizer& tokenizer, Metrics* metrics,
             std::vector<GenerateInput> inputs, std::vector<ChoiceOptions> options,
             int dp_rank = -1);
  // Choices still running are aborted (by the request group) and counted as aborted.
  ~Generation();
  Generation(const Generation&) = delete;
  Generation& operator=(const Generation&) = delete;

  // Waits for the next output of any choice and applies it. False once every choice finished.
  bool next(size_t& index, ChoiceUpdate& update);
  // Runs every choice to its end.
  void wait();

  size_t size() const { return choices_.size(); }
  const ChoiceStream& choice(size_t index) const { return choices_[index]; }
  const std::string& rid(size_t index) const { return group_->rid(index); }
  double elapsed_seconds() const;

 private:
  Metrics* metrics_;
  std::vector<ChoiceStream> choices_;
  std::shared_ptr<RequestGroup> group_;
  size_t unfinished_;
};

}  // namespace epserve
