#include "server/server_args.h"

#include "core/error.h"

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
  sub.add_flag("--enable-metrics", a.enable_metrics, "Accepted; /metrics is always served");
  sub.add_flag("--enable-cache-report", a.enable_cache_report,
               "Report cached prompt tokens in OpenAI usage");
  sub.add_flag("--skip-server-warmup", a.skip_server_warmup, "Skip the warm-up request");

  // Parallel layout
  sub.add_option("--tp-size,--tp,--tensor-parallel-size", a.tp_size, "Ranks (world size)");
  sub.add_option("--ep-size,--ep,--expert-parallel-size", a.ep_size, "Expert-parallel size");
  sub.add_option("--dp-size,--dp,--data-parallel-size", a.dp_size,
                 "Attention data-parallel groups (with --enable-dp-attention)");
  sub.add_flag("--enable-dp-attention", a.enable_dp_attention, "Data-parallel attention");
  sub.add_option("--moe-dense-tp-size", a.moe_dense_tp_size, "TP size of dense MLP layers");
  sub.add_flag("--enable-dp-lm-head", a.enable_dp_lm_head, "Vocab-parallel LM head per group");
  sub.add_option("--load-balance-method", a.load_balance_method,
                 "round_robin, total_requests or total_tokens");
  sub.add_option("--moe-a2a-backend", a.moe_a2a_backend, "none or deepep");
  sub.add_option("--deepep-mode", a.deepep_mode, "auto, normal or low_latency");
  sub.add_flag("--enable-two-batch-overlap", a.enable_two_batch_overlap, "Two-batch overlap");
  sub.add_option("--tbo-token-distribution-threshold", a.tbo_token_distribution_threshold);
  sub.add_option("--nnodes", a.nnodes, "Nodes");
  sub.add_option("--node-rank", a.node_rank, "This node's index");
  sub.add_option("--dist-init-addr,--nccl-init-addr", a.dist_init_addr,
                 "HOST:PORT of the rendezvous store on node 0");
  sub.add_option("--dist-timeout", a.dist_timeout,
                 "Seconds a rank waits for the others before giving up");

  // Experts
  sub.add_flag("--enable-eplb", a.enable_eplb, "Periodic expert rebalancing");
  sub.add_option("--eplb-algorithm", a.eplb_algorithm, "auto, deepseek, ...");
  sub.add_option("--eplb-rebalance-num-iterations", a.eplb_rebalance_num_iterations);
  sub.add_option("--eplb-rebalance-layers-per-chunk", a.eplb_rebalance_layers_per_chunk);
  sub.add_option("--ep-num-redundant-experts", a.ep_num_redundant_experts);
  sub.add_option("--ep-dispatch-algorithm", a.ep_dispatch_algorithm, "static, dynamic or fake");
  sub.add_option("--init-expert-location", a.init_expert_location);
  sub.add_option("--expert-distribution-recorder-mode", a.expert_distribution_recorder_mode,
                 "stat, stat_approx, per_pass or per_token");
  sub.add_option("--expert-distribution-recorder-buffer-size",
                 a.expert_distribution_recorder_buffer_size);
  sub.add_flag("--enable-expert-distribution-metrics", a.enable_expert_distribution_metrics);
  sub.add_option("--expert-distribution-recorder-dir", a.expert_distribution_recorder_dir,
                 "Folder of the dumps (default: $EPSERVE_EXPERT_DISTRIBUTION_RECORDER_DIR, "
                 "$SGLANG_EXPERT_DISTRIBUTION_RECORDER_DIR, /tmp)");
  sub.add_option("--expert-distribution-recorder-format", a.expert_distribution_recorder_format,
                 "json, pt (torch.load) or both");

  // PD disaggregation
  sub.add_option("--disaggregation-mode", a.disaggregation_mode, "null, prefill or decode");
  sub.add_option("--disaggregation-bootstrap-port", a.disaggregation_bootstrap_port);

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
  EPS_CHECK(a.port >= 1 && a.port <= 65535, "--port {} is not a TCP port (1..65535)", a.port);
  EPS_CHECK(!a.host.empty(), "--host is empty");
  EPS_CHECK(a.context_length >= 0, "--context-length {} is negative", a.context_length);

  // Parallel layout: W = --tp-size, or the largest of --ep-size and --dp-size.
  EPS_CHECK(a.tp_size >= 0 && a.ep_size >= 1 && a.dp_size >= 0,
            "--tp-size, --ep-size and --dp-size must be positive");
  EPS_CHECK(a.nnodes >= 1, "--nnodes {} must be at least 1", a.nnodes);
  EPS_CHECK(a.node_rank >= 0 && a.node_rank < a.nnodes,
            "--node-rank {} is outside 0..{} (--nnodes {})", a.node_rank, a.nnodes - 1, a.nnodes);
  check_choice("--moe-a2a-backend", a.moe_a2a_backend, {"none", "deepep"});
  if (a.tp_size == 0) a.tp_size = std::max(a.ep_size, std::max(a.dp_size, 1));
  a.world_size = a.tp_size;
  if (a.moe_a2a_backend == "deepep" && a.ep_size != a.tp_size) {
    // SGLang does the same: the DeepEP dispatcher spreads experts over all ranks.
    a.ep_size = a.tp_size;
  }
  EPS_CHECK(a.world_size % a.ep_size == 0, "--ep-size {} must divide the world size {} (--tp-size)",
            a.ep_size, a.world_size);
  EPS_CHECK(a.world_size % a.nnodes == 0,
            "the world size {} (--tp-size) must be a multiple of --nnodes {}", a.world_size,
            a.nnodes);
  EPS_CHECK(a.dist_timeout > 0, "--dist-timeout {} must be positive", a.dist_timeout);
  EPS_CHECK(a.nnodes == 1 || !a.dist_init_addr.empty(),
            "--nnodes {} needs --dist-init-addr HOST:PORT (node 0's address)", a.nnodes);
  a.dp_size_implied = false;
  if (a.enable_dp_attention && a.dp_size == 0) {
    a.dp_size = a.world_size;
    a.dp_size_implied = true;
  }
  if (a.dp_size == 0) a.dp_size = 1;
  if (a.enable_dp_attention && a.dp_size == 1) a.enable_dp_attention = false;  // as SGLang
  if (a.enable_dp_attention) {
    EPS_CHECK(a.world_size % a.dp_size == 0,
              "--enable-dp-attention needs --tp-size ({}) divisible by --dp-size ({})",
              a.world_size, a.dp_size);
  } else {
    EPS_CHECK(a.dp_size == 1,
              "--dp-size {} without --enable-dp-attention asks for SGLang's plain data "
              "parallelism (independent model copies), which epserve does not implement yet; "
              "add --enable-dp-attention for attention groups inside one model",
              a.dp_size);
  }
  a.num_dp_groups = a.enable_dp_attention ? a.dp_size : 1;
  EPS_CHECK(!a.enable_dp_lm_head || a.enable_dp_attention,
            "--enable-dp-lm-head needs --enable-dp-attention");
  if (a.moe_dense_tp_size != 0) {
    EPS_CHECK(a.moe_dense_tp_size >= 1 && a.world_size % a.moe_dense_tp_size == 0,
              "--moe-dense-tp-size {} must divide the world size {}", a.moe_dense_tp_size,
              a.world_size);
  }
  check_choice("--load-balance-method", a.load_balance_method,
               {"auto", "round_robin", "total_requests", "total_tokens"});
  if (a.load_balance_method == "auto") a.load_balance_method = "round_robin";
  check_choice("--deepep-mode", a.deepep_mode, {"auto", "normal", "low_latency"});
  EPS_CHECK(a.tbo_token_distribution_threshold >= 0 && a.tbo_token_distribution_threshold <= 0.5,
            "--tbo-token-distribution-threshold {} is outside [0, 0.5]",
            a.tbo_token_distribution_threshold);

  // Experts
  EPS_CHECK(!a.enable_eplb || a.ep_size > 1, "--enable-eplb needs --ep-size greater than 1");
  check_choice("--eplb-algorithm", a.eplb_algorithm,
               {"auto", "deepseek", "deepseek_hierarchical", "deepseek_global", "minmax",
                "minmax_hierarchical", "minmax_global"});
  EPS_CHECK(a.eplb_rebalance_num_iterations >= 1,
            "--eplb-rebalance-num-iterations {} must be at least 1",
            a.eplb_rebalance_num_iterations);
  EPS_CHECK(a.eplb_rebalance_layers_per_chunk >= 0,
            "--eplb-rebalance-layers-per-chunk {} is negative", a.eplb_rebalance_layers_per_chunk);
  EPS_CHECK(a.ep_num_redundant_experts >= 0, "--ep-num-redundant-experts {} is negative",
            a.ep_num_redundant_experts);
  EPS_CHECK(a.ep_num_redundant_experts == 0 || a.ep_size > 1,
            "--ep-num-redundant-experts needs --ep-size greater than 1");
  if ((a.enable_eplb || a.enable_expert_distribution_metrics) &&
      a.expert_distribution_recorder_mode.empty()) {
    a.expert_distribution_recorder_mode = "stat";
  }
  if (!a.expert_distribution_recorder_mode.empty()) {
    check_choice("--expert-distribution-recorder-mode", a.expert_distribution_recorder_mode,
                 {"stat", "stat_approx", "per_pass", "per_token"});
  }
  if (a.expert_distribution_recorder_buffer_size == 0) {
    a.expert_distribution_recorder_buffer_size = a.eplb_rebalance_num_iterations;
  }
  EPS_CHECK(a.expert_distribution_recorder_buffer_size >= -1,
            "--expert-distribution-recorder-buffer-size {} must be -1 (unbounded) or positive",
            a.expert_distribution_recorder_buffer_size);
  check_choice("--expert-distribution-recorder-format", a.expert_distribution_recorder_format,
               {"json", "pt", "both"});
  if (a.ep_dispatch_algorithm.empty() && (a.enable_eplb || a.init_expert_location != "trivial")) {
    a.ep_dispatch_algorithm = "static";
  }
  if (!a.ep_dispatch_algorithm.empty()) {
    check_choice("--ep-dispatch-algorithm", a.ep_dispatch_algorithm, {"static", "dynamic", "fake"});
  }

  // Disaggregation
  check_choice("--disaggregation-mode", a.disaggregation_mode, {"null", "prefill", "decode"});
  EPS_CHECK(a.disaggregation_bootstrap_port >= 1 && a.disaggregation_bootstrap_port <= 65535,
            "--disaggregation-bootstrap-port {} is not a TCP port",
            a.disaggregation_bootstrap_port);

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
  return nlohmann::json{
      {"model_path", a.model_path},
      {"tokenizer_path", a.tokenizer_path},
      {"trust_remote_code", a.trust_remote_code},
      {"context_length",
       a.context_length == 0 ? nlohmann::json() : nlohmann::json(a.context_length)},
      {"chat_template",
       a.chat_template.empty() ? nlohmann::json() : nlohmann::json(a.chat_template)},
      {"served_model_name", a.served_model_name},
      {"device", a.device},
      {"dtype", a.dtype},
      {"random_seed", a.random_seed_set ? nlohmann::json(a.random_seed) : nlohmann::json()},
      {"host", a.host},
      {"port", a.port},
      {"api_key_set", !a.api_key.empty()},
      {"log_level", a.log_level},
      {"enable_cache_report", a.enable_cache_report},
      {"tp_size", a.tp_size},
      {"ep_size", a.ep_size},
      {"dp_size", a.dp_size},
      {"enable_dp_attention", a.enable_dp_attention},
      {"moe_dense_tp_size",
       a.moe_dense_tp_size == 0 ? nlohmann::json() : nlohmann::json(a.moe_dense_tp_size)},
      {"enable_dp_lm_head", a.enable_dp_lm_head},
      {"load_balance_method", a.load_balance_method},
      {"moe_a2a_backend", a.moe_a2a_backend},
      {"deepep_mode", a.deepep_mode},
      {"enable_two_batch_overlap", a.enable_two_batch_overlap},
      {"tbo_token_distribution_threshold", a.tbo_token_distribution_threshold},
      {"nnodes", a.nnodes},
      {"node_rank", a.node_rank},
      {"dist_init_addr",
       a.dist_init_addr.empty() ? nlohmann::json() : nlohmann::json(a.dist_init_addr)},
      {"enable_eplb", a.enable_eplb},
      {"eplb_algorithm", a.eplb_algorithm},
      {"eplb_rebalance_num_iterations", a.eplb_rebalance_num_iterations},
      {"eplb_rebalance_layers_per_chunk", a.eplb_rebalance_layers_per_chunk == 0
                                              ? nlohmann::json()
                                              : nlohmann::json(a.eplb_rebalance_layers_per_chunk)},
      {"ep_num_redundant_experts", a.ep_num_redundant_experts},
      {"ep_dispatch_algorithm", a.ep_dispatch_algorithm.empty()
                                    ? nlohmann::json()
                                    : nlohmann::json(a.ep_dispatch_algorithm)},
      {"init_expert_location", a.init_expert_location},
      {"expert_distribution_recorder_mode",
       a.expert_distribution_recorder_mode.empty()
           ? nlohmann::json()
           : nlohmann::json(a.expert_distribution_recorder_mode)},
      {"expert_distribution_recorder_buffer_size", a.expert_distribution_recorder_buffer_size},
      {"enable_expert_distribution_metrics", a.enable_expert_distribution_metrics},
      {"expert_distribution_recorder_dir",
       a.expert_distribution_recorder_dir.empty()
           ? nlohmann::json()
           : nlohmann::json(a.expert_distribution_recorder_dir)},
      {"expert_distribution_recorder_format", a.expert_distribution_recorder_format},
      {"disaggregation_mode", a.disaggregation_mode},
      {"disaggregation_bootstrap_port", a.disaggregation_bootstrap_port},
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
      {"world_size", a.world_size},
  };
}

}  // namespace epserve
