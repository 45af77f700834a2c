// POST /v1/completions: OpenAI's legacy completions (prompt: a string, a list of strings, a
// token list or a list of token lists), streamed as SSE chunks or answered at once.
#include <fmt/format.h>

#include "server/errors.h"
#include "server/http.h"
#include "server/openai_common.h"
#include "server/sampling.h"
#include "server/sse.h"

namespace epserve {

namespace {

struct Prompts {
  std::vector<std::vector<int32_t>> ids;
  std::vector<std::string> texts;  // for echo
};

Prompts read_prompts(ServerContext& ctx, const json& prompt) {
  Prompts out;
  auto add_text = [&](const std::string& text) {
    out.ids.push_back(ctx.tokenizer.encode(text, true));
    out.texts.push_back(text);
  };
  auto add_ids = [&](const json& list) {
    std::vector<int32_t> ids;
    for (const auto& t : list) {
      if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() > INT32_MAX) {
        bad_request("prompt: token ids must be non-negative integers", "prompt");
      }
      ids.push_back(static_cast<int32_t>(t.get<int64_t>()));
    }
    out.texts.push_back(ctx.tokenizer.decode(ids, false));
    out.ids.push_back(std::move(ids));
  };
  if (prompt.is_string()) {
    add_text(prompt.get<std::string>());
  } else if (prompt.is_array() && !prompt.empty()) {
    if (prompt[0].is_number()) {
      add_ids(prompt);
    } else {
      for (const auto& p : prompt) {
        if (p.is_string())
          add_text(p.get<std::string>());
        else if (p.is_array())
          add_ids(p);
        else
          bad_request("prompt: expected strings or lists of token ids", "prompt");
      }
    }
  } else {
    bad_request("prompt: expected a non-empty string, list of strings or list of token ids",
                "prompt");
  }
  return out;
}

void handle_completions(ServerContext& ctx, const HttpRequest& req, HttpResponse& res) {
  json body = parse_json_object(req.body);
  check_keys(body,
             {"model",
              "prompt",
              "best_of",
              "echo",
              "frequency_penalty",
              "logit_bias",
              "logprobs",
              "max_tokens",
              "n",
              "presence_penalty",
              "seed",
              "stop",
              "stream",
              "stream_options",
              "suffix",
              "temperature",
              "top_p",
              "user",
              "top_k",
              "min_p",
              "min_tokens",
              "repetition_penalty",
              "stop_token_ids",
              "ignore_eos",
              "skip_special_tokens",
              "no_stop_trim",
              "bootstrap_host",
              "bootstrap_port",
              "bootstrap_room",
              "data_parallel_rank",
              "routed_dp_rank",
              "rid"},
             {"regex", "json_schema", "ebnf", "lora_path", "return_hidden_states"});
  FieldReader r(body);
  std::string model = r.string("model").value_or(ctx.model.served_model_name);
  if (!r.has("prompt")) bad_request("prompt is required", "prompt");
  if (auto suffix = r.string("suffix"); suffix && !suffix->empty()) {
    bad_request("suffix is not supported by epserve", "suffix");
  }
  SamplingRequest s;
  read_sampling_fields(r, s);
  read_bootstrap_fields(r, s);
  if (auto best_of = r.integer("best_of", 1, 128); best_of && *best_of != s.n) {
    bad_request("best_of other than n is not supported by epserve", "best_of");
  }
  s.max_new_tokens = r.integer("max_tokens", INT32_MIN, INT32_MAX);
  s.max_new_tokens_name = "max_tokens";
  // SGLang's CompletionRequest validator (chat and /generate accept 0: a prefill-only request).
  if (s.max_new_tokens && *s.max_new_tokens <= 0) {
    bad_request("max_tokens must be positive", "max_tokens");
  }
  if (auto v = r.integer("min_tokens", 0, INT32_MAX)) s.min_new_tokens = *v;
  bool echo = r.boolean("echo").value_or(false);
  std::optional<int64_t> logprobs = r.integer("logprobs", 0, 20);
  s.return_logprob = logprobs.has_value();
  s.top_logprobs_num = static_cast<int>(logprobs.value_or(0));
  if (echo && logprobs) s.logprob_start_len = 0;
  bool stream = r.boolean("stream").value_or(false);
  StreamOptions stream_options = read_stream_options(r, stream);
  std::string id = r.string("rid").value_or(make_request_id("cmpl-"));

  Prompts prompts = read_prompts(ctx, r.raw("prompt"));
  GenerationPlan plan = plan_generation(ctx, prompts.ids, s, 16, id);
  auto gen =
      std::make_shared<Generation>(ctx.frontend, ctx.tokenizer, &ctx.metrics,
                                   std::move(plan.inputs), std::move(plan.options), plan.dp_rank);
  const int64_t n = s.n;
  const int top_n = s.top_logprobs_num;
  const int64_t created = unix_time_now();
  auto& tokenizer = ctx.tokenizer;
  const bool cache_report = ctx.args.enable_cache_report;
  // Echoed prompts: their text first, and with logprobs the prompt tokens' logprobs (the first
  // token has none).
  auto echo_logprobs = [&tokenizer, top_n](const ChoiceStream& c, const std::vector<int32_t>& ids,
                                           json& out, int64_t& offset) {
    std::vector<LogprobEntry> entries;
    for (size_t i = 0; i < ids.size(); ++i) {
      LogprobEntry e{ids[i], 0, {}};
      if (i > 0 && i < c.input_logprobs().size()) e.logprob = c.input_logprobs()[i];
      if (i < c.input_top_logprobs().size()) e.top = c.input_top_logprobs()[i];
      entries.push_back(std::move(e));
    }
    append_completion_logprobs(tokenizer, entries, top_n, out, offset);
    if (!ids.empty()) {
      out["token_logprobs"][out["token_logprobs"].size() - ids.size()] = nullptr;
      out["top_logprobs"][out["top_logprobs"].size() - ids.size()] = nullptr;
    }
  };

  if (!stream) {
    gen->wait();
    json choices = json::array();
    for (size_t i = 0; i < gen->size(); ++i) {
      const ChoiceStream& c = gen->choice(i);
      std::string finish = openai_finish_reason(c);
      size_t p = i / static_cast<size_t>(n);
      std::string text = echo ? prompts.texts[p] + c.text() : c.text();
      json lp = nullptr;
      if (logprobs) {
        lp = empty_completion_logprobs();
        int64_t offset = 0;
        if (echo) echo_logprobs(c, prompts.ids[p], lp, offset);
        append_completion_logprobs(tokenizer, c.logprobs(), top_n, lp, offset);
      }
      choices.push_back({{"index", i},
                         {"text", text},
                         {"logprobs", lp},
                         {"finish_reason", finish},
                         {"matched_stop", c.matched_stop()}});
    }
    json out = {{"id", id},           {"object", "text_completion"},
                {"created", created}, {"model", model},
                {"choices", choices}, {"usage", usage_json(*gen, n, cache_report)}};
    res.json(200, dump_json(out));
    return;
  }

  res.content_type = kSseContentType;
  res.stream = [gen, prompts, echo, logprobs = logprobs.has_value(), top_n, n, id, created, model,
                stream_options, cache_report, &tokenizer,
                echo_logprobs](StreamWriter& writer) mutable {
    auto chunk = [&](json choice) {
      return json{{"id", id},
                  {"object", "text_completion"},
                  {"created", created},
                  {"model", model},
                  {"choices", json::array({std::move(choice)})}};
    };
    std::vector<int64_t> offsets(gen->size(), 0);
    std::vector<bool> echoed(gen->size(), !echo);
    size_t index;
    ChoiceUpdate update;
    while (gen->next(index, update)) {
      const ChoiceStream& c = gen->choice(index);
      if (c.failed()) {
        writer.write(sse_event(stream_error(c)));
        continue;
      }
      std::string text = update.text;
      json lp = nullptr;
      if (logprobs) lp = empty_completion_logprobs();
      if (!echoed[index]) {
        size_t p = index / static_cast<size_t>(n);
        text = prompts.texts[p] + text;
        if (logprobs) echo_logprobs(c, prompts.ids[p], lp, offsets[index]);
        echoed[index] = true;
      }
      if (logprobs)
        append_completion_logprobs(tokenizer, update.logprobs, top_n, lp, offsets[index]);
      if (text.empty() && !update.finished && update.logprobs.empty()) continue;
      json choice = {{"index", index},
                     {"text", text},
                     {"logprobs", lp},
                     {"finish_reason", update.finished ? json(c.finish_reason()) : json(nullptr)}};
      choice["matched_stop"] = update.finished ? c.matched_stop() : json(nullptr);
      json event = chunk(std::move(choice));
      if (stream_options.continuous_usage_stats) event["usage"] = choice_usage_json(c);
      if (!writer.write(sse_event(event))) {
        gen.reset();  // the client went away: abort what is still running
        return;
      }
    }
    if (stream_options.include_usage) {
      writer.write(sse_event({{"id", id},
                              {"object", "text_completion"},
                              {"created", created},
                              {"model", model},
                              {"choices", json::array()},
                              {"usage", usage_json(*gen, n, cache_report)}}));
    }
    writer.write(sse_done());
  };
}

}  // namespace

void register_openai_completions(HttpServer& http, ServerContext& ctx) {
  http.route("POST", "/v1/completions", [&ctx](const HttpRequest& req, HttpResponse& res) {
    handle_completions(ctx, req, res);
  });
}

}  // namespace epserve
