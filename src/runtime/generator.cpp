#include "runtime/generator.h"

#include <algorithm>
#include <chrono>

#include "core/phase_timer.h"
#include "runtime/slot_allocator.h"

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

std::vector<GenerateResult> generate(ModelRunner& model,
                                     const std::vector<GenerateRequest>& requests,
                                     GenerateTimings* timings, int64_t page_size) {
  const int64_t V = model.vocab_size();
  const auto& eos = model.config().eos_token_ids;
  EPS_CHECK(model.num_kv_slots() >= kv_slots_needed(requests, page_size),
            "the KV cache holds {} slots; these requests need {}", model.num_kv_slots(),
            kv_slots_needed(requests, page_size));
  SlotAllocator allocator(model.num_kv_slots(), page_size);
  std::vector<GenerateResult> results(requests.size());
  std::vector<Sampler> samplers;
  std::vector<Running> running;
  for (size_t i = 0; i < requests.size(); ++i) {
    samplers.emplace_back(requests[i].sampling, requests[i].seed);
    Running r{i, {}, requests[i].input_ids};
    EPS_CHECK(allocator.reserve(r.pages, static_cast<int64_t>(r.tokens.size())),
              "KV cache too small");
    r.done = requests[i].max_new_tokens == 0;
    if (r.done) results[i].finish_reason = "length";
    running.push_back(std::move(r));
  }

  auto step = [&](bool prefill) {
    ForwardBatch batch;
    std::vector<Running*> members;
    for (auto& r : running) {
      if (r.done) continue;
      const GenerateRequest& req = requests[r.index];
      int64_t len = static_cast<int64_t>(r.tokens.size());
      int64_t num_new = prefill ? len : 1;
      EPS_CHECK(allocator.reserve(r.pages, len), "KV cache too small");
      LogitsWanted wanted =
          prefill && req.return_prompt_logits ? LogitsWanted::kAll : LogitsWanted::kLast;
      batch.add_sequence(r.tokens.data() + len - num_new, num_new, len - num_new,
                         allocator.slots(r.pages, len), wanted);
      members.push_back(&r);
    }
    if (members.empty()) return false;
    std::vector<float> logits(batch.num_logit_rows() * V);
    auto start = std::chrono::steady_clock::now();
    double comm_before = PhaseTimes::global().total("comm");
    model.forward(batch, logits.data());
    if (timings) {
      (prefill ? timings->prefill_seconds : timings->decode_seconds) += seconds_since(start);
      (prefill ? timings->prefill_tokens : timings->decode_tokens) += batch.num_tokens();
      (prefill ? timings->prefill_comm_seconds : timings->decode_comm_seconds) +=
          PhaseTimes::global().total("comm") - comm_before;
    }
    int64_t row = 0;
    for (size_t m = 0; m < members.size(); ++m) {
      Running& r = *members[m];
      const GenerateRequest& req = requests[r.index];
      GenerateResult& res = results[r.index];
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
      int32_t next = samplers[r.index].sample(last, V, prompt, res.output_ids);
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
    return true;
  };

  step(true);
  while (step(false)) {
  }
  for (auto& r : running) allocator.release(r.pages);
  return results;
}

}  // namespace epserve
