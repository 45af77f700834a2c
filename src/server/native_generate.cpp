// POST /generate: SGLang's native generation API. A single request (text, or input_ids) gets one
// object {"text", "output_ids", "meta_info"}; a batch (a list of texts or of id lists) or
// sampling_params.n > 1 gets a list. With stream, each event carries the text and ids so far
// (SGLang's default, non-incremental streaming) and the stream ends with "data: [DONE]".
#include <fmt/format.h>

#include "server/errors.h"
#include "server/http.h"
#include "server/openai_common.h"
#include "server/request_images.h"
#include "server/sampling.h"
#include "server/sse.h"

namespace epserve {

namespace {

struct NativeOptions {
  bool return_logprob = false;
  int top_logprobs_num = 0;
  int64_t logprob_start_len = -1;
  bool return_text_in_logprobs = false;
};

// (logprob, token_id, text or null) as SGLang returns them.
json logprob_tuple(const tokenizer::Tokenizer& tok, const NativeOptions& o, json logprob,
                   int32_t id) {
  return json::array({std::move(logprob), id,
                      o.return_text_in_logprobs ? json(token_text(tok, id)) : json(nullptr)});
}

json top_tuples(const tokenizer::Tokenizer& tok, const NativeOptions& o,
                const std::vector<TokenLogprob>& top) {
  json out = json::array();
  for (const auto& t : top) out.push_back(logprob_tuple(tok, o, t.logprob, t.id));
  return out;
}

json meta_info(const tokenizer::Tokenizer& tok, const NativeOptions& o, const Generation& g,
               size_t i, const std::vector<int32_t>& prompt) {
  const ChoiceStream& c = g.choice(i);
  json meta = {{"id", g.rid(i)},
               {"finish_reason", c.sglang_finish_reason()},
               {"prompt_tokens",
                c.prompt_tokens() > 0 ? c.prompt_tokens() : static_cast<int64_t>(prompt.size())},
               {"completion_tokens", c.completion_tokens()},
               {"cached_tokens", c.cached_tokens()},
               {"weight_version", "default"}};
  if (c.finished()) meta["e2e_latency"] = g.elapsed_seconds();
  if (o.return_logprob) {
    json input = json::array(), input_top = json::array();
    if (o.logprob_start_len >= 0) {
      for (size_t p = static_cast<size_t>(o.logprob_start_len); p < prompt.size(); ++p) {
        size_t k = p - static_cast<size_t>(o.logprob_start_len);
        json value =
            p == 0 || k >= c.input_logprobs().size() ? json(nullptr) : json(c.input_logprobs()[k]);
        input.push_back(logprob_tuple(tok, o, value, prompt[p]));
        if (o.top_logprobs_num > 0) {
          input_top.push_back(p == 0 || k >= c.input_top_logprobs().size()
                                  ? json(nullptr)
                                  : top_tuples(tok, o, c.input_top_logprobs()[k]));
        }
      }
    }
    json output = json::array(), output_top = json::array();
    for (const LogprobEntry& e : c.logprobs()) {
      output.push_back(logprob_tuple(tok, o, e.logprob, e.id));
      if (o.top_logprobs_num > 0) output_top.push_back(top_tuples(tok, o, e.top));
    }
    meta["input_token_logprobs"] = std::move(input);
    meta["output_token_logprobs"] = std::move(output);
    if (o.top_logprobs_num > 0) {
      meta["input_top_logprobs"] = std::move(input_top);
      meta["output_top_logprobs"] = std::move(output_top);
    }
  }
  return meta;
}

json choice_json(const tokenizer::Tokenizer& tok, const NativeOptions& o, const Generation& g,
                 size_t i, const std::vector<int32_t>& prompt) {
  const ChoiceStream& c = g.choice(i);
  return {{"text", c.text()},
          {"output_ids", c.output_ids()},
          {"meta_info", meta_info(tok, o, g, i, prompt)}};
}

void handle_generate(ServerContext& ctx, const HttpRequest& req, HttpResponse& res) {
  json body = parse_json_object(req.body);
  check_keys(body,
             {"text", "input_ids", "image_data", "sampling_params", "stream", "rid",
              "return_logprob", "logprob_start_len", "top_logprobs_num", "return_text_in_logprobs",
              "log_metrics", "bootstrap_host", "bootstrap_port", "bootstrap_room",
              "data_parallel_rank", "routed_dp_rank"},
             {"audio_data", "video_data", "input_embeds", "lora_path", "custom_logit_processor",
              "return_hidden_states", "token_ids_logprob", "session_params"});
  FieldReader r(body);
  if (r.has("text") == r.has("input_ids")) {
    bad_request("give exactly one of text and input_ids");
  }
  // Prompts; a batch when text is a list or input_ids a list of lists.
  std::vector<std::vector<int32_t>> prompts;
  bool batch = false;
  if (r.has("text")) {
    const json& text = r.raw("text");
    if (text.is_string()) {
      prompts.push_back(ctx.tokenizer.encode(text.get<std::string>(), true));
    } else if (text.is_array() && !text.empty()) {
      batch = true;
      for (const auto& t : text) {
        if (!t.is_string()) bad_request("text: expected a string or a list of strings", "text");
        prompts.push_back(ctx.tokenizer.encode(t.get<std::string>(), true));
      }
    } else {
      bad_request("text: expected a string or a non-empty list of strings", "text");
    }
  } else {
    const json& ids = r.raw("input_ids");
    if (ids.is_array() && !ids.empty() && ids[0].is_array()) {
      batch = true;
      for (size_t i = 0; i < ids.size(); ++i) {
        prompts.push_back(parse_token_ids(ids[i], fmt::format("input_ids[{}]", i)));
      }
    } else {
      prompts.push_back(*r.token_ids("input_ids"));
    }
  }

  // Images: decoded per prompt, each prompt's placeholders expanded to its images' tokens.
  std::vector<std::vector<ImageInput>> images(prompts.size());
  if (r.has("image_data")) {
    std::vector<std::vector<std::string>> sources =
        read_image_data(r.raw("image_data"), prompts.size(), batch);
    for (size_t p = 0; p < prompts.size(); ++p) {
      images[p] = load_request_images(ctx.vision, ctx.media_policy, sources[p], "image_data");
      place_images(ctx.vision, images[p], ctx.model.context_length, prompts[p]);
    }
  }

  SamplingRequest s;
  if (const json* params = r.object("sampling_params")) {
    check_keys(
        *params,
        {"max_new_tokens", "min_new_tokens", "stop", "stop_token_ids", "temperature", "top_p",
         "top_k", "min_p", "frequency_penalty", "presence_penalty", "repetition_penalty",
         "ignore_eos", "skip_special_tokens", "no_stop_trim", "n", "logit_bias", "sampling_seed",
         "spaces_between_special_tokens"},
        {"json_schema", "regex", "ebnf", "structural_tag", "custom_params", "stream_interval"},
        "sampling_params.");
    FieldReader p(*params, "sampling_params.");
    read_sampling_fields(p, s);
    s.max_new_tokens = p.integer("max_new_tokens", 0, INT32_MAX);
    if (auto v = p.integer("min_new_tokens", 0, INT32_MAX)) s.min_new_tokens = *v;
    if (auto v = p.integer("sampling_seed", INT64_MIN, INT64_MAX)) {
      s.seed = static_cast<uint64_t>(*v);
    }
    if (auto v = p.boolean("spaces_between_special_tokens"); v && !*v) {
      bad_request("sampling_params.spaces_between_special_tokens = false is not supported");
    }
  } else if (r.has("sampling_params")) {
    bad_request("sampling_params: expected an object", "sampling_params");
  }
  read_bootstrap_fields(r, s);
  NativeOptions o;
  o.return_logprob = r.boolean("return_logprob").value_or(false);
  o.top_logprobs_num = static_cast<int>(r.integer("top_logprobs_num", 0, 20).value_or(0));
  o.logprob_start_len = r.integer("logprob_start_len", -1, INT32_MAX).value_or(-1);
  o.return_text_in_logprobs = r.boolean("return_text_in_logprobs").value_or(false);
  s.return_logprob = o.return_logprob;
  s.top_logprobs_num = o.return_logprob ? o.top_logprobs_num : 0;
  s.logprob_start_len = o.return_logprob ? o.logprob_start_len : -1;
  for (const auto& prompt : prompts) {
    if (o.logprob_start_len >= static_cast<int64_t>(prompt.size())) {
      bad_request(fmt::format("logprob_start_len ({}) must be smaller than the prompt length ({})",
                              o.logprob_start_len, prompt.size()),
                  "logprob_start_len");
    }
  }
  bool stream = r.boolean("stream").value_or(false);

  std::vector<std::string> rids;
  if (r.has("rid")) {
    const json& rid = r.raw("rid");
    if (rid.is_string())
      rids.push_back(rid.get<std::string>());
    else if (rid.is_array())
      rids = *r.strings("rid");
    else
      bad_request("rid: expected a string or a list of strings", "rid");
  }
  GenerationPlan plan =
      plan_generation(ctx, prompts, s, 128, rids.size() == 1 ? rids[0] : make_request_id(""));
  if (rids.size() > 1) {
    if (rids.size() != plan.inputs.size()) {
      bad_request(fmt::format("rid: {} ids for {} requests", rids.size(), plan.inputs.size()),
                  "rid");
    }
    for (size_t i = 0; i < rids.size(); ++i) plan.inputs[i].rid = rids[i];
  }
  const size_t choices_per_prompt = plan.inputs.size() / prompts.size();
  for (size_t i = 0; i < plan.inputs.size(); ++i) {
    plan.inputs[i].images = images[i / choices_per_prompt];
  }
  batch = batch || plan.inputs.size() > 1;
  std::vector<std::vector<int32_t>> choice_prompts;
  for (const auto& in : plan.inputs) choice_prompts.push_back(in.input_ids);
  auto gen =
      std::make_shared<Generation>(ctx.frontend, ctx.tokenizer, &ctx.metrics,
                                   std::move(plan.inputs), std::move(plan.options), plan.dp_rank);
  auto& tok = ctx.tokenizer;

  if (!stream) {
    gen->wait();
    json out = json::array();
    for (size_t i = 0; i < gen->size(); ++i) {
      const ChoiceStream& c = gen->choice(i);
      if (c.failed()) throw ApiError(c.error_status(), c.error());
      out.push_back(choice_json(tok, o, *gen, i, choice_prompts[i]));
    }
    res.json(200, dump_json(batch ? out : out[0]));
    return;
  }

  res.content_type = kSseContentType;
  res.stream = [gen, o, batch, choice_prompts, &tok](StreamWriter& writer) mutable {
    size_t index;
    ChoiceUpdate update;
    while (gen->next(index, update)) {
      const ChoiceStream& c = gen->choice(index);
      if (update.text.empty() && update.token_ids.empty() && !update.finished) continue;
      json event = c.failed() ? json{{"error", {{"message", c.error()}}}}
                              : choice_json(tok, o, *gen, index, choice_prompts[index]);
      if (batch) event["index"] = index;
      if (!writer.write(sse_event(event))) {
        gen.reset();
        return;
      }
    }
    writer.write(sse_done());
  };
}

}  // namespace

void register_native_generate(HttpServer& http, ServerContext& ctx) {
  http.route("POST", "/generate",
             [&ctx](const HttpRequest& req, HttpResponse& res) { handle_generate(ctx, req, res); });
}

}  // namespace epserve
