// The PD-disaggregation side of the scheduler (scheduler.h): prefill requests parked after their
// first token until their KV is sent, decode requests holding reserved pages until their KV and
// first token arrive.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "runtime/scheduler.h"

namespace epserve {
namespace {

using nlohmann::json;

// The answer for a room whose prefill request is no longer here.
json prefill_request_gone() {
  return {{"ok", false},
          {"status", 404},
          {"error", "the prefill request is gone (it failed, finished or was aborted)"}};
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// What a prefill server answered for a transferred request ({"first_token", "logprob",
// "top_logprobs"}), checked before the rank uses it: the answer comes over the network from the
// host the client named. Empty when it is well formed.
std::string check_received(const json& got, int64_t vocab_size) {
  auto token_ok = [vocab_size](const json& t) {
    return t.is_number_integer() && t.get<int64_t>() >= 0 && t.get<int64_t>() < vocab_size;
  };
  if (!got.is_object() || !got.contains("first_token") || !token_ok(got["first_token"])) {
    return "the prefill server's answer has no valid first_token";
  }
  if (got.contains("logprob") && !got["logprob"].is_number()) {
    return "the prefill server's logprob is not a number";
  }
  if (got.contains("top_logprobs")) {
    if (!got["top_logprobs"].is_array()) return "the prefill server's top_logprobs is not a list";
    for (const auto& t : got["top_logprobs"]) {
      if (!t.is_array() || t.size() != 2 || !token_ok(t[0]) || !t[1].is_number()) {
        return "the prefill server's top_logprobs entries are not [token, logprob] pairs";
      }
    }
  }
  return "";
}

}  // namespace

bool Scheduler::disagg_add(std::unique_ptr<SchedRequest>& request, std::vector<TokenOutput>& out) {
  const GenerateInput& in = request->in;
  const bool decode = config_.disaggregation_mode == "decode";
  std::string error;
  if (in.bootstrap_room < 0) {
    error = fmt::format(
        "this is a {} server (--disaggregation-mode {}): a request needs bootstrap_host, "
        "bootstrap_port and bootstrap_room (send it through `epserve router "
        "--pd-disaggregation`)",
        config_.disaggregation_mode, config_.disaggregation_mode);
  } else if (in.logprob_start_len >= 0) {
    error = "input logprobs (logprob_start_len) are not available with PD disaggregation";
  } else if (decode && in.bootstrap_host.empty()) {
    error = "bootstrap_host is required on a decode server";
  } else if (decode && held_.count(in.rid) != 0) {
    // The relay's messages name the request by rid: one rid, one transfer at a time.
    error = fmt::format(
        "rid '{}' is still in use: its previous request's KV pages are being "
        "released",
        in.rid);
  }
  if (!error.empty()) {
    fail(std::move(request), error, 400, out);
    return true;
  }
  if (!decode) return false;  // prefill: scheduled as usual until its first token
  if (in.max_new_tokens == 0) {
    // Nothing to decode: no KV needed (the prefill side ends it the same way).
    finish(*request, "length", out);
    return true;
  }
  prealloc_.push_back(std::move(request));
  return true;
}

std::unique_ptr<SchedRequest> Scheduler::take_running(SchedRequest& r) {
  for (auto it = running_.begin(); it != running_.end(); ++it) {
    if (it->get() == &r) {
      std::unique_ptr<SchedRequest> owned = std::move(*it);
      running_.erase(it);
      return owned;
    }
  }
  return nullptr;
}

bool Scheduler::disagg_park(SchedRequest& r) {
  std::unique_ptr<SchedRequest> owned = take_running(r);
  if (!owned) return false;
  Parked p{std::move(owned), std::chrono::steady_clock::now(), r.tokens.back(), json()};
  if (auto it = early_targets_.find(r.in.rid); it != early_targets_.end()) {
    p.target = std::move(it->second);
    early_targets_.erase(it);
  }
  parked_.emplace(r.in.rid, std::move(p));
  return true;
}

namespace {

// The request's next output is the error alone.
void set_error(SchedRequest& r, const std::string& error, int status) {
  r.pending.error = error;
  r.pending.error_status = status;
  r.pending.token_ids.clear();
  r.pending.logprobs.clear();
  r.pending.top_logprobs.clear();
}

}  // namespace

void Scheduler::fail(std::unique_ptr<SchedRequest> request, const std::string& error, int status,
                     std::vector<TokenOutput>& out) {
  SchedRequest& r = *request;
  set_error(r, error, status);
  finish(r, "abort", out);  // frees the pages (only computed positions enter the prefix cache)
}

void Scheduler::hold(std::unique_ptr<SchedRequest> request, const std::string& error, int status,
                     bool cancel, std::vector<TokenOutput>& out) {
  SchedRequest& r = *request;
  set_error(r, error, status);
  report_end(r, "abort", out);
  if (cancel) disagg_out_.push_back({r.in.rid, {{"cancel", true}}});
  held_.emplace(r.in.rid, Parked{std::move(request), std::chrono::steady_clock::now(), -1, json()});
}

void Scheduler::cancel_transfer(const std::string& rid, std::vector<TokenOutput>& out) {
  const std::string why = "the decode server cancelled the KV transfer";
  early_targets_.erase(rid);
  if (auto parked = parked_.find(rid); parked != parked_.end()) {
    // A send in flight cannot be called back; its result (success, or a failure that says
    // whether puts may still land) answers the decode side when it has finished. One still
    // queued behind other sends on the ranks is dropped there (it comes back cancelled).
    if (parked->second.send_id >= 0) {
      if (send_cancel_) {
        try {
          send_cancel_(parked->second.send_id);
        } catch (const std::exception& e) {
          spdlog::warn("KV transfer: cannot cancel the send of request {}: {}", rid, e.what());
        }
      }
      return;
    }
    std::unique_ptr<SchedRequest> request = std::move(parked->second.request);
    parked_.erase(parked);
    fail(std::move(request), why, 499, out);  // tells the decode side: nothing was sent
    return;
  }
  auto named = [&](const auto& queue) {
    for (const auto& r : queue) {
      if (r->in.rid == rid) return r.get();
    }
    return static_cast<SchedRequest*>(nullptr);
  };
  SchedRequest* r = named(waiting_);
  if (r == nullptr) r = named(running_);
  if (r != nullptr) {
    r->pending.error = why;
    r->pending.error_status = 499;
    abort(rid, out);  // frees its pages; tell_decode_aborted answers the decode side
    return;
  }
  disagg_out_.push_back({rid, {{"transfer", prefill_request_gone()}}});
}

void Scheduler::disagg(const DisaggInput& input, std::vector<TokenOutput>& out) {
  const json& body = input.body;
  auto parked = parked_.find(input.rid);
  if (config_.disaggregation_mode == "prefill") {
    if (body.contains("cancel")) {
      cancel_transfer(input.rid, out);
      return;
    }
    if (!body.contains("target")) return;
    if (parked != parked_.end()) {
      if (parked->second.send_id < 0) parked->second.target = body["target"];
      return;
    }
    auto pending = [&](const auto& queue) {
      return std::any_of(queue.begin(), queue.end(),
                         [&](const auto& r) { return r->in.rid == input.rid; });
    };
    if (pending(waiting_) || pending(running_)) {
      early_targets_[input.rid] = body["target"];
      return;
    }
    disagg_out_.push_back({input.rid, {{"transfer", prefill_request_gone()}}});
    return;
  }
  // "unsettled": the prefill side may still write into the pages (its transfer timed out with
  // puts in flight, or it cannot be reached); the relay goes on and sends a settled answer or
  // {"released"} later.
  const bool unsettled = body.contains("unsettled") && body["unsettled"] == true;
  if (auto held = held_.find(input.rid); held != held_.end()) {
    // The request has ended; any settled answer (the KV arrived, a final failure, or the relay's
    // release) means nothing more will be written into its pages.
    if (unsettled) return;
    release_pages(*held->second.request);
    held_.erase(held);
    return;
  }
  // Not a request in flight; or a stale release (only ended requests are released, and this rid
  // has been given to a new request since).
  if (parked == parked_.end() || body.contains("released")) return;
  std::unique_ptr<SchedRequest> request = std::move(parked->second.request);
  parked_.erase(parked);
  SchedRequest& r = *request;
  if (body.contains("error")) {
    const json& error = body["error"];
    const json status = body.contains("status") ? body["status"] : json(502);
    const std::string message =
        error.is_string() ? error.get<std::string>() : std::string("the prefill server failed");
    const int code = status.is_number_integer() ? status.get<int>() : 502;
    if (unsettled) {
      hold(std::move(request), message, code, /*cancel=*/false, out);
    } else {
      fail(std::move(request), message, code, out);
    }
    return;
  }
  const json got = body.contains("received") ? body["received"] : json();
  if (std::string bad = check_received(got, runner_.config().vocab_size); !bad.empty()) {
    fail(std::move(request), bad, 502, out);
    return;
  }
  if (!r.in.images.empty()) {
    // The prefill server's rope delta and image hashes (an answer without them comes from a
    // server that cannot have computed this prompt's images).
    VisionHandoff handoff;
    std::string bad = got.contains("vision")
                          ? parse_vision_handoff(got["vision"], handoff)
                          : "the prefill server's answer has no vision record for a request "
                            "with images";
    if (bad.empty()) bad = apply_vision_handoff(handoff, r.in.images, r.vision);
    if (!bad.empty()) {
      fail(std::move(request), bad, 502, out);
      return;
    }
  }
  r.num_computed = r.prompt_len;
  r.admitted_once = true;
  if (r.in.return_logprob && got.contains("logprob")) {
    r.pending.logprobs.push_back(got["logprob"].get<float>());
    std::vector<TokenLogprob> top;
    for (const auto& t : got.value("top_logprobs", json::array())) {
      top.push_back({t[0].get<int32_t>(), t[1].get<float>()});
    }
    r.pending.top_logprobs.push_back(std::move(top));
  }
  r.kv_arrived_at = kv_arrival_time(body);  // scheduler_handoff.cpp
  running_.push_back(std::move(request));
  accept_token(r, got["first_token"].get<int32_t>(), out);
}

void Scheduler::disagg_abort(const std::string& rid, std::vector<TokenOutput>& out) {
  for (auto it = prealloc_.begin(); it != prealloc_.end();) {
    if (rid.empty() || (*it)->in.rid == rid) {
      finish(**it, "abort", out);
      it = prealloc_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto it = parked_.begin(); it != parked_.end();) {
    if ((rid.empty() || it->first == rid) && it->second.send_id >= 0) {
      // Prefill, its KV send in flight: the puts read its pages, so they stay until the send
      // has finished (complete_send); the client gets its answer now.
      if (!it->second.ended) {
        it->second.request->pending.token_ids.clear();
        report_end(*it->second.request, "abort", out, /*tell=*/false);
        it->second.ended = true;
      }
      ++it;
    } else if (rid.empty() || it->first == rid) {
      std::unique_ptr<SchedRequest> request = std::move(it->second.request);
      it = parked_.erase(it);
      if (config_.disaggregation_mode == "decode") {
        // Its slots went out: the prefill server may be writing into them. The pages stay
        // held until it answers the cancel (hold()).
        hold(std::move(request), "", 0, /*cancel=*/true, out);
      } else {
        request->pending.token_ids.clear();
        finish(*request, "abort", out);
      }
    } else {
      ++it;
    }
  }
  if (rid.empty()) {
    early_targets_.clear();
  } else {
    early_targets_.erase(rid);
  }
}

void Scheduler::poll_disagg(std::vector<TokenOutput>& out) {
  if (config_.disaggregation_mode == "null") return;
  const DisaggTimeouts& timeouts = config_.disagg_timeouts;
  if (config_.disaggregation_mode == "decode") {
    // Reserve pages for the prompts in arrival order; their slots go to the prefill server.
    while (!prealloc_.empty() &&
           static_cast<int64_t>(running_.size() + parked_.size()) < config_.max_running_requests) {
      SchedRequest& r = *prealloc_.front();
      if (!reserve(r, r.prompt_len + 1)) break;
      const GenerateInput& in = r.in;
      disagg_out_.push_back({in.rid,
                             {{"slots", allocator_.slots(r.pages, r.prompt_len)},
                              {"bootstrap_host", in.bootstrap_host},
                              {"bootstrap_port", in.bootstrap_port},
                              {"bootstrap_room", in.bootstrap_room}}});
      parked_.emplace(in.rid, Parked{std::move(prealloc_.front()), std::chrono::steady_clock::now(),
                                     -1, json()});
      prealloc_.pop_front();
    }
    for (auto it = parked_.begin(); it != parked_.end();) {
      if (seconds_since(it->second.since) * 1000 > timeouts.waiting.count()) {
        std::unique_ptr<SchedRequest> r = std::move(it->second.request);
        it = parked_.erase(it);
        hold(std::move(r),
             fmt::format("the KV cache did not arrive from the prefill server within "
                         "SGLANG_DISAGGREGATION_WAITING_TIMEOUT ({} s)",
                         timeouts.waiting.count() / 1000.0),
             504, /*cancel=*/true, out);
      } else {
        ++it;
      }
    }
    // The last resort (kv_transfer.h, DisaggTimeouts::hold_limit): the relay answers long
    // before this unless the frontend lost the request's messages.
    for (auto it = held_.begin(); it != held_.end();) {
      if (seconds_since(it->second.since) * 1000 > timeouts.hold_limit().count()) {
        spdlog::warn("request {}: no answer about its KV transfer within {} s; freeing its pages",
                     it->first, timeouts.hold_limit().count() / 1000.0);
        release_pages(*it->second.request);
        it = held_.erase(it);
      } else {
        ++it;
      }
    }
    return;
  }
  poll_drained();
  for (auto it = parked_.begin(); it != parked_.end();) {
    Parked& p = it->second;
    SchedRequest& r = *p.request;
    if (p.send_id >= 0) {
      ++it;
      continue;
    }
    if (p.target.is_null()) {
      if (seconds_since(p.since) * 1000 > timeouts.bootstrap.count()) {
        std::unique_ptr<SchedRequest> owned = std::move(p.request);
        it = parked_.erase(it);
        fail(std::move(owned),
             fmt::format("no decode server asked for this request's KV cache within "
                         "SGLANG_DISAGGREGATION_BOOTSTRAP_TIMEOUT ({} s)",
                         timeouts.bootstrap.count() / 1000.0),
             504, out);
      } else {
        ++it;
      }
      continue;
    }
    // Start the send; the scheduler goes on while it is in flight (finish_sends).
    p.send_started = std::chrono::steady_clock::now();
    try {
      EPS_CHECK(send_start_ && send_poll_, "this rank cannot send KV (no transfer agent)");
      const auto& dst = p.target.at("slots");
      EPS_CHECK(static_cast<int64_t>(dst.size()) == r.prompt_len,
                "the decode server reserved {} slots for a {}-token prompt", dst.size(),
                r.prompt_len);
      p.send_id = next_send_id_++;
      sends_[p.send_id] = it->first;
      send_start_(p.send_id, p.target, allocator_.slots(r.pages, r.prompt_len));
      ++it;
    } catch (const std::exception& e) {
      if (p.send_id >= 0) sends_.erase(p.send_id);
      auto failed = it++;
      complete_send(failed, KvSendResult{p.send_id, 0, e.what()}, out);
    }
  }
  finish_sends(out);
}

void Scheduler::set_kv_sender(KvSender sender) {
  send_start_ = [this, sender = std::move(sender)](int64_t id, const json& target,
                                                   const std::vector<int32_t>& slots) {
    KvSendResult result{id, 0, ""};
    try {
      result.bytes = sender(target, slots);
    } catch (const std::exception& e) {
      result.error = e.what();
    }
    sync_done_.push_back(std::move(result));
  };
  send_poll_ = [this] { return std::exchange(sync_done_, {}); };
}

void Scheduler::finish_sends(std::vector<TokenOutput>& out) {
  if (sends_.empty()) return;
  std::vector<KvSendResult> done;
  try {
    done = send_poll_();
  } catch (const std::exception& e) {
    spdlog::warn("KV transfer: cannot poll the ranks' sends: {}", e.what());
    return;
  }
  for (const KvSendResult& d : done) {
    auto s = sends_.find(d.id);
    if (s == sends_.end()) continue;
    auto it = parked_.find(s->second);
    sends_.erase(s);
    if (it != parked_.end() && it->second.send_id == d.id) complete_send(it, d, out);
  }
}

void Scheduler::complete_send(std::map<std::string, Parked>::iterator it, const KvSendResult& sent,
                              std::vector<TokenOutput>& out) {
  Parked& p = it->second;
  SchedRequest& r = *p.request;
  json result;
  if (sent.error.empty()) {
    result = {{"ok", true},
              {"first_token", p.first_token},
              {"bytes", sent.bytes},
              {"seconds", seconds_since(p.send_started)}};
    if (!r.in.images.empty()) {
      result["vision"] = vision_handoff_json(make_vision_handoff(r.in.images, r.vision));
    }
    if (r.in.return_logprob && !r.pending.logprobs.empty()) {
      result["logprob"] = r.pending.logprobs.front();
      json top = json::array();
      for (const auto& t : r.pending.top_logprobs.front()) top.push_back({t.id, t.logprob});
      result["top_logprobs"] = std::move(top);
    }
  } else if (sent.cancelled) {
    // Dropped before any rank started it: nothing was written, so the decode side may free now.
    result = {
        {"ok", false}, {"status", 499}, {"error", "the decode server cancelled the KV transfer"}};
  } else {
    spdlog::warn("KV transfer of request {} failed: {}", it->first, sent.error);
    result = {{"ok", false}, {"status", 502}, {"error", sent.error}};
    // Puts of a timed-out send may still land: the decode side keeps its pages until the
    // agents' endpoints to its ranks have drained (poll_drained tells it).
    Undrained u{r.in.bootstrap_room, {}};
    const json& target = p.target;
    if (target.is_object() && target.contains("ranks") && target["ranks"].is_array()) {
      for (const auto& rank : target["ranks"]) {
        if (rank.is_object() && rank.contains("address") && rank["address"].is_string()) {
          u.addresses.push_back(rank["address"].get<std::string>());
        }
      }
    }
    if (!drained(u, draining_now())) {
      result["settled"] = false;
      undrained_[it->first] = std::move(u);
    }
  }
  disagg_out_.push_back({it->first, {{"transfer", result}}});
  const bool ended = p.ended;
  std::unique_ptr<SchedRequest> owned = std::move(p.request);
  parked_.erase(it);
  if (ended) {
    release_pages(*owned);  // its client had its answer when it was aborted
  } else if (result["ok"].get<bool>()) {
    finish(*owned, "length", out);
  } else if (sent.cancelled) {
    fail(std::move(owned), result["error"].get<std::string>(), 499, out);
  } else {
    fail(std::move(owned), "KV transfer failed: " + result["error"].get<std::string>(), 502, out);
  }
}

std::optional<std::vector<std::string>> Scheduler::draining_now() {
  if (!kv_draining_) return std::vector<std::string>{};
  try {
    return kv_draining_();
  } catch (const std::exception& e) {
    spdlog::warn("KV transfer: cannot ask the ranks about failed transfers: {}", e.what());
    return std::nullopt;  // unknown: nothing counts as drained
  }
}

bool Scheduler::drained(const Undrained& u, const std::optional<std::vector<std::string>>& now) {
  if (!now) return false;
  return std::none_of(u.addresses.begin(), u.addresses.end(), [&](const std::string& a) {
    return std::find(now->begin(), now->end(), a) != now->end();
  });
}

void Scheduler::poll_drained() {
  if (undrained_.empty()) return;
  const auto t = std::chrono::steady_clock::now();
  if (t - last_drain_check_ < std::chrono::milliseconds(100)) return;
  last_drain_check_ = t;
  const std::optional<std::vector<std::string>> now = draining_now();
  for (auto it = undrained_.begin(); it != undrained_.end();) {
    if (drained(it->second, now)) {
      disagg_out_.push_back({it->first, {{"drained", true}, {"room", it->second.room}}});
      it = undrained_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace epserve
