// GET /v1/models and /v1/models/{id}: the one served model, with SGLang's extra fields (root,
// max_model_len).
#include "server/errors.h"
#include "server/http.h"
#include "server/openai_common.h"
#include "server/sse.h"

namespace epserve {

namespace {

json model_card(const ServerContext& ctx) {
  return {{"id", ctx.model.served_model_name},   {"object", "model"},
          {"created", ctx.model.created},        {"owned_by", "epserve"},
          {"root", ctx.model.served_model_name}, {"max_model_len", ctx.model.context_length}};
}

}  // namespace

void register_openai_models(HttpServer& http, ServerContext& ctx) {
  http.route("GET", "/v1/models", [&ctx](const HttpRequest&, HttpResponse& res) {
    res.json(200, dump_json({{"object", "list"}, {"data", json::array({model_card(ctx)})}}));
  });
  http.route("GET", "/v1/models/(.+)", [&ctx](const HttpRequest& req, HttpResponse& res) {
    if (req.path_params.at(0) != ctx.model.served_model_name) {
      throw ApiError(404, "The model '" + req.path_params[0] + "' does not exist", "model",
                     "model_not_found");
    }
    res.json(200, dump_json(model_card(ctx)));
  });
}

}  // namespace epserve
