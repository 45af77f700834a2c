// The flags of `epserve serve`: SGLang's names and meanings (python3 -m sglang.launch_server),
// parsed by CLI11, checked for the consistency rules SGLang enforces, and resolved into the
// numbers the frontend and the rank processes need (world size, DP groups). Every process of a
// server (the frontend and each rank, re-executed with the same argv) parses the same flags into
// one ServerArgs.
//
// Sizing flags whose SGLang default is "automatic" use 0 here for "the runtime decides"
// (chunked_prefill_size: -1 disables chunking, as in SGLang).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

namespace epserve {

struct ServerArgs {
  // Model and tokenizer
  std::string model_path;
  std::string tokenizer_path;  // default: model_path
  bool trust_remote_code = false;
  int64_t context_length = 0;  // 0: the model's max_position_embeddings
  std::string chat_template;   // a Jinja file; default: the tokenizer's own template
  std::string hf_chat_template_name;
  std::string served_model_name;  // default: model_path
  std::string device = "cpu";
  std::string dtype = "auto";
  std::string load_format = "auto";
  std::string revision;
  uint64_t random_seed = 0;
  bool random_seed_set = false;

  // HTTP server
  std::string host = "127.0.0.1";
  int port = 30000;
  std::string api_key;
  std::string log_level = "info";
  std::string log_level_http;
  bool enable_metrics = false;       // /metrics is always served; accepted for compatibility
  bool enable_cache_report = false;  // usage.prompt_tokens_details.cached_tokens in OpenAI replies
  bool skip_server_warmup = false;
  int64_t http_max_body_bytes = 8 << 20;  // epserve's own: larger bodies get 413

  // Parallel layout (DESIGN.md "Processes")
  int tp_size = 0;  // 0: absent; W = max(ep_size, dp_size) then
  int ep_size = 1;
  int dp_size = 0;  // 0: absent
  bool enable_dp_attention = false;
  int moe_dense_tp_size = 0;  // 0: absent
  bool enable_dp_lm_head = false;
  std::string load_balance_method = "round_robin";
  std::string moe_a2a_backend = "none";
  std::string deepep_mode = "auto";
  bool enable_two_batch_overlap = false;
  double tbo_token_distribution_threshold = 0.48;
  int nnodes = 1;
  int node_rank = 0;
  std::string dist_init_addr;
  int dist_timeout = 60;  // seconds a rank waits for another (SGLang's default: none)

  // Expert placement and load balancing
  bool enable_eplb = false;
  std::string eplb_algorithm = "auto";
  int64_t eplb_rebalance_num_iterations = 1000;
  int eplb_rebalance_layers_per_chunk = 0;  // 0: all layers at once
  int ep_num_redundant_experts = 0;
  std::string ep_dispatch_algorithm;  // empty: static when EPLB or a non-trivial init location
  std::string init_expert_location = "trivial";
  std::string expert_distribution_recorder_mode;         // empty: none
  int64_t expert_distribution_recorder_buffer_size = 0;  // 0: eplb_rebalance_num_iterations
  bool enable_expert_distribution_metrics = false;

  // PD disaggregation
  std::string disaggregation_mode = "null";
  int disaggregation_bootstrap_port = 8998;

  // Scheduler and KV cache sizing
  int max_running_requests = 0;
  int64_t max_total_tokens = 0;
  double mem_fraction_static = 0;
  int64_t chunked_prefill_size = 0;
  int page_size = 0;
  bool disable_radix_cache = false;

  // Resolved by resolve_server_args().
  int world_size = 1;
  int num_dp_groups = 1;         // schedulers: dp_size with DP attention, else 1
  bool dp_size_implied = false;  // --enable-dp-attention without --dp-size took dp = W

  // The flags as given (for /get_server_info and the rank processes' logs).
  std::vector<std::string> argv;
};

// Adds the flags to the `serve` subcommand. SGLang flags that epserve does not implement are not
// registered; `sub` must allow extras so that they reach check_unimplemented_flags().
void add_server_args(CLI::App& sub, ServerArgs& args);

// Throws epserve::Error naming the first argument that is an SGLang flag epserve does not
// implement yet, or that is no flag at all.
void check_unknown_flags(const std::vector<std::string>& extras);

// Checks the values and the rules between them (SGLang's), and fills the resolved fields.
// Throws epserve::Error with one line naming the flag and what to change.
void resolve_server_args(ServerArgs& args);

// Throws epserve::Error when the flags ask for something this build cannot run yet (a valid
// SGLang setting whose implementation has not landed). Kept apart from resolve_server_args so
// the list shrinks as features land (server_args_support.cpp).
void check_supported(const ServerArgs& args);

// True for the long flag names (without "--") of SGLang's launch_server that epserve does not
// implement.
bool is_unimplemented_sglang_flag(const std::string& name);

nlohmann::json server_args_to_json(const ServerArgs& args);

}  // namespace epserve
