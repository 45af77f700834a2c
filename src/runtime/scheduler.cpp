#include "runtime/scheduler.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace epserve {
namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::vector<TokenLogprob> top_logprobs(const std::vector<float>& logprobs, int n) {
  std::vector<int32_t> order(logprobs.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int32_t>(i);
  n = std::min<int>(n, static_cast<int>(order.size()));
  std::partial_sort(order.begin(), order.begin() + n, order.end(), [&](int32_t a, int32_t b) {
    return logprobs[a] > logprobs[b] || (logprobs[a] == logprobs[b] && a < b);
  });
  std::vector<TokenLogprob> out;
  for (int i = 0; i < n; ++i) out.push_back({order[i], logprobs[order[i]]});
  return out;
}

}  // namespace

Scheduler::Scheduler(ModelRunner& runner, SchedulerConfig config)
    : runner_(runner),
      config_(std::move(config)),
      context_length_(config_.context_length > 0 ? config_.context_length
                                                 : runner.config().max_position_embeddings),
      vocab_size_(runner.vocab_size()),
      allocator_(runner.num_kv_slots(), config_.page_size),
      prefix_cache_(allocator_, config_.enable_prefix_cache),
      log_(config_.decode_log_interval) {
  if (config_.eos_token_ids.empty()) config_.eos_token_ids = runner.config().eos_token_ids;
  EPS_CHECK(config_.max_running_requests > 0, "--max-running-requests must be positive");
}

std::string Scheduler::validate(const GenerateInput& in) const {
  const int64_t n = static_cast<int64_t>(in.input_ids.size());
  if (n == 0) return "The input is empty: give at least one token.";
  for (int32_t id : in.input_ids) {
    if (id < 0 || id >= vocab_size_) {
      return fmt::format("Token id {} is out-of-vocabulary (vocabulary size {}).", id, vocab_size_);
    }
  }
  if (n >= context_length_) {
    return fmt::format(
        "The input ({} tokens) is longer than the model's context length ({} tokens).", n,
        context_length_);
  }
  if (n + 1 > max_total_tokens()) {
    return fmt::format(
        "The input ({} tokens) does not fit in the KV cache ({} tokens); raise "
        "--max-total-tokens.",
        n, max_total_tokens());
  }
  if (in.max_new_tokens < 0) return "max_new_tokens must not be negative.";
  if (in.logprob_start_len >= n) {
    return fmt::format("logprob_start_len ({}) must be smaller than the input length ({}).",
                       in.logprob_start_len, n);
  }
  return "";
}

void Scheduler::add(GenerateInput input, std::vector<TokenOutput>& out) {
  std::string error = validate(input);
  RequestVision vision;
  // A decode server never runs the vision tower: the prefill server computed the prompt's KV,
  // and the images' grids give the 3-D positions (scheduler_disagg.cpp checks the prefill
  // server's rope delta against them).
  const bool decode = config_.disaggregation_mode == "decode";
  if (error.empty())
    error = prepare_vision(runner_.config(), input.input_ids, input.images, vision, !decode);
  if (decode) {
    for (ImageInput& im : input.images) std::vector<float>().swap(im.pixel_values);
  }
  if (!error.empty()) {
    TokenOutput o;
    o.rid = input.rid;
    o.prompt_tokens = static_cast<int64_t>(input.input_ids.size());
    o.finished = true;
    o.finish_reason = "abort";
    o.error = error;
    out.push_back(std::move(o));
    if (config_.disaggregation_mode == "prefill" && input.bootstrap_room >= 0) {
      disagg_out_.push_back(
          {input.rid,
           {{"transfer",
             {{"ok", false}, {"status", 400}, {"error", error}, {"room", input.bootstrap_room}}}}});
    }
    return;
  }
  // Never generate past the context length.
  int64_t room = context_length_ - static_cast<int64_t>(input.input_ids.size());
  input.max_new_tokens = std::min(input.max_new_tokens, room);
  auto request = std::make_unique<SchedRequest>(std::move(input), next_arrival_++);
  request->vision = std::move(vision);
  if (config_.disaggregation_mode != "null" && disagg_add(request, out)) return;
  waiting_.push_back(std::move(request));
}

