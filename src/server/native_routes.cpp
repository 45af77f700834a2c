// SGLang's native routes besides /generate: health, model and server info, cache flush, abort,
// tokenize/detokenize, and the Prometheus metrics.
#include <fmt/format.h>

#include "server/errors.h"
#include "server/http.h"
#include "server/json_fields.h"
#include "server/openai_common.h"
#include "server/sampling.h"
#include "server/sse.h"

namespace epserve {

namespace {

constexpr auto kControlTimeout = std::chrono::milliseconds(2000);
// Flushing walks the whole prefix cache in the scheduler's loop.
constexpr auto kFlushTimeout = std::chrono::milliseconds(120000);

json model_info(const ServerContext& ctx) {
  return {{"model_path", ctx.model.model_path},
          {"tokenizer_path", ctx.args.tokenizer_path},
          {"served_model_name", ctx.model.served_model_name},
          {"is_generation", true},
          {"preferred_sampling_params", nullptr},
          {"weight_version", "default"},
          {"has_image_understanding", false},
          {"has_audio_understanding", false},
          {"model_type", ctx.model.model_type},
          {"architectures", json::array({ctx.model.architecture})},
          {"context_length", ctx.model.context_length},
          {"vocab_size", ctx.model.vocab_size}};
}

json server_info(ServerContext& ctx) {
  json info = server_args_to_json(ctx.args);
  std::vector<SchedulerInfo> schedulers = ctx.frontend.scheduler_info();
  json groups = json::array();
  for (const auto& s : schedulers) groups.push_back(s.result);
  const json& first = schedulers.front().result;
  info["version"] = EPSERVE_VERSION;
  info["context_length"] = ctx.model.context_length;
  info["max_total_num_tokens"] = first.is_object() ? first.value("max_total_num_tokens", 0) : 0;
  info["page_size"] = first.is_object() ? first.value("page_size", 0) : 0;
  info["scheduler_info"] = std::move(groups);
  info["ready"] = ctx.frontend.ready();
  info["num_requests_in_flight"] = ctx.frontend.num_requests_in_flight();
  json stats = json::array();
  if (ctx.frontend.ready()) {
    for (auto& s : ctx.frontend.control("get_stats", kControlTimeout)) stats.push_back(s);
  }
  info["internal_states"] = std::move(stats);
  return info;
}

void health_generate(ServerContext& ctx, HttpResponse& res) {
  if (std::string problem = ctx.frontend.health_problem(); !problem.empty()) {
    res.json(503, error_body(503, problem));
    return;
  }
  GenerateInput in;
  in.rid = make_request_id("health-");
  in.input_ids = {ctx.tokenizer.bos_id().value_or(0)};
  in.max_new_tokens = 1;
  in.ignore_eos = true;
  in.sampling.temperature = 0;
  auto group = ctx.frontend.submit({std::move(in)});
  auto deadline = Clock::now() + std::chrono::seconds(20);
  OutputEvent event;
  while (Clock::now() < deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (!group->next(event, std::max(left, std::chrono::milliseconds(1)))) break;
    if (event.output.finished) {
      if (!event.output.error.empty()) break;
      res.status = 200;
      res.content_type = "text/plain";
      return;
    }
  }
  res.json(503, error_body(503, "the server did not generate a token within 20 s"));
}

// /tokenize: {"prompt": str | [str], "add_special_tokens": bool}
void tokenize(ServerContext& ctx, const HttpRequest& req, HttpResponse& res) {
  json body = parse_json_object(req.body);
  check_keys(body, {"prompt", "add_special_tokens", "model"});
  FieldReader r(body);
  bool special = r.boolean("add_special_tokens").value_or(true);
  if (!r.has("prompt")) bad_request("prompt is required", "prompt");
  const json& prompt = r.raw("prompt");
  json out = {{"max_model_len", ctx.model.context_length}};
  if (prompt.is_string()) {
    std::vector<int32_t> ids = ctx.tokenizer.encode(prompt.get<std::string>(), special);
    out["tokens"] = ids;
    out["count"] = ids.size();
  } else {
    json tokens = json::array(), counts = json::array();
    std::vector<std::string> texts = *r.strings("prompt");
    for (const auto& text : texts) {
      std::vector<int32_t> ids = ctx.tokenizer.encode(text, special);
      counts.push_back(ids.size());
      tokens.push_back(std::move(ids));
    }
    out["tokens"] = std::move(tokens);
    out["count"] = std::move(counts);
  }
  res.json(200, dump_json(out));
}

// /detokenize: {"tokens": [int], "skip_special_tokens": bool}
void detokenize(ServerContext& ctx, const HttpRequest& req, HttpResponse& res) {
  json body = parse_json_object(req.body);
  check_keys(body, {"tokens", "skip_special_tokens", "model"});
  FieldReader r(body);
  if (!r.has("tokens")) bad_request("tokens is required", "tokens");
  std::vector<int32_t> ids = *r.token_ids("tokens");
  for (int32_t id : ids) {
    if (id >= ctx.tokenizer.vocab_size()) {
      bad_request(fmt::format("tokens: token id {} is out-of-vocabulary", id), "tokens");
    }
  }
  bool skip = r.boolean("skip_special_tokens").value_or(false);
  res.json(200, dump_json({{"text", ctx.tokenizer.decode(ids, skip)}}));
}

}  // namespace

void register_native_routes(HttpServer& http, ServerContext& ctx) {
  http.route("GET", "/health", [&ctx](const HttpRequest&, HttpResponse& res) {
    if (std::string problem = ctx.frontend.health_problem(); problem.empty()) {
      res.status = 200;
      res.content_type = "text/plain";
    } else {
      res.json(503, error_body(503, problem));
    }
  });
  http.route("GET", "/health_generate",
             [&ctx](const HttpRequest&, HttpResponse& res) { health_generate(ctx, res); });
  for (const char* path : {"/get_model_info", "/model_info"}) {
    http.route("GET", path, [&ctx](const HttpRequest&, HttpResponse& res) {
      res.json(200, dump_json(model_info(ctx)));
    });
  }
  for (const char* path : {"/get_server_info", "/server_info"}) {
    http.route("GET", path, [&ctx](const HttpRequest&, HttpResponse& res) {
      res.json(200, dump_json(server_info(ctx)));
    });
  }
  http.route("GET", "/version", [](const HttpRequest&, HttpResponse& res) {
    res.json(200, dump_json({{"version", EPSERVE_VERSION}}));
  });
  for (const char* method : {"GET", "POST"}) {
    http.route(method, "/flush_cache", [&ctx](const HttpRequest&, HttpResponse& res) {
      if (!ctx.frontend.ready()) throw ApiError(503, "the model is still loading");
      bool ok = true;
      for (const json& r : ctx.frontend.control("flush_cache", kFlushTimeout)) {
        if (r.is_null()) throw ApiError(503, "a scheduler did not answer flush_cache in time");
        ok = ok && r.value("ok", false);
      }
      res.content_type = "text/plain";
      res.status = ok ? 200 : 400;
      res.body = ok ? "Cache flushed.\n"
                    : "Cache not flushed: requests are running or waiting; retry when idle.\n";
    });
  }
  http.route("POST", "/abort_request", [&ctx](const HttpRequest& req, HttpResponse& res) {
    json body = parse_json_object(req.body);
    check_keys(body, {"rid", "abort_all"});
    FieldReader r(body);
    bool all = r.boolean("abort_all").value_or(false);
    std::string rid = r.string("rid").value_or("");
    if (!all && rid.empty()) bad_request("give rid, or abort_all: true", "rid");
    bool found = ctx.frontend.abort_request(all ? "" : rid);
    res.json(200, dump_json({{"aborted", found}}));
  });
  for (const char* path : {"/tokenize", "/v1/tokenize"}) {
    http.route("POST", path,
               [&ctx](const HttpRequest& req, HttpResponse& res) { tokenize(ctx, req, res); });
  }
  for (const char* path : {"/detokenize", "/v1/detokenize"}) {
    http.route("POST", path,
               [&ctx](const HttpRequest& req, HttpResponse& res) { detokenize(ctx, req, res); });
  }
  http.route("GET", "/metrics", [&ctx](const HttpRequest&, HttpResponse& res) {
    std::vector<json> stats;
    if (ctx.frontend.ready()) stats = ctx.frontend.control("get_stats", kControlTimeout);
    res.status = 200;
    res.content_type = "text/plain; version=0.0.4";
    res.body = ctx.metrics.render(stats);
  });
}

}  // namespace epserve
