#include "server/server_args.h"

#include <filesystem>
#include <sstream>

#include "core/error.h"
#include "runtime/kv_transfer.h"
#include "server/parallel_flags.h"

namespace epserve {

namespace {

bool one_of(const std::string& value, std::initializer_list<const char*> choices) {
  for (const char* c : choices) {
    if (value == c) return true;
  }
  return false;
}

std::string joined(std::initializer_list<const char*> choices) {
  std::string out;
  for (const char* c : choices) {
    if (!out.empty()) out += ", ";
    out += c;
  }
  return out;
}

void check_choice(const char* flag, const std::string& value,
                  std::initializer_list<const char*> choices) {
  EPS_CHECK(one_of(value, choices), "{} '{}' is not one of: {}", flag, value, joined(choices));
}

}  // namespace

void add_server_args(CLI::App& sub, ServerArgs& a) {
  // Model and tokenizer
  sub.add_option("--model-path,--model", a.model_path, "Hugging Face model directory")->required();
  sub.add_option("--tokenizer-path", a.tokenizer_path, "Tokenizer directory (default: the model)");
  sub.add_flag("--trust-remote-code", a.trust_remote_code,
               "Accepted; tokenizers are read natively, no model code is run");
  sub.add_option("--context-length", a.context_length,
                 "Maximum tokens per sequence (default: max_position_embeddings)");
  sub.add_option("--chat-template", a.chat_template, "A Jinja chat template file");
  sub.add_option("--hf-chat-template-name", a.hf_chat_template_name,
                 "Which named template of tokenizer_config.json to use");
  sub.add_flag("--enable-multimodal", a.enable_multimodal,
               "Accepted: as SGLang's default, a model with a vision_config takes images and "
               "another model is unchanged");
  sub.add_option("--allowed-local-media-path", a.allowed_local_media_path,
                 "Directory whose image files requests may name (as vLLM's flag; SGLang has "
                 "none); default: local files refused");
  sub.add_option("--served-model-name", a.served_model_name,
                 "Model name in the OpenAI API (default: --model-path)");
  sub.add_option("--device", a.device, "cpu");
  sub.add_option("--dtype", a.dtype, "auto (the checkpoint's dtype)");
  sub.add_option("--load-format", a.load_format, "auto or safetensors");
  sub.add_option("--revision", a.revision, "Accepted only empty: models are local directories");
  sub.add_option("--random-seed", a.random_seed, "Seed for requests that give none")
      ->each([&a](const std::string&) { a.random_seed_set = true; });

  // HTTP server
  sub.add_option("--host", a.host, "Address to listen on");
  sub.add_option("--port", a.port, "HTTP port");
  sub.add_option("--api-key", a.api_key,
                 "Require 'Authorization: Bearer KEY' on every route "
                 "but /health");
  sub.add_option("--log-level", a.log_level, "debug, info, warning, error or critical");
  sub.add_option("--log-level-http", a.log_level_http, "Level of the per-request HTTP log");
  sub.add_option("--decode-log-interval", a.decode_log_interval,
                 "Log a 'Decode batch' line every this many decode batches");
  sub.add_flag("--enable-metrics", a.enable_metrics, "Accepted; /metrics is always served");
  sub.add_flag("--enable-cache-report", a.enable_cache_report,
               "Report cached prompt tokens in OpenAI usage");
  sub.add_flag("--skip-server-warmup", a.skip_server_warmup, "Skip the warm-up request");

  // Parallel layout and experts (the table every command shares)
  add_parallel_flags(sub, a.parallel);
  add_expert_flags(sub, a.experts, RecorderDump::kServed);
  sub.add_option("--load-balance-method", a.load_balance_method,
                 "round_robin, total_requests or total_tokens");

  // PD disaggregation
  sub.add_option("--disaggregation-mode", a.disaggregation_mode, "null, prefill or decode");
  sub.add_option("--disaggregation-bootstrap-port", a.disaggregation_bootstrap_port);
  sub.add_option("--disaggregation-transfer-backend", a.disaggregation_transfer_backend,
                 "KV transfer: UCX (nixl); mooncake and the others are not available");
  sub.add_option("--disaggregation-ib-device", a.disaggregation_ib_device,
                 "Devices for the KV transfer (UCX_NET_DEVICES), e.g. mlx5_0 or mlx5_0,mlx5_1");

  // Scheduler and KV cache
  sub.add_option("--max-running-requests", a.max_running_requests);
  sub.add_option("--max-total-tokens", a.max_total_tokens, "KV cache size in tokens");
  sub.add_option("--mem-fraction-static", a.mem_fraction_static,
                 "Fraction of memory for weights and KV cache");
  sub.add_option("--chunked-prefill-size", a.chunked_prefill_size, "-1 disables chunking");
  sub.add_option("--page-size", a.page_size, "Tokens per KV page");
  sub.add_flag("--disable-radix-cache", a.disable_radix_cache, "No prefix cache");

  add_ignored_sglang_flags(sub, a);
}

// --disaggregation-transfer-backend and --disaggregation-ib-device (docs/server.md).
static void resolve_transfer_flags(ServerArgs& a) {
  const std::string& backend = a.disaggregation_transfer_backend;
  EPS_CHECK(backend.empty() || backend == "nixl" || backend == "ucx",
            "--disaggregation-transfer-backend {}: epserve moves the KV cache with UCX (what "
            "SGLang's nixl backend runs on); leave the flag out or pass nixl",
            backend);
  a.ucx_net_devices.clear();
  std::stringstream devices(a.disaggregation_ib_device);
  std::string device;
  while (std::getline(devices, device, ',')) {
    if (device.empty()) continue;
    const std::string name = device.substr(0, device.find(':'));
    EPS_CHECK(std::filesystem::exists("/sys/class/infiniband/" + name) ||
                  std::filesystem::exists("/sys/class/net/" + name),
              "--disaggregation-ib-device {}: no RDMA device or network interface '{}' on this "
              "machine (see /sys/class/infiniband)",
              a.disaggregation_ib_device, name);
    // UCX names an RDMA device with its port (mlx5_0:1); SGLang names the device alone.
    bool rdma = std::filesystem::exists("/sys/class/infiniband/" + name);
    a.ucx_net_devices += (a.ucx_net_devices.empty() ? "" : ",") +
                         (rdma && device.find(':') == std::string::npos ? device + ":1" : device);
  }
  if (a.disaggregation_mode != "null") (void)DisaggTimeouts::from_env();  // refuse bad values now
}

void resolve_server_args(ServerArgs& a) {
  EPS_CHECK(!a.model_path.empty(), "--model-path is required");
  if (a.tokenizer_path.empty()) a.tokenizer_path = a.model_path;
  if (a.served_model_name.empty()) a.served_model_name = a.model_path;
  check_choice("--device", a.device, {"cpu", "cuda"});
  check_choice("--dtype", a.dtype, {"auto", "bfloat16"});
  check_choice("--load-format", a.load_format, {"auto", "safetensors"});
  EPS_CHECK(a.revision.empty(),
            "--revision: models are read from local directories; point --model-path at the "
            "revision you want");
  check_choice("--log-level", a.log_level, {"debug", "info", "warning", "error", "critical"});
  if (!a.log_level_http.empty()) {
    check_choice("--log-level-http", a.log_level_http,
                 {"debug", "info", "warning", "error", "critical"});
  }
  EPS_CHECK(a.decode_log_interval >= 1, "--decode-log-interval {} must be at least 1",
            a.decode_log_interval);
  EPS_CHECK(a.port >= 1 && a.port <= 65535, "--port {} is not a TCP port (1..65535)", a.port);
  EPS_CHECK(!a.host.empty(), "--host is empty");
  EPS_CHECK(a.context_length >= 0, "--context-length {} is negative", a.context_length);

  // Parallel layout and experts: the rules every command shares.
  a.parallel.resolve();
  a.experts.resolve(a.parallel);
  check_choice("--load-balance-method", a.load_balance_method,
               {"auto", "round_robin", "total_requests", "total_tokens"});
  if (a.load_balance_method == "auto") a.load_balance_method = "round_robin";

  // Disaggregation
  check_choice("--disaggregation-mode", a.disaggregation_mode, {"null", "prefill", "decode"});
  EPS_CHECK(a.disaggregation_bootstrap_port >= 1 && a.disaggregation_bootstrap_port <= 65535,
            "--disaggregation-bootstrap-port {} is not a TCP port",
            a.disaggregation_bootstrap_port);
  resolve_transfer_flags(a);

  // Sizing
  EPS_CHECK(a.max_running_requests >= 0, "--max-running-requests {} is negative",
            a.max_running_requests);
  EPS_CHECK(a.max_total_tokens >= 0, "--max-total-tokens {} is negative", a.max_total_tokens);
  EPS_CHECK(a.mem_fraction_static >= 0 && a.mem_fraction_static <= 1,
            "--mem-fraction-static {} is outside (0, 1]", a.mem_fraction_static);
  EPS_CHECK(a.chunked_prefill_size == -1 || a.chunked_prefill_size >= 0,
            "--chunked-prefill-size {} must be positive, or -1 to disable chunking",
            a.chunked_prefill_size);
  EPS_CHECK(a.page_size >= 0, "--page-size {} is negative", a.page_size);
}

nlohmann::json server_args_to_json(const ServerArgs& a) {
  const ParallelOptions& p = a.parallel;
  const ExpertRuntimeOptions& x = a.experts;
  return nlohmann::json{
      {"model_path", a.model_path},
      {"tokenizer_path", a.tokenizer_path},
      {"trust_remote_code", a.trust_remote_code},
      {"context_length",
       a.context_length == 0 ? nlohmann::json() : nlohmann::json(a.context_length)},
      {"chat_template",
       a.chat_template.empty() ? nlohmann::json() : nlohmann::json(a.chat_template)},
      {"served_model_name", a.served_model_name},
      {"allowed_local_media_path", a.allowed_local_media_path.empty()
                                       ? nlohmann::json()
                                       : nlohmann::json(a.allowed_local_media_path)},
      {"device", a.device},
      {"dtype", a.dtype},
      {"random_seed", a.random_seed_set ? nlohmann::json(a.random_seed) : nlohmann::json()},
      {"host", a.host},
      {"port", a.port},
      {"api_key_set", !a.api_key.empty()},
      {"log_level", a.log_level},
      {"decode_log_interval", a.decode_log_interval},
      {"enable_cache_report", a.enable_cache_report},
      {"tp_size", p.tp_size},
      {"ep_size", p.ep_size},
      {"dp_size", p.dp_size},
      {"enable_dp_attention", p.enable_dp_attention},
      {"moe_dense_tp_size",
       p.moe_dense_tp_size == 0 ? nlohmann::json() : nlohmann::json(p.moe_dense_tp_size)},
      {"enable_dp_lm_head", p.enable_dp_lm_head},
      {"load_balance_method", a.load_balance_method},
      {"moe_a2a_backend", p.moe_a2a_backend},
      {"deepep_mode", p.deepep_mode},
      {"enable_two_batch_overlap", p.enable_two_batch_overlap},
      {"tbo_token_distribution_threshold", p.tbo_token_distribution_threshold},
      {"nnodes", p.nnodes},
      {"node_rank", p.node_rank},
      {"dist_init_addr",
       p.dist_init_addr.empty() ? nlohmann::json() : nlohmann::json(p.dist_init_addr)},
      {"enable_eplb", x.enable_eplb},
      {"eplb_algorithm", x.eplb_algorithm},
      {"eplb_rebalance_num_iterations", x.eplb.rebalance_num_iterations},
      {"eplb_rebalance_layers_per_chunk",
       x.eplb.layers_per_chunk == 0 ? nlohmann::json() : nlohmann::json(x.eplb.layers_per_chunk)},
      {"ep_num_redundant_experts", p.ep_num_redundant_experts},
      {"ep_dispatch_algorithm", p.ep_dispatch_algorithm},
      {"init_expert_location", p.init_expert_location},
      {"expert_distribution_recorder_mode",
       x.recorder_mode.empty() ? nlohmann::json() : nlohmann::json(x.recorder_mode)},
      {"expert_distribution_recorder_buffer_size", x.recorder_buffer_size},
      {"enable_expert_distribution_metrics", x.enable_metrics},
      {"expert_distribution_recorder_dir",
       x.recorder_dir.empty() ? nlohmann::json() : nlohmann::json(x.recorder_dir)},
      {"expert_distribution_recorder_format", x.recorder_format},
      {"disaggregation_mode", a.disaggregation_mode},
      {"disaggregation_bootstrap_port", a.disaggregation_bootstrap_port},
      {"disaggregation_transfer_backend",
       a.disaggregation_transfer_backend.empty() ? "ucx" : a.disaggregation_transfer_backend},
      {"disaggregation_ib_device", a.disaggregation_ib_device},
      {"max_running_requests",
       a.max_running_requests == 0 ? nlohmann::json() : nlohmann::json(a.max_running_requests)},
      {"max_total_tokens",
       a.max_total_tokens == 0 ? nlohmann::json() : nlohmann::json(a.max_total_tokens)},
      {"mem_fraction_static",
       a.mem_fraction_static == 0 ? nlohmann::json() : nlohmann::json(a.mem_fraction_static)},
      {"chunked_prefill_size",
       a.chunked_prefill_size == 0 ? nlohmann::json() : nlohmann::json(a.chunked_prefill_size)},
      {"page_size", a.page_size == 0 ? nlohmann::json() : nlohmann::json(a.page_size)},
      {"disable_radix_cache", a.disable_radix_cache},
      {"world_size", p.world_size()},
  };
}

}  // namespace epserve
