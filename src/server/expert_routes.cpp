// SGLang's expert distribution recorder endpoints (GET or POST, plain text):
// /start_expert_distribution_record, /stop_expert_distribution_record and
// /dump_expert_distribution_record. Each goes to every DP group's scheduler; the ranks run it
// together between two forward passes (runtime/expert_runtime.h). The dump's answer names the
// file(s) world rank 0 wrote ("Written to A.json", "... A.pt", or "... A.json and A.pt" as
// --expert-distribution-recorder-format says).
#include <chrono>

#include "server/errors.h"
#include "server/http.h"
#include "server/server_context.h"

namespace epserve {
namespace {

// A dump waits for the step in progress and for rank 0 to write the file.
constexpr auto kExpertCommandTimeout = std::chrono::milliseconds(120000);

void run_expert_command(ServerContext& ctx, const std::string& command, HttpResponse& res,
                        const std::string& done) {
  if (!ctx.frontend.ready()) throw ApiError(503, "the model is still loading");
  std::string path;
  for (const nlohmann::json& r : ctx.frontend.control(command, kExpertCommandTimeout)) {
    if (r.is_null()) throw ApiError(503, "a scheduler did not answer " + command + " in time");
    // The request's fault (the recorder is off) is a 400; anything else failed in the server.
    if (r.contains("error")) {
      throw ApiError(r.value("status", 500), r.at("error").get<std::string>());
    }
    if (r.contains("path")) path = r.at("path").get<std::string>();
  }
  res.status = 200;
  res.content_type = "text/plain";
  res.body = path.empty() ? done + "\n" : done + " Written to " + path + "\n";
}

}  // namespace

void register_expert_routes(HttpServer& http, ServerContext& ctx) {
  struct Route {
    const char* command;
    const char* done;
  };
  for (Route r :
       {Route{"start_expert_distribution_record", "Start recording the expert distribution."},
        Route{"stop_expert_distribution_record", "Stop recording the expert distribution."},
        Route{"dump_expert_distribution_record", "Dump expert distribution record."}}) {
    for (const char* method : {"GET", "POST"}) {
      http.route(method, std::string("/") + r.command,
                 [&ctx, r](const HttpRequest&, HttpResponse& res) {
                   run_expert_command(ctx, r.command, res, r.done);
                 });
    }
  }
}

}  // namespace epserve
