#include "server/server_main.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <thread>

#include "comm/launcher.h"
#include "comm/store_secret.h"
#include "core/error.h"
#include "core/log.h"
#include "io/model_config.h"
#include "runtime/control_plane.h"
#include "server/http.h"
#include "server/server_context.h"

namespace epserve {

namespace {

// This node's ranks: the serve command re-executed once per rank, told where the frontend is.
LaunchOptions rank_launch(const ServerArgs& args, const std::string& ipc_base) {
  LaunchOptions launch;
  launch.world_size = args.parallel.world_size();
  launch.nnodes = args.parallel.nnodes;
  launch.node_rank = args.parallel.node_rank;
  launch.dist_init_addr = args.parallel.dist_init_addr;
  launch.args = args.argv;
  launch.extra_env.emplace_back(kEnvIpcBase, ipc_base);
  return launch;
}

ModelInfo read_model_info(const ServerArgs& args) {
  ModelConfig config = load_model_config(args.model_path);
  ModelInfo m;
  m.model_path = args.model_path;
  m.served_model_name = args.served_model_name;
  m.architecture = config.architecture;
  m.model_type = config.model_type;
  m.vocab_size = config.vocab_size;
  for (int id : config.eos_token_ids) m.eos_token_ids.push_back(id);
  m.context_length = config.max_position_embeddings;
  if (args.context_length > 0) {
    EPS_CHECK(config.max_position_embeddings <= 0 ||
                  args.context_length <= config.max_position_embeddings,
              "--context-length {} is longer than the model's max_position_embeddings {} ({})",
              args.context_length, config.max_position_embeddings, config.source);
    m.context_length = args.context_length;
  }
  EPS_CHECK(m.context_length > 1, "the model's context length is {} ({}); give --context-length",
            m.context_length, config.source);
  m.created = std::chrono::duration_cast<std::chrono::seconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count();
  return m;
}

std::string read_file(const std::string& path, const char* flag) {
  std::ifstream f(path, std::ios::binary);
  EPS_CHECK(f.good(), "{}: cannot read {}", flag, path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void load_chat_template(const ServerArgs& args, ServerContext& ctx) {
  try {
    if (!args.chat_template.empty()) {
      nlohmann::json config = nlohmann::json::object();
      std::string config_path = args.tokenizer_path + "/tokenizer_config.json";
      if (std::ifstream(config_path).good()) {
        config = nlohmann::json::parse(read_file(config_path, "--tokenizer-path"));
      }
      ctx.chat_template = tokenizer::ChatTemplate::from_source(
          read_file(args.chat_template, "--chat-template"), config, args.chat_template);
    } else {
      ctx.chat_template = tokenizer::ChatTemplate::load(
          args.tokenizer_path,
          args.hf_chat_template_name.empty() ? "default" : args.hf_chat_template_name);
    }
  } catch (const Error& e) {
    // A broken template the user named is an error; a model without one only loses chat.
    if (!args.chat_template.empty() || !args.hf_chat_template_name.empty()) throw;
    ctx.chat_template_error = e.what();
    spdlog::warn("no chat template ({}); /v1/chat/completions will answer 400", e.what());
  }
}

// Loading progress as ranks report it: on a terminal a bar redrawn in place ("loading weights
// [#####.....] 12/40"); otherwise one plain line per quarter, so a log file gets a few lines.
class ProgressPrinter {
 public:
  void operator()(int dp_rank, const nlohmann::json& status) {
    if (!status.is_object() || !status.contains("load_progress")) return;
    const auto& p = status["load_progress"];
    int64_t done = p.value("done", 0), total = std::max<int64_t>(p.value("total", 1), 1);
    if (!tty_) {
      int64_t quarter = std::min<int64_t>(4, 4 * done / total);
      auto [it, fresh] = printed_quarter_.try_emplace(dp_rank, -1);
      if (quarter <= it->second) return;
      it->second = quarter;
      std::fprintf(stderr, "epserve serve: loading weights (group %d): %lld/%lld layers\n", dp_rank,
                   static_cast<long long>(done), static_cast<long long>(total));
      return;
    }
    int width = 30, filled = static_cast<int>(width * done / total);
    std::fprintf(stderr, "\rloading weights (group %d) [%s%s] %lld/%lld%s", dp_rank,
                 std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(),
                 static_cast<long long>(done), static_cast<long long>(total),
                 done >= total ? "\n" : "");
    std::fflush(stderr);
  }

 private:
  bool tty_ = isatty(STDERR_FILENO) != 0;
  std::map<int, int64_t> printed_quarter_;  // by DP group
};

// Tells /health which ranks stopped answering, with one line each time one stops or resumes.
std::function<void(const std::vector<SilentPeer>&)> report_silent_ranks(Frontend& frontend) {
  return [&frontend,
          previous = std::vector<std::string>()](const std::vector<SilentPeer>& silent) mutable {
    std::vector<std::string> labels;
    for (const SilentPeer& s : silent) {
      labels.push_back(s.label);
      if (std::find(previous.begin(), previous.end(), s.label) == previous.end()) {
        std::fprintf(stderr,
                     "epserve serve: %s has not answered for %.0f s (stopped, frozen or "
                     "unreachable); /health "
                     "answers 503\n",
                     s.label.c_str(), s.seconds);
      }
    }
    for (const std::string& label : previous) {
      if (std::find(labels.begin(), labels.end(), label) == labels.end()) {
        std::fprintf(stderr, "epserve serve: %s answers again\n", label.c_str());
      }
    }
    std::fflush(stderr);
    previous = labels;
    frontend.set_silent_ranks(std::move(labels));
  };
}

void print_layout(const ServerArgs& a, const ModelConfig& config) {
  const ParallelOptions& p = a.parallel;
  int experts = config.moe.num_experts + p.ep_num_redundant_experts;
  std::fprintf(stderr,
               "epserve serve: %s (%s), %d rank%s: tp %d, ep %d, dp %d%s; %d routed experts "
               "(+%d redundant) -> %d per rank\n",
               a.model_path.c_str(), config.architecture.c_str(), p.world_size(),
               p.world_size() == 1 ? "" : "s", p.tp_size, p.ep_size, p.dp_size,
               p.enable_dp_attention ? " (DP attention)" : "", config.moe.num_experts,
               p.ep_num_redundant_experts, experts / std::max(p.ep_size, 1));
  for (const std::string& note : p.notes) {
    std::fprintf(stderr, "epserve serve: %s\n", note.c_str());
  }
}

}  // namespace

sigset_t block_stop_signals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  return signals;
}

int run_server(const ServerArgs& args, const ServerServiceFactory& make_service) {
  set_log_level(args.log_level);
  use_sglang_log_format("");
  check_supported(args);
  ModelConfig config = load_model_config(args.model_path);
  resolve_quantization_flag(config.quant, args.parallel.quantization);
  if (config.quant.quantized()) {
    std::fprintf(stderr, "epserve serve: quantization %s (weights kept quantized in memory)\n",
                 config.quant.describe().c_str());
  }
  print_layout(args, config);
  const ParallelOptions& layout = args.parallel;
  if (layout.node_rank > 0) {
    // Another node of a multi-node server: the frontend and the HTTP server run on node 0; this
    // node's ranks follow their groups' leaders (with DP attention some lead groups themselves,
    // reaching the frontend over tcp://); this process only starts and supervises them.
    const int per_node = layout.world_size() / layout.nnodes;
    const int first = layout.node_rank * per_node, last = first + per_node - 1;
    std::string leads;
    const int groups = layout.attention_groups(), per_group = layout.world_size() / groups;
    for (int g = 0; g < groups; ++g) {
      if (g * per_group >= first && g * per_group <= last) {
        leads += (leads.empty() ? " (leads DP group " : ", ") + std::to_string(g);
      }
    }
    if (!leads.empty()) leads += ")";
    std::fprintf(stderr, "epserve serve: node %d of %d: ranks %d-%d%s; the server runs on node 0\n",
                 layout.node_rank, layout.nnodes, first, last, leads.c_str());
    return run_launcher(rank_launch(args, "ipc:///tmp/epserve-" + std::to_string(getpid())));
  }

  const sigset_t signals = block_stop_signals();

  Metrics metrics(args.served_model_name);
  FrontendOptions frontend_options;
  frontend_options.ipc_base = "ipc:///tmp/epserve-" + std::to_string(getpid());
  // Group leaders on other nodes reach the frontend over tcp:// at the address this node uses for
  // the job (--dist-init-addr), secured with the job's secret (runtime/control_plane.h).
  const std::string job_secret = job_store_secret(layout.nnodes);
  if (control_plane_over_tcp(layout)) {
    frontend_options.tcp_bind = control_plane_tcp_bind(layout.dist_init_addr);
    frontend_options.job_secret = job_secret;
  }
  frontend_options.num_dp_groups = args.parallel.attention_groups();
  frontend_options.load_balance_method = args.load_balance_method;
  Frontend frontend(frontend_options, &metrics);
  if (args.random_seed_set)
    frontend.seed_random(args.random_seed);
  else
    frontend.seed_random(std::random_device{}());
  ServerContext ctx{args,
                    read_model_info(args),
                    tokenizer::Tokenizer::load(args.tokenizer_path),
                    std::nullopt,
                    "",
                    frontend,
                    metrics};
  load_chat_template(args, ctx);
  ctx.vision = load_vision_info(args.model_path);
  if (ctx.vision) ctx.vision->sizes_only = args.disaggregation_mode == "decode";
  ctx.media_policy.allowed_local_media_path = args.allowed_local_media_path;
  EPS_CHECK(args.allowed_local_media_path.empty() ||
                std::filesystem::is_directory(args.allowed_local_media_path),
            "--allowed-local-media-path {} is not a directory", args.allowed_local_media_path);

  HttpServerOptions http_options;
  http_options.host = args.host;
  http_options.port = args.port;
  http_options.max_body_bytes = static_cast<size_t>(args.http_max_body_bytes);
  // One line per request with --log-level-http info or debug, or --log-level debug; at the
  // default level the log has SGLang's batch lines only.
  const std::string& http_level =
      args.log_level_http.empty() ? args.log_level : args.log_level_http;
  http_options.access_log = http_level == "debug" || args.log_level_http == "info";
  // Every open stream holds a thread; room for twice the running batch.
  http_options.threads = static_cast<size_t>(std::max(256, 2 * args.max_running_requests));
  HttpServer http(http_options);
  register_routes(http, ctx);
  if (args.disaggregation_mode == "prefill") {
    // A request refused before it reached a scheduler: its decode server learns it at once.
    http.set_error_observer(
        [&frontend](const HttpRequest& req, int status, const std::string& msg) {
          nlohmann::json body = nlohmann::json::parse(req.body, nullptr, false);
          if (body.is_object() && body.contains("bootstrap_room") &&
              body["bootstrap_room"].is_number_integer()) {
            frontend.fail_room(body["bootstrap_room"].get<int64_t>(), status, msg);
          }
        });
  }
  http.bind();  // fail before loading anything when the port is taken

  frontend.set_status_callback(ProgressPrinter());
  frontend.start();
  std::unique_ptr<ServerService> service = make_service ? make_service(ctx) : nullptr;

  // The ranks: started and supervised by the launcher on its own thread. SIGINT/SIGTERM stay
  // blocked there too, so they reach only the loop below, which stops the ranks in order.
  LaunchOptions launch = rank_launch(args, frontend_options.ipc_base);
  launch.on_silent_ranks = report_silent_ranks(frontend);
  launch.store_secret = job_secret;
  if (control_plane_over_tcp(layout)) {
    launch.store_values.emplace_back(kControlPlaneKey, frontend.tcp_endpoints().to_json());
  }
  std::atomic<int> launcher_status{-1};
  std::thread launcher([&launch, &launcher_status] {
    int status = 1;
    try {
      status = run_launcher(launch);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "epserve: error: %s\n", e.what());
    }
    launcher_status = status;
  });
  std::thread http_thread([&http] { http.serve(); });
  std::fprintf(stderr, "epserve serve: listening on http://%s:%d (loading the model)\n",
               args.host.c_str(), http.port());

