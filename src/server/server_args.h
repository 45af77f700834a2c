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

#include "runtime/expert_options.h"
#include "runtime/parallel_options.h"

namespace epserve {

struct ServerArgs {
  // Model and tokenizer
  std::string model_path;
  std::string tokenizer_path;  // default: model_path
  bool trust_remote_code = false;
  int64_t context_length = 0;  // 0: the model's max_position_embeddings
  std::string chat_template;   // a Jinja file; default: the tokenizer's own template
  std::string hf_chat_template_name;
  std::string allowed_local_media_path;  // images may be read from files under it; empty: none
  bool enable_multimodal = false;        // SGLang's; images are taken whenever the model has vision
  std::string served_model_name;         // default: model_path
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
  int decode_log_interval = 40;  // scheduler's "Decode batch" line every this many decode batches
  bool enable_metrics = false;   // /metrics is always served; accepted for compatibility
  bool enable_cache_report = false;  // usage.prompt_tokens_details.cached_tokens in OpenAI replies
  bool skip_server_warmup = false;
  int64_t http_max_body_bytes = 8 << 20;  // epserve's own: larger bodies get 413

  // Parallel layout and experts: the table every command shares (server/parallel_flags.h).
  ParallelOptions parallel;
  ExpertRuntimeOptions experts;
  // Server-only layout flags.
  std::string load_balance_method = "round_robin";

  // PD disaggregation
  std::string disaggregation_mode = "null";
  int disaggregation_bootstrap_port = 8998;
  // SGLang's names: mooncake (its default), nixl, ascend, ... epserve moves KV over UCX, which is
  // what nixl runs on: "" (the flag left out), nixl or ucx; the others are refused.
  std::string disaggregation_transfer_backend;
  std::string disaggregation_ib_device;  // RDMA device(s), comma-separated (mlx5_0 or mlx5_0:1)
  std::string ucx_net_devices;           // resolved: UCX_NET_DEVICES for the KV transfer

  // Scheduler and KV cache sizing
  int max_running_requests = 0;
  int64_t max_total_tokens = 0;
  double mem_fraction_static = 0;
  int64_t chunked_prefill_size = 0;
  int page_size = 0;
  bool disable_radix_cache = false;

  // SGLang's GPU-only flags that were given ("--disable-cuda-graph", ...): accepted, ignored.
  std::vector<std::string> ignored_gpu_flags;

  // The flags as given (for /get_server_info and the rank processes' logs).
  std::vector<std::string> argv;
};

// Adds the flags to the `serve` subcommand, with SGLang's GPU-only flags (hidden; given, they are
// noted in ignored_gpu_flags). SGLang flags that epserve does not implement are not registered;
// `sub` must allow extras so that they reach check_unknown_flags().
void add_server_args(CLI::App& sub, ServerArgs& args);
// The GPU-only part of add_server_args() (sglang_flags.cpp).
void add_ignored_sglang_flags(CLI::App& sub, ServerArgs& args);

// Throws one epserve::Error naming every argument that is an SGLang flag epserve does not
// implement yet, that is no flag at all, or that is a stray value.
void check_unknown_flags(const std::vector<std::string>& extras);

// The one warning line for ignored_gpu_flags ("ignored on the CPU backend: ..."); empty if none.
std::string ignored_flags_warning(const ServerArgs& args);

// argparse's abbreviations, as SGLang's parser allows them: an argument "--PREFIX" or
// "--PREFIX=VALUE" that is not itself one of `names` (long flag names without "--") but the start
// of exactly one becomes that flag. The start of several is an error naming them all (argparse's
// "ambiguous option: --x could match --a, --b"). Arguments after "--" are left alone.
std::vector<std::string> expand_flag_abbreviations(std::vector<std::string> args,
                                                   const std::vector<std::string>& names);
// The long names (without "--") of an app's options.
std::vector<std::string> long_flag_names(const CLI::App& app);
// SGLang's flags that `serve` does not register (the unimplemented ones), so that an
// abbreviation ambiguous in SGLang is ambiguous here too.
std::vector<std::string> sglang_flag_names();

// Checks the values and the rules between them (SGLang's), and fills the resolved fields.
// Throws epserve::Error with one line naming the flag and what to change.
void resolve_server_args(ServerArgs& args);

// Throws one epserve::Error naming everything the flags ask for that this build cannot run yet
// (valid SGLang settings whose implementation has not landed), and logs ignored_flags_warning().
// Kept apart from resolve_server_args so the list shrinks as features land
// (server_args_support.cpp).
void check_supported(const ServerArgs& args);

// True for the long flag names (without "--") of SGLang's launch_server that epserve does not
// implement, and for those it accepts and ignores (GPU-only).
bool is_unimplemented_sglang_flag(const std::string& name);
bool is_ignored_sglang_flag(const std::string& name);

nlohmann::json server_args_to_json(const ServerArgs& args);

}  // namespace epserve