bool Scheduler::lacks_image_kv(const SchedRequest& r) const {
  const auto& runs = r.vision.mrope.runs;
  for (size_t i = 0; i < runs.size(); ++i) {
    if (runs[i].first + runs[i].num_tokens > r.num_computed && r.vision.embeds[i].empty() &&
        r.in.images[i].pixel_values.empty()) {
      return true;
    }
  }
  return false;
}

std::vector<int32_t> Scheduler::cache_key(const SchedRequest& r) const {
  return r.in.images.empty() ? r.tokens : prefix_cache_key(r.tokens, r.in.images, r.vision);
}

void Scheduler::abort(const std::string& rid, std::vector<TokenOutput>& out) {
  disagg_abort(rid, out);
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if (rid.empty() || (*it)->in.rid == rid) {
      SchedRequest& r = **it;
      tell_decode_aborted(r);  // still queued: its decode server must not wait for it
      release_pages(r);
      TokenOutput o;
      o.rid = r.in.rid;
      o.prompt_tokens = r.prompt_len;
      o.finished = true;
      o.finish_reason = "abort";
      o.error = r.pending.error;  // set when the decode side cancelled it
      o.error_status = r.pending.error_status;
      out.push_back(std::move(o));
      it = waiting_.erase(it);
    } else {
      ++it;
    }
  }
  std::vector<SchedRequest*> victims;
  for (auto& r : running_) {
    if (rid.empty() || r->in.rid == rid) victims.push_back(r.get());
  }
  for (SchedRequest* r : victims) finish(*r, "abort", out);
}

bool Scheduler::reserve(SchedRequest& r, int64_t num_tokens) {
  if (allocator_.reserve(r.pages, num_tokens)) return true;
  int64_t need = allocator_.pages_for(num_tokens) - static_cast<int64_t>(r.pages.size());
  prefix_cache_.evict(need);
  return allocator_.reserve(r.pages, num_tokens);
}

void Scheduler::release_pages(SchedRequest& r) {
  prefix_cache_.insert(cache_key(r), r.num_computed, r.pages);
  prefix_cache_.release(r.prefix_pin);
  r.prefix_pin = nullptr;
  r.num_computed = 0;
}

bool Scheduler::admit(SchedRequest& r) {
  // Input logprobs need the logits of every prompt position: no prefix reuse for those.
  int64_t limit = r.wants_input_logprobs() ? 0 : static_cast<int64_t>(r.tokens.size()) - 1;
  PrefixCache::Match match = prefix_cache_.match(cache_key(r), limit);
  r.pages = match.pages;
  r.num_computed = match.num_tokens;
  r.prefix_pin = match.node;
  if (!r.admitted_once) r.cached_tokens = match.num_tokens;
  if (r.wants_input_logprobs() && r.pending.input_logprobs.empty()) {
    int64_t count = r.prompt_len - r.in.logprob_start_len;
    r.pending.input_logprobs.assign(count, std::nanf(""));
    r.pending.input_top_logprobs.assign(count, {});
  }
  return true;
}

void Scheduler::retract_newest() {
  SchedRequest& r = *running_.back();
  release_pages(r);
  ++stats_.retractions;
  spdlog::info("KV cache full: retracting request {} ({} tokens); it resumes later", r.in.rid,
               r.tokens.size());
  waiting_.push_front(std::move(running_.back()));
  running_.pop_back();
}