  int exit_code = 0;
  bool announced = false;
  while (true) {
    timespec tick{0, 100 * 1000 * 1000};
    int sig = sigtimedwait(&signals, nullptr, &tick);
    if (sig == SIGINT || sig == SIGTERM) {
      std::fprintf(stderr, "\nepserve serve: %s, shutting down\n",
                   sig == SIGINT ? "interrupted" : "terminated");
      break;
    }
    if (launcher_status >= 0) {
      std::fprintf(stderr, "epserve: error: the ranks stopped; stopping the server\n");
      exit_code = 1;
      break;
    }
    if (!announced && frontend.ready()) {
      announced = true;
      for (const auto& s : frontend.scheduler_info()) {
        const nlohmann::json& r = s.result;
        std::fprintf(stderr,
                     "epserve serve: DP group %d ready: KV cache %lld tokens (%lld pages of %lld), "
                     "context length %lld\n",
                     r.value("dp_rank", 0),
                     static_cast<long long>(r.value("max_total_num_tokens", 0)),
                     static_cast<long long>(r.value("kv_pages", 0)),
                     static_cast<long long>(r.value("page_size", 0)),
                     static_cast<long long>(r.value("context_length", 0)));
      }
      std::fprintf(stderr, "epserve serve: ready on http://%s:%d\n", args.host.c_str(),
                   http.port());
    }
  }
  service.reset();
  frontend.shutdown();  // aborts running requests and tells the schedulers to stop
  http.stop();
  http_thread.join();
  // The ranks leave by themselves after the shutdown message; one that does not is killed with
  // this process (PR_SET_PDEATHSIG).
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (launcher_status < 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (launcher_status < 0) {
    std::fprintf(stderr, "epserve: error: the ranks did not stop within 20 s; killing them\n");
    std::fflush(stderr);
    _exit(1);
  }
  launcher.join();
  return exit_code != 0 ? exit_code : (launcher_status == 0 ? 0 : 1);
}

}  // namespace epserve
