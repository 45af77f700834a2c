// All routes and the API-key check: with --api-key, every route but /health needs
// "Authorization: Bearer KEY"; without it the header is ignored (SGLang's test harness sends
// "Bearer None").
#include "server/errors.h"
#include "server/http.h"
#include "server/server_context.h"

namespace epserve {

void register_routes(HttpServer& http, ServerContext& ctx) {
  if (!ctx.args.api_key.empty()) {
    std::string expected = "Bearer " + ctx.args.api_key;
    http.set_filter([expected](const HttpRequest& req, HttpResponse&) {
      if (req.path == "/health") return false;
      if (req.header("Authorization") != expected) {
        throw ApiError(401, "Incorrect API key provided (send 'Authorization: Bearer KEY')", "",
                       "invalid_api_key");
      }
      return false;
    });
  }
  register_openai_completions(http, ctx);
  register_openai_chat(http, ctx);
  register_openai_models(http, ctx);
  register_native_generate(http, ctx);
  register_native_routes(http, ctx);
  register_expert_routes(http, ctx);
}

}  // namespace epserve