std::vector<Scheduler::Entry> Scheduler::schedule() {
  std::vector<Entry> decodes, prefills;
  // 1. Every running request that has finished its prompt decodes one token; make room for it,
  //    evicting cached prefixes and then retracting the newest requests if needed. running_ is
  //    in admission order and is walked oldest first, so the newest request is always either the
  //    current one or one not yet given a place in this batch.
  std::vector<SchedRequest*> candidates;
  for (auto& r : running_) {
    if (r->num_uncomputed() == 1 && !r->pending.finished) candidates.push_back(r.get());
  }
  std::vector<const SchedRequest*> retracted;
  for (SchedRequest* r : candidates) {
    if (std::find(retracted.begin(), retracted.end(), r) != retracted.end()) continue;
    bool fits = true;
    while (!reserve(*r, static_cast<int64_t>(r->tokens.size()))) {
      if (running_.size() == 1) {
        r->pending.error = "The KV cache cannot hold this request; raise --max-total-tokens.";
        r->pending.finished = true;  // step() ends it
        fits = false;
        break;
      }
      retracted.push_back(running_.back().get());
      retract_newest();
      if (retracted.back() == r) {
        fits = false;
        break;
      }
    }
    if (fits) decodes.push_back({r, 1, true});
  }
  // 2. Prompt chunks: requests part-way through their prompt first, then new admissions.
  int64_t budget = config_.chunked_prefill_size > 0 ? config_.chunked_prefill_size
                                                    : std::numeric_limits<int64_t>::max();
  auto add_chunk = [&](SchedRequest& r) {
    int64_t chunk = std::min(r.num_uncomputed(), budget);
    if (!reserve(r, r.num_computed + chunk)) return false;
    budget -= chunk;
    prefills.push_back({&r, chunk, chunk == r.num_uncomputed()});
    return true;
  };
  for (auto& r : running_) {
    if (budget <= 0) break;
    if (r->num_uncomputed() > 1 && !r->pending.finished) add_chunk(*r);
  }
  while (!waiting_.empty() && budget > 0 &&
         static_cast<int64_t>(running_.size()) < config_.max_running_requests) {
    SchedRequest& r = *waiting_.front();
    admit(r);
    if (lacks_image_kv(r)) {
      // A decode server's request retracted after its image tokens' KV left the cache: without
      // the pixels it cannot recompute them. step() ends it with this error.
      r.pending.error =
          "the request was retracted (KV cache full) and its image tokens' KV was evicted; this "
          "decode server has no pixels to recompute it: retry the request";
      r.pending.error_status = 503;
      r.pending.finished = true;
      running_.push_back(std::move(waiting_.front()));
      waiting_.pop_front();
      continue;
    }
    // Keep a page per decoding request free so running requests are not starved.
    bool fits = add_chunk(r) && (running_.empty() || allocator_.num_free_pages() >=
                                                         static_cast<int64_t>(decodes.size()));
    if (!fits) {
      if (!prefills.empty() && prefills.back().request == &r) {
        budget += prefills.back().num_new;
        prefills.pop_back();
      }
      release_pages(r);
      break;
    }
    r.admitted_once = true;
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
  if (!prefills.empty() && !config_.enable_mixed_chunk) return prefills;
  decodes.insert(decodes.end(), prefills.begin(), prefills.end());
  return decodes;
}

void Scheduler::step(std::vector<TokenOutput>& out, bool must_forward) {
  double t0 = now_seconds();
  std::vector<Entry> entries = schedule();
  // Requests that cannot fit even alone end here with an error.
  for (auto it = running_.begin(); it != running_.end();) {
    SchedRequest& r = **it;
    ++it;
    if (r.pending.finished && !r.pending.error.empty()) finish(r, "abort", out);
  }
  if (entries.empty()) {
    if (must_forward) {
      ForwardBatch empty;
      runner_.forward(empty, nullptr);
    }
    return;
  }
  ForwardBatch batch;
  for (const Entry& e : entries) {
    SchedRequest& r = *e.request;
    LogitsWanted wanted = !e.samples ? LogitsWanted::kNone : LogitsWanted::kLast;
    if (r.wants_input_logprobs()) wanted = LogitsWanted::kAll;
    batch.add_sequence(r.tokens.data() + r.num_computed, e.num_new, r.num_computed,
                       allocator_.slots(r.pages, r.num_computed + e.num_new), wanted);
    add_vision_rows(batch, r.num_computed, e.num_new, r.in.images, r.vision, runner_);
  }
  int64_t decodes = 0, prefills = 0, prefill_tokens = 0, cached = 0;
  for (const Entry& e : entries) {
    bool decode = e.num_new == 1 && e.request->num_uncomputed() == 1;
    (decode ? stats_.decode_tokens : stats_.prefill_tokens) += e.num_new;
    // For the log a prompt whose last token alone is left (the rest was cached) is a prefill.
    if (e.num_new == 1 && e.request->num_generated() > 0) {
      ++decodes;
      continue;
    }
    ++prefills;
    prefill_tokens += e.num_new;
    // The prefix cache's tokens count once, with the request's first chunk.
    if (e.request->num_computed == e.request->cached_tokens) cached += e.request->cached_tokens;
  }
  if (prefills > 0) {
    log_.prefill(prefills, prefill_tokens, cached, num_running() - prefills, log_state());
  }
  std::vector<float> logits(batch.num_logit_rows() * vocab_size_);
  double t1 = now_seconds();
  observe_pd_handoff(entries);
  runner_.forward(batch, logits.data());
  double t2 = now_seconds();
  process(entries, batch, logits, out);
  if (decodes > 0) log_.decode(decodes, log_state());
  double t3 = now_seconds();
  ++stats_.steps;
  stats_.forward_seconds += t2 - t1;
  stats_.schedule_seconds += (t1 - t0) + (t3 - t2);
}

void Scheduler::process(const std::vector<Entry>& entries, const ForwardBatch& batch,
                        const std::vector<float>& logits, std::vector<TokenOutput>& out) {
  const int64_t V = vocab_size_;
  std::vector<float> row(V), logprobs(V);
  int64_t logit_row = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    const Entry& e = entries[i];
    SchedRequest& r = *e.request;
    const SequenceInput& seq = batch.seqs[i];
    int64_t first_pos = r.num_computed;
    r.num_computed += e.num_new;
    if (r.num_computed >= r.prompt_len) release_vision_embeds(r.vision);
    if (seq.logits == LogitsWanted::kNone) continue;
    if (seq.logits == LogitsWanted::kAll) {
      // Row of position p predicts the token at p + 1.
      for (int64_t j = 0; j < e.num_new; ++j) {
        int64_t next = first_pos + j + 1;
        int64_t index = next - r.in.logprob_start_len;
        if (next < r.prompt_len && index >= 0) {
          log_softmax(logits.data() + (logit_row + j) * V, V, logprobs.data());
          r.pending.input_logprobs[index] = logprobs[r.tokens[next]];
          if (r.in.top_logprobs_num > 0) {
            r.pending.input_top_logprobs[index] = top_logprobs(logprobs, r.in.top_logprobs_num);
          }
        }
      }
      logit_row += e.num_new - 1;
    }
    const float* raw = logits.data() + logit_row * V;
    ++logit_row;
    if (!e.samples) continue;
    if (r.in.max_new_tokens == 0) {
      // Prefill only (SGLang's prefill-only request): it ends with no output token.
      finish(r, "length", out);
      continue;
    }
    std::copy_n(raw, V, row.begin());
    if (r.num_generated() < r.in.min_new_tokens) {
      for (int32_t id : config_.eos_token_ids) row[id] = -std::numeric_limits<float>::infinity();
      for (int32_t id : r.in.stop_token_ids) row[id] = -std::numeric_limits<float>::infinity();
    }
    std::vector<int32_t> prompt(r.tokens.begin(), r.tokens.begin() + r.prompt_len);
    std::vector<int32_t> generated(r.tokens.begin() + r.prompt_len, r.tokens.end());
    int32_t token = r.sampler.sample(row.data(), V, prompt, generated);
    if (r.in.return_logprob) {
      log_softmax(raw, V, logprobs.data());
      r.pending.logprobs.push_back(logprobs[token]);
      r.pending.top_logprobs.push_back(r.in.top_logprobs_num > 0
                                           ? top_logprobs(logprobs, r.in.top_logprobs_num)
                                           : std::vector<TokenLogprob>{});
    }
    if (config_.disaggregation_mode == "prefill" && r.num_generated() == 0) {
      // The first token goes to the decode server with the KV cache.
      r.tokens.push_back(token);
      r.pending.token_ids.push_back(token);
      disagg_park(r);
      continue;
    }
    accept_token(r, token, out);
  }
}

