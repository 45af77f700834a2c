// POST /v1/chat/completions: messages rendered through the model's chat template (with
// add_generation_prompt and the request's chat_template_kwargs), tokenized without adding
// special tokens (the template writes them), then generated like a completion.
#include <fmt/format.h>

#include "server/chat_messages.h"
#include "server/errors.h"
#include "server/http.h"
#include "server/openai_common.h"
#include "server/request_images.h"
#include "server/sampling.h"
#include "server/sse.h"

namespace epserve {

namespace {

void handle_chat(ServerContext& ctx, ChatContentFormat content_format, const HttpRequest& req,
                 HttpResponse& res) {
  json body = parse_json_object(req.body);
  check_keys(body,
             {"model",
              "messages",
              "frequency_penalty",
              "logit_bias",
              "logprobs",
              "top_logprobs",
              "max_tokens",
              "max_completion_tokens",
              "n",
              "presence_penalty",
              "seed",
              "stop",
              "stream",
              "stream_options",
              "temperature",
              "top_p",
              "user",
              "parallel_tool_calls",
              "metadata",
              "store",
              "service_tier",
              "modalities",
              "response_format",
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
              "chat_template_kwargs",
              "rid"},
             {"tools", "tool_choice", "functions", "function_call", "audio", "prediction",
              "reasoning_effort", "web_search_options", "continue_final_message", "regex",
              "json_schema", "ebnf", "lora_path", "separate_reasoning", "return_hidden_states"});
  FieldReader r(body);
  std::string model = r.string("model").value_or(ctx.model.served_model_name);
  if (!r.has("messages")) bad_request("messages is required", "messages");
  if (const json* format = r.object("response_format");
      format && format->value("type", "") != "text") {
    bad_request("response_format other than {\"type\": \"text\"} is not supported by epserve",
                "response_format");
  }
  if (auto modalities = r.strings("modalities")) {
    for (const auto& m : *modalities) {
      bool image = ctx.vision && (m == "image" || m == "multi-images");
      if (m != "text" && !image) {
        bad_request(ctx.vision ? "only the text and image modalities are supported"
                               : "only the text modality is supported",
                    "modalities");
      }
    }
  }
  SamplingRequest s;
  read_sampling_fields(r, s);
  read_bootstrap_fields(r, s);
  // SGLang takes `max_completion_tokens or max_tokens`: a 0 in max_completion_tokens defers to
  // max_tokens, and max_tokens 0 asks for no new token (the prompt is only prefilled).
  s.max_new_tokens = r.integer("max_completion_tokens", 0, INT32_MAX);
  s.max_new_tokens_name = "max_completion_tokens";
  if (!s.max_new_tokens || *s.max_new_tokens == 0) {
    s.max_new_tokens = r.integer("max_tokens", 0, INT32_MAX);
    s.max_new_tokens_name = "max_tokens";
  }
  if (auto v = r.integer("min_tokens", 0, INT32_MAX)) s.min_new_tokens = *v;
  bool logprobs = r.boolean("logprobs").value_or(false);
  std::optional<int64_t> top_logprobs = r.integer("top_logprobs", 0, 20);
  if (top_logprobs && !logprobs) {
    bad_request("top_logprobs needs logprobs set to true", "top_logprobs");
  }
  s.return_logprob = logprobs;
  s.top_logprobs_num = static_cast<int>(top_logprobs.value_or(0));
  bool stream = r.boolean("stream").value_or(false);
  StreamOptions stream_options = read_stream_options(r, stream);
  nlohmann::ordered_json kwargs = nlohmann::ordered_json::object();
  if (const json* k = r.object("chat_template_kwargs"))
    kwargs = nlohmann::ordered_json::parse(k->dump());
  std::string id = r.string("rid").value_or(make_request_id("chatcmpl-"));

  if (!ctx.chat_template) {
    bad_request("this model has no chat template (" + ctx.chat_template_error +
                "); start the server with --chat-template FILE, or use /v1/completions");
  }
  std::vector<std::string> image_urls;
  nlohmann::ordered_json messages =
      template_messages(r.raw("messages"), content_format, ctx.vision ? &image_urls : nullptr);
  std::string prompt;
  try {
    prompt = ctx.chat_template->render_json(messages, true, kwargs);
  } catch (const std::exception& e) {
    bad_request(fmt::format("the chat template rejected the messages: {}", e.what()), "messages");
  }
  std::vector<ImageInput> images =
      load_request_images(ctx.vision, ctx.media_policy, image_urls, "messages");
  std::vector<std::vector<int32_t>> prompts = {ctx.tokenizer.encode(prompt, false)};
  place_images(ctx.vision, images, ctx.model.context_length, prompts[0]);
  GenerationPlan plan = plan_generation(ctx, prompts, s, -1, id);
  for (GenerateInput& input : plan.inputs) input.images = images;
  auto gen =
      std::make_shared<Generation>(ctx.frontend, ctx.tokenizer, &ctx.metrics,
                                   std::move(plan.inputs), std::move(plan.options), plan.dp_rank);
  const int top_n = s.top_logprobs_num;
  const int64_t created = unix_time_now();
  const int64_t n = s.n;
  const bool cache_report = ctx.args.enable_cache_report;
  auto& tokenizer = ctx.tokenizer;
  auto logprobs_json = [&tokenizer, logprobs, top_n](const std::vector<LogprobEntry>& entries) {
    if (!logprobs) return json(nullptr);
    return json{{"content", chat_logprobs_content(tokenizer, entries, top_n)},
                {"refusal", nullptr}};
  };

  if (!stream) {
    gen->wait();
    json choices = json::array();
    for (size_t i = 0; i < gen->size(); ++i) {
      const ChoiceStream& c = gen->choice(i);
      std::string finish = openai_finish_reason(c);
      choices.push_back({{"index", i},
                         {"message",
                          {{"role", "assistant"},
                           {"content", c.text()},
                           {"reasoning_content", nullptr},
                           {"refusal", nullptr}}},
                         {"logprobs", logprobs_json(c.logprobs())},
                         {"finish_reason", finish},
                         {"matched_stop", c.matched_stop()}});
    }
    json out = {{"id", id},           {"object", "chat.completion"},
                {"created", created}, {"model", model},
                {"choices", choices}, {"usage", usage_json(*gen, n, cache_report)}};
    res.json(200, dump_json(out));
    return;
  }

  res.content_type = kSseContentType;
  res.stream = [gen, id, created, model, stream_options, cache_report, n,
                logprobs_json](StreamWriter& writer) mutable {
    // SGLang's chunk shapes: every delta carries reasoning_content (null: epserve does not parse
    // reasoning) and content, null in the finish chunk; every choice has matched_stop.
    auto chunk = [&](size_t index, json delta, json logprobs, json finish, json matched) {
      return json{{"id", id},
                  {"object", "chat.completion.chunk"},
                  {"created", created},
                  {"model", model},
                  {"choices", json::array({{{"index", index},
                                            {"delta", std::move(delta)},
                                            {"logprobs", std::move(logprobs)},
                                            {"finish_reason", std::move(finish)},
                                            {"matched_stop", std::move(matched)}}})}};
    };
    for (size_t i = 0; i < gen->size(); ++i) {
      json delta = {{"role", "assistant"}, {"content", ""}, {"reasoning_content", nullptr}};
      if (!writer.write(sse_event(chunk(i, std::move(delta), nullptr, nullptr, nullptr)))) return;
    }
    // As SGLang does, the finish chunks follow the last content of every choice.
    std::vector<size_t> finished;
    size_t index;
    ChoiceUpdate update;
    while (gen->next(index, update)) {
      const ChoiceStream& c = gen->choice(index);
      if (c.failed()) {
        writer.write(sse_event(stream_error(c)));
        continue;
      }
      if (update.finished) finished.push_back(index);
      if (update.text.empty() && update.logprobs.empty()) continue;
      json delta = {{"content", update.text}, {"reasoning_content", nullptr}};
      json event = chunk(index, std::move(delta), logprobs_json(update.logprobs), nullptr, nullptr);
      if (stream_options.continuous_usage_stats) event["usage"] = choice_usage_json(c);
      if (!writer.write(sse_event(event))) {
        gen.reset();  // the client went away: abort what is still running
        return;
      }
    }
    for (size_t i : finished) {
      const ChoiceStream& c = gen->choice(i);
      json delta = {{"content", nullptr}, {"reasoning_content", nullptr}};
      if (!writer.write(sse_event(
              chunk(i, std::move(delta), nullptr, c.finish_reason(), c.matched_stop())))) {
        return;
      }
    }
    if (stream_options.include_usage) {
      writer.write(sse_event({{"id", id},
                              {"object", "chat.completion.chunk"},
                              {"created", created},
                              {"model", model},
                              {"choices", json::array()},
                              {"usage", usage_json(*gen, n, cache_report)}}));
    }
    writer.write(sse_done());
  };
}

}  // namespace

void register_openai_chat(HttpServer& http, ServerContext& ctx) {
  // The template is the server's for its whole life: its content format is read once.
  const ChatContentFormat content_format =
      ctx.chat_template ? detect_chat_content_format(ctx.chat_template->source())
                        : ChatContentFormat::kString;
  http.route("POST", "/v1/chat/completions",
             [&ctx, content_format](const HttpRequest& req, HttpResponse& res) {
               handle_chat(ctx, content_format, req, res);
             });
}

}  // namespace epserve
