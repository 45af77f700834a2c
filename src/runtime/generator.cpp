#include "runtime/generator.h"

#include <algorithm>
#include <chrono>

#include "comm/communicator.h"
#include "core/phase_timer.h"
#include "runtime/slot_allocator.h"
#include "runtime/vision_inputs.h"

namespace epserve {
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

struct Running {
  size_t index;
  std::vector<int32_t> pages;
  std::vector<int32_t> tokens;  // prompt + generated
  bool done = false;
};

}  // namespace

int64_t kv_slots_needed(const std::vector<GenerateRequest>& requests, int64_t page_size) {
  int64_t total_pages = 0;
  for (const auto& r : requests) {
    EPS_CHECK(!r.input_ids.empty(), "a prompt needs at least one token");
    EPS_CHECK(r.max_new_tokens >= 0, "max_new_tokens must not be negative");
    int64_t len = static_cast<int64_t>(r.input_ids.size()) + r.max_new_tokens;
    total_pages += (len + page_size - 1) / page_size;
  }
  return std::max<int64_t>(1, total_pages) * page_size;
}

std::vector<GenerateResult> generate(CausalLM& model, const std::vector<GenerateRequest>& requests,
                                     GenerateTimings* timings, int64_t page_size) {
  LocalModelRunner runner(model, kv_slots_needed(requests, page_size));
  return generate(runner, requests, timings, page_size);
}

// The state of one offline batch: prefill on the first step, then one token per step for every
// sequence still running.
class OfflineGenerator {
 public:
  OfflineGenerator(ModelRunner& model, const std::vector<GenerateRequest>& requests,
                   GenerateTimings* timings, int64_t page_size)
      : model_(model),
        requests_(requests),
        timings_(timings),
        allocator_(model.num_kv_slots(), page_size),
        results_(requests.size()) {
    EPS_CHECK(model.num_kv_slots() >= kv_slots_needed(requests, page_size),
              "the KV cache holds {} slots; these requests need {}", model.num_kv_slots(),
              kv_slots_needed(requests, page_size));
    vision_.resize(requests.size());
    for (size_t i = 0; i < requests.size(); ++i) {
      const std::string error =
          prepare_vision(model.config(), requests[i].input_ids, requests[i].images, vision_[i]);
      EPS_CHECK(error.empty(), "prompt {}: {}", i, error);
      samplers_.emplace_back(requests[i].sampling, requests[i].seed);
      Running r{i, {}, requests[i].input_ids};
      r.done = requests[i].max_new_tokens == 0;
      if (r.done) results_[i].finish_reason = "length";
      running_.push_back(std::move(r));
    }
  }

  bool has_work() const {
    return std::any_of(running_.begin(), running_.end(), [](const Running& r) { return !r.done; });
  }

  void step();

  std::vector<GenerateResult> finish() {
    for (auto& r : running_) allocator_.release(r.pages);
    return std::move(results_);
  }

 private:
  ModelRunner& model_;
  const std::vector<GenerateRequest>& requests_;
  GenerateTimings* timings_;
  SlotAllocator allocator_;
  std::vector<GenerateResult> results_;
  std::vector<Sampler> samplers_;
  std::vector<Running> running_;
  std::vector<RequestVision> vision_;  // per request
  bool prefilled_ = false;
};

void OfflineGenerator::step() {
  const int64_t V = model_.vocab_size();
  const auto& eos = model_.config().eos_token_ids;
  const bool prefill = !prefilled_;
  prefilled_ = true;
  ForwardBatch batch;
  std::vector<Running*> members;
  for (auto& r : running_) {
    if (r.done) continue;
    const GenerateRequest& req = requests_[r.index];
    int64_t len = static_cast<int64_t>(r.tokens.size());
    int64_t num_new = prefill ? len : 1;
    EPS_CHECK(allocator_.reserve(r.pages, len), "KV cache too small");
    LogitsWanted wanted =
        prefill && req.return_prompt_logits ? LogitsWanted::kAll : LogitsWanted::kLast;
    batch.add_sequence(r.tokens.data() + len - num_new, num_new, len - num_new,
                       allocator_.slots(r.pages, len), wanted);
    add_vision_rows(batch, len - num_new, num_new, req.images, vision_[r.index], model_);
    if (prefill) release_vision_embeds(vision_[r.index]);
    members.push_back(&r);
  }
  std::vector<float> logits(batch.num_logit_rows() * V);
  auto start = std::chrono::steady_clock::now();
  double comm_before = PhaseTimes::global().total("comm");
  model_.forward(batch, logits.data());
  if (timings_) {
    (prefill ? timings_->prefill_seconds : timings_->decode_seconds) += seconds_since(start);
    (prefill ? timings_->prefill_tokens : timings_->decode_tokens) += batch.num_tokens();
    (prefill ? timings_->prefill_comm_seconds : timings_->decode_comm_seconds) +=
        PhaseTimes::global().total("comm") - comm_before;
  }
  int64_t row = 0;
  for (size_t m = 0; m < members.size(); ++m) {
    Running& r = *members[m];
    const GenerateRequest& req = requests_[r.index];
    GenerateResult& res = results_[r.index];
    if (batch.seqs[m].logits == LogitsWanted::kAll) {
      for (int64_t i = 0; i < batch.seqs[m].num_new; ++i, ++row) {
        res.prompt_logits.emplace_back(logits.begin() + row * V, logits.begin() + (row + 1) * V);
      }
      --row;  // the last prompt row is also the one that picks the next token
    }
    float* last = logits.data() + row * V;
    ++row;
    if (req.return_logits) res.logits.emplace_back(last, last + V);
    std::vector<int32_t> prompt(r.tokens.begin(), r.tokens.begin() + req.input_ids.size());
    int32_t next = samplers_[r.index].sample(last, V, prompt, res.output_ids);
    res.output_ids.push_back(next);
    r.tokens.push_back(next);
    bool is_eos = std::find(eos.begin(), eos.end(), next) != eos.end();
    if (is_eos && !req.ignore_eos) {
      res.finish_reason = "stop";
      r.done = true;
    } else if (static_cast<int64_t>(res.output_ids.size()) >= req.max_new_tokens) {
      res.finish_reason = "length";
      r.done = true;
    }
  }
}

std::vector<GenerateResult> generate(ModelRunner& model,
                                     const std::vector<GenerateRequest>& requests,
                                     GenerateTimings* timings, int64_t page_size,
                                     Communicator* lockstep) {
  OfflineGenerator generator(model, requests, timings, page_size);
  while (true) {
    bool mine = generator.has_work();
    if (lockstep != nullptr && lockstep->size() > 1) {
      // Attention groups step together (their MoE layers span all ranks): while any group has
      // work, the others join every forward with an empty batch.
      int64_t any = mine ? 1 : 0;
      lockstep->set_context("agreeing on the next step");
      lockstep->allreduce(&any, 1, ReduceOp::kMax);
      if (any == 0) break;
      if (!mine) {
        ForwardBatch empty;
        model.forward(empty, nullptr);
        continue;
      }
    } else if (!mine) {
      break;
    }
    generator.step();
  }
  return generator.finish();
}

}  // namespace epserve