bool Scheduler::accept_token(SchedRequest& r, int32_t token, std::vector<TokenOutput>& out) {
  r.tokens.push_back(token);
  r.pending.token_ids.push_back(token);
  const auto& eos = config_.eos_token_ids;
  bool is_eos = std::find(eos.begin(), eos.end(), token) != eos.end();
  bool is_stop = std::find(r.in.stop_token_ids.begin(), r.in.stop_token_ids.end(), token) !=
                 r.in.stop_token_ids.end();
  // As SGLang: ignore_eos also ignores stop_token_ids.
  if (!r.in.ignore_eos && (is_eos || is_stop)) {
    r.pending.matched_stop_token = token;
    finish(r, "stop", out);
    return true;
  }
  if (r.num_generated() >= r.in.max_new_tokens ||
      static_cast<int64_t>(r.tokens.size()) >= context_length_) {
    finish(r, "length", out);
    return true;
  }
  TokenOutput o = std::move(r.pending);
  r.pending = TokenOutput{};
  r.input_logprobs_pending = false;
  o.rid = r.in.rid;
  o.prompt_tokens = r.prompt_len;
  o.cached_tokens = r.cached_tokens;
  out.push_back(std::move(o));
  return false;
}

void Scheduler::tell_decode_aborted(const SchedRequest& r) {
  early_targets_.erase(r.in.rid);
  if (config_.disaggregation_mode != "prefill" || r.in.bootstrap_room < 0) return;
  // Whoever waits for this request's KV (the decode server) learns it will not come.
  const std::string why =
      r.pending.error.empty() ? "the prefill request was aborted" : r.pending.error;
  disagg_out_.push_back({r.in.rid,
                         {{"transfer",
                           {{"ok", false},
                            {"status", r.pending.error_status > 0 ? r.pending.error_status : 499},
                            {"error", why},
                            {"room", r.in.bootstrap_room}}}}});
}

void Scheduler::finish(SchedRequest& r, const std::string& reason, std::vector<TokenOutput>& out) {
  report_end(r, reason, out);
  release_pages(r);
  running_.remove_if([&](const std::unique_ptr<SchedRequest>& p) { return p.get() == &r; });
}

void Scheduler::report_end(SchedRequest& r, const std::string& reason,
                           std::vector<TokenOutput>& out, bool tell) {
  if (reason == "abort") {
    if (tell) tell_decode_aborted(r);
  } else {
    early_targets_.erase(r.in.rid);  // finished without waiting for a target (max_new_tokens 0)
  }
  TokenOutput o = std::move(r.pending);
  o.rid = r.in.rid;
  o.prompt_tokens = r.prompt_len;
  o.cached_tokens = r.cached_tokens;
  o.finished = true;
  o.finish_reason = reason;
  out.push_back(std::move(o));
}

bool Scheduler::flush_cache() {
  if (has_work()) return false;
  return prefix_cache_.flush();
}

int64_t Scheduler::used_tokens() const {
  return (allocator_.num_pages() - allocator_.num_free_pages() - prefix_cache_.cached_pages()) *
         allocator_.page_size();
}

BatchLogState Scheduler::log_state() const {
  return {num_running(), num_waiting(), used_tokens(), max_total_tokens()};
}

nlohmann::json Scheduler::stats_json() const {
  nlohmann::json disagg;
  if (config_.disaggregation_mode == "prefill") {
    disagg["num_prefill_inflight_queue_reqs"] = parked_.size();
  } else if (config_.disaggregation_mode == "decode") {
    disagg["num_decode_prealloc_queue_reqs"] = prealloc_.size();
    disagg["num_decode_transfer_queue_reqs"] = parked_.size();
  }
  nlohmann::json stats = {{"num_running_reqs", num_running()},
                          {"num_queue_reqs", num_waiting()},
                          {"kv_used_tokens", used_tokens()},
                          {"kv_cached_tokens", cached_tokens()},
                          {"kv_total_tokens", max_total_tokens()},
                          {"steps", stats_.steps},
                          {"prefill_tokens", stats_.prefill_tokens},
                          {"decode_tokens", stats_.decode_tokens},
                          {"retractions", stats_.retractions},
                          {"forward_seconds", stats_.forward_seconds},
                          {"schedule_seconds", stats_.schedule_seconds}};
  if (disagg.is_object()) stats.update(disagg);
  if (config_.disaggregation_mode == "decode") stats["pd_handoff_latency"] = pd_handoff_json();
  return stats;
}

}  // namespace epserve
