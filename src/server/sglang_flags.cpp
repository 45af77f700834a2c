// SGLang's launch_server flags that `epserve serve` does not register as its own (from SGLang's
// docs/advanced_features/server_arguments.md and server_args.py), in two lists:
//  - flags that only tune how a GPU runs the same computation (CUDA graphs, torch.compile, kernel
//    and collective backends, GPU ids). The CPU backend has one implementation of each
//    operation, so they cannot change its outputs: they are accepted, and ignored with one
//    warning line that names them (docs/server.md "Accepted and ignored").
//  - flags whose feature epserve does not implement: rejected with a message that says so, all
//    of them in one message, rather than mistaken for typos or silently ignored. A flag moves
//    from here to add_server_args() when it is implemented.
// Also argparse's abbreviations (SGLang's parser allows them): an unambiguous prefix of a flag.
#include <algorithm>
#include <array>
#include <string_view>

#include "core/error.h"
#include "server/server_args.h"

namespace epserve {

namespace {

constexpr std::array kUnimplementedSglangFlags = std::to_array<std::string_view>({
    // Model, tokenizer, HTTP
    "tokenizer-mode",
    "tokenizer-worker-num",
    "skip-tokenizer-init",
    "model-loader-extra-config",
    "is-embedding",
    "model-impl",
    "fastapi-root-path",
    "grpc-mode",
    "warmups",
    "nccl-port",
    "checkpoint-engine-wait-weights-before-ready",
    // Quantization and data types
    "quantization-param-path",
    "kv-cache-dtype",
    "enable-fp32-lm-head",
    "modelopt-quant",
    "modelopt-checkpoint-restore-path",
    "modelopt-checkpoint-save-path",
    "modelopt-export-path",
    "quantize-and-serve",
    "rl-quant-profile",
    "enable-quant-communications",
    // Memory and scheduling
    "max-queued-requests",
    "prefill-max-requests",
    "enable-dynamic-chunking",
    "max-prefill-tokens",
    "schedule-policy",
    "enable-priority-scheduling",
    "abort-on-priority-when-disabled",
    "schedule-low-priority-values-first",
    "priority-scheduling-preemption-threshold",
    "schedule-conservativeness",
    "swa-full-tokens-ratio",
    "disable-hybrid-swa-memory",
    "radix-eviction-policy",
    "enable-prefill-delayer",
    "prefill-delayer-max-delay-passes",
    "prefill-delayer-token-usage-low-watermark",
    "prefill-delayer-queue-min-ratio",
    "prefill-delayer-max-delay-ms",
    "prefill-delayer-forward-passes-buckets",
    "prefill-delayer-wait-seconds-buckets",
    // Runtime
    "pipeline-parallel-size",
    "pp-size",
    "attention-context-parallel-size",
    "attn-cp-size",
    "moe-data-parallel-size",
    "moe-dp-size",
    "pp-max-micro-batch-size",
    "pp-async-batch-depth",
    "stream-interval",
    "incremental-streaming-output",
    "constrained-json-whitespace-pattern",
    "constrained-json-disable-any-whitespace",
    "watchdog-timeout",
    "soft-watchdog-timeout",
    "download-dir",
    "model-checksum",
    "sleep-on-idle",
    "custom-sigquit-handler",
    // Logging and metrics
    "log-requests",
    "log-requests-level",
    "log-requests-format",
    "log-requests-target",
    "uvicorn-access-log-exclude-prefixes",
    "crash-dump-folder",
    "show-time-cost",
    "enable-mfu-metrics",
    "enable-metrics-for-all-schedulers",
    "tokenizer-metrics-custom-labels-header",
    "tokenizer-metrics-allowed-custom-labels",
    "bucket-time-to-first-token",
    "bucket-inter-token-latency",
    "bucket-e2e-request-latency",
    "collect-tokens-histogram",
    "prompt-tokens-buckets",
    "generation-tokens-buckets",
    "gc-warning-threshold-secs",
    "enable-request-time-stats-logging",
    "kv-events-config",
    "enable-trace",
    "otlp-traces-endpoint",
    "export-metrics-to-file",
    "export-metrics-to-file-dir",
    // API
    "admin-api-key",
    "weight-version",
    "completion-template",
    "file-storage-path",
    "reasoning-parser",
    "tool-call-parser",
    "tool-server",
    "sampling-defaults",
    "json-model-override-args",
    "preferred-sampling-params",
    // LoRA
    "enable-lora",
    "enable-lora-overlap-loading",
    "max-lora-rank",
    "lora-target-modules",
    "lora-paths",
    "max-loras-per-batch",
    "max-loaded-loras",
    "lora-eviction-policy",
    "lora-backend",
    "max-lora-chunk-size",
    "lora-drain-wait-threshold",
    // Kernel backends
    "grammar-backend",
    "mm-attention-backend",
    "dsa-prefill-backend",
    "nsa-prefill-backend",
    "dsa-decode-backend",
    "nsa-decode-backend",
    "fp8-gemm-backend",
    "fp4-gemm-backend",
    // Speculative decoding
    "speculative-algorithm",
    "speculative-draft-model-path",
    "speculative-draft-model",
    "speculative-draft-model-revision",
    "speculative-draft-load-format",
    "speculative-num-steps",
    "speculative-eagle-topk",
    "speculative-num-draft-tokens",
    "speculative-accept-threshold-single",
    "speculative-accept-threshold-acc",
    "speculative-token-map",
    "speculative-attention-mode",
    "speculative-draft-attention-backend",
    "speculative-moe-runner-backend",
    "speculative-moe-a2a-backend",
    "speculative-draft-model-quantization",
    "speculative-ngram-min-bfs-breadth",
    "speculative-ngram-max-bfs-breadth",
    "speculative-ngram-match-type",
    "speculative-ngram-max-trie-depth",
    "speculative-ngram-capacity",
    "enable-multi-layer-eagle",
    // MoE
    "flashinfer-mxfp4-moe-precision",
    "deepep-dispatcher-output-dtype",
    "enable-fused-grouped-gemm-combine",
    "eplb-min-rebalancing-utilization-threshold",
    "elastic-ep-backend",
    "enable-elastic-expert-backup",
    "mooncake-ib-device",
    "enable-deepep-waterfill",
    "elastic-ep-rejoin",
    // Mamba, hierarchical cache, LMCache, ktransformers, diffusion, offloading
    "max-mamba-cache-size",
    "mamba-ssm-dtype",
    "mamba-full-memory-ratio",
    "mamba-scheduler-strategy",
    "mamba-track-interval",
    "enable-hierarchical-cache",
    "hicache-ratio",
    "hicache-size",
    "hicache-write-policy",
    "hicache-io-backend",
    "hicache-mem-layout",
    "hicache-storage-backend",
    "hicache-storage-prefetch-policy",
    "hicache-storage-backend-extra-config",
    "hierarchical-sparse-attention-extra-config",
    "enable-lmcache",
    "kt-weight-path",
    "kt-method",
    "kt-cpuinfer",
    "kt-threadpool-count",
    "kt-num-gpu-experts",
    "kt-max-deferred-experts-per-token",
    "dllm-algorithm",
    "dllm-algorithm-config",
    "cpu-offload-gb",
    "offload-group-size",
    "offload-num-in-group",
    "offload-prefetch-step",
    "offload-mode",
    "multi-item-scoring-delimiter",
    // Optimization and debugging
    "disable-flashinfer-cutlass-moe-fp4-allgather",
    "enable-tokenizer-batch-encode",
    "disable-tokenizer-batch-decode",
    "disable-outlines-disk-cache",
    "enable-mixed-chunk",
    "enable-single-batch-overlap",
    "torchao-config",
    "enable-nan-detection",
    "num-continuous-decode-steps",
    "delete-ckpt-after-loading",
    "enable-memory-saver",
    "enable-weights-cpu-backup",
    "enable-draft-weights-cpu-backup",
    "allow-auto-truncate",
    "enable-custom-logit-processor",
    "disable-fast-image-processor",
    "keep-mm-feature-on-device",
    "enable-return-hidden-states",
    "enable-return-routed-experts",
    "scheduler-recv-interval",
    "numa-node",
    "enable-deterministic-inference",
    "rl-on-policy-target",
    "enable-attn-tp-input-scattered",
    "enable-dsa-prefill-context-parallel",
    "enable-nsa-prefill-context-parallel",
    "dsa-prefill-cp-mode",
    "nsa-prefill-cp-mode",
    "enable-precise-embedding-interpolation",
    "enable-dynamic-batch-tokenizer",
    "dynamic-batch-tokenizer-batch-size",
    "dynamic-batch-tokenizer-batch-timeout",
    "debug-tensor-dump-output-folder",
    "debug-tensor-dump-layers",
    "debug-tensor-dump-input-file",
    "debug-tensor-dump-inject",
    // PD and encoder disaggregation
    "disaggregation-decode-enable-offload-kvcache",
    "num-reserved-decode-tokens",
    "disaggregation-decode-polling-interval",
    "encoder-only",
    "language-only",
    "encoder-transfer-backend",
    "encoder-urls",
    // Weight loading
    "custom-weight-loader",
    "weight-loader-disable-mmap",
    "weight-loader-prefetch-checkpoints",
    "weight-loader-prefetch-num-threads",
    "remote-instance-weight-loader-seed-instance-ip",
    "remote-instance-weight-loader-seed-instance-service-port",
    "remote-instance-weight-loader-send-weights-group-ports",
    "remote-instance-weight-loader-backend",
    "remote-instance-weight-loader-start-seed-via-transfer-engine",
    // PD multiplexing, config files, multimodal, decryption, hooks
    "enable-pdmux",
    "pdmux-config-path",
    "sm-group-num",
    "config",
    "mm-max-concurrent-calls",
    "mm-per-request-timeout",
    "enable-broadcast-mm-inputs-process",
    "mm-process-config",
    "mm-enable-dp-encoder",
    "limit-mm-data-per-request",
    "enable-mm-global-cache",
    "decrypted-config-file",
    "decrypted-draft-config-file",
    "enable-prefix-mm-cache",
    "forward-hooks",
    "msprobe-dump-config",
    // Deprecated in SGLang
    "enable-ep-moe",
    "enable-deepep-moe",
    "prefill-round-robin-balance",
    "enable-flashinfer-cutlass-moe",
    "enable-flashinfer-cutedsl-moe",
    "enable-flashinfer-trtllm-moe",
    "enable-triton-kernel-moe",
    "enable-flashinfer-mxfp4-moe",
    "crash-on-nan",
    "hybrid-kvcache-ratio",
    "load-watch-interval",
    "nsa-prefill",
    "nsa-decode",
});

// store_true, one value (type=str), one integer (type=int), integers (type=int, nargs="+").
enum class Arity { kFlag, kText, kInt, kInts };

struct IgnoredFlag {
  std::string_view name;
  Arity arity;
};

// Accepted and ignored on the CPU backend: each only chooses how a GPU runs the same computation.
constexpr std::array kIgnoredOnCpuFlags = std::to_array<IgnoredFlag>({
    // CUDA graphs and torch.compile: capture or compile the same forward pass.
    {"cuda-graph-max-bs", Arity::kInt},
    {"cuda-graph-bs", Arity::kInts},
    {"disable-cuda-graph", Arity::kFlag},
    {"disable-cuda-graph-padding", Arity::kFlag},
    {"enable-profile-cuda-graph", Arity::kFlag},
    {"enable-cudagraph-gc", Arity::kFlag},
    {"disable-piecewise-cuda-graph", Arity::kFlag},
    {"enforce-piecewise-cuda-graph", Arity::kFlag},
    {"piecewise-cuda-graph-tokens", Arity::kInts},
    {"piecewise-cuda-graph-compiler", Arity::kText},
    {"piecewise-cuda-graph-max-tokens", Arity::kInt},
    {"enable-torch-compile", Arity::kFlag},
    {"enable-torch-compile-debug-mode", Arity::kFlag},
    {"torch-compile-max-bs", Arity::kInt},
    // Kernel choices for operations the CPU backend has one implementation of.
    {"attention-backend", Arity::kText},
    {"prefill-attention-backend", Arity::kText},
    {"decode-attention-backend", Arity::kText},
    {"sampling-backend", Arity::kText},
    {"moe-runner-backend", Arity::kText},
    {"disable-flashinfer-autotune", Arity::kFlag},
    {"flashinfer-mla-disable-ragged", Arity::kFlag},
    {"triton-attention-reduce-in-fp32", Arity::kFlag},
    {"triton-attention-num-kv-splits", Arity::kInt},
    {"triton-attention-split-tile-size", Arity::kInt},
    {"enable-fused-qk-norm-rope", Arity::kFlag},
    {"disable-shared-experts-fusion", Arity::kFlag},
    {"disable-chunked-prefix-cache", Arity::kFlag},
    // Collectives: which GPU library or kernel sums and moves the same tensors.
    {"disable-custom-all-reduce", Arity::kFlag},
    {"enable-mscclpp", Arity::kFlag},
    {"enable-torch-symm-mem", Arity::kFlag},
    {"enable-nccl-nvls", Arity::kFlag},
    {"enable-symm-mem", Arity::kFlag},
    {"enable-flashinfer-allreduce-fusion", Arity::kFlag},
    {"enable-aiter-allreduce-fusion", Arity::kFlag},
    {"deepep-config", Arity::kText},
    {"enable-p2p-check", Arity::kFlag},
    // GPU scheduling overlap, profiling markers, which GPUs.
    {"disable-overlap-schedule", Arity::kFlag},
    {"enable-layerwise-nvtx-marker", Arity::kFlag},
    {"base-gpu-id", Arity::kInt},
    {"gpu-id-step", Arity::kInt},
});

void note_ignored(ServerArgs& a, std::string_view name) {
  std::string flag = "--" + std::string(name);
  if (std::find(a.ignored_gpu_flags.begin(), a.ignored_gpu_flags.end(), flag) ==
      a.ignored_gpu_flags.end()) {
    a.ignored_gpu_flags.push_back(std::move(flag));
  }
}

std::string joined(const std::vector<std::string>& items, const char* quote = "") {
  std::string out;
  for (const std::string& item : items) {
    if (!out.empty()) out += ", ";
    out += quote + item + quote;
  }
  return out;
}

}  // namespace

bool is_unimplemented_sglang_flag(const std::string& name) {
  return std::find(kUnimplementedSglangFlags.begin(), kUnimplementedSglangFlags.end(), name) !=
         kUnimplementedSglangFlags.end();
}

bool is_ignored_sglang_flag(const std::string& name) {
  return std::any_of(kIgnoredOnCpuFlags.begin(), kIgnoredOnCpuFlags.end(),
                     [&](const IgnoredFlag& f) { return f.name == name; });
}

void add_ignored_sglang_flags(CLI::App& sub, ServerArgs& a) {
  for (const IgnoredFlag& f : kIgnoredOnCpuFlags) {
    const std::string flag = "--" + std::string(f.name);
    const std::string_view name = f.name;
    CLI::Option* option = nullptr;
    switch (f.arity) {
      case Arity::kFlag:
        option = sub.add_flag_callback(flag, [&a, name] { note_ignored(a, name); });
        break;
      case Arity::kText:
        option = sub.add_option_function<std::string>(
            flag, [&a, name](const std::string&) { note_ignored(a, name); });
        break;
      case Arity::kInt:  // not an integer: refused, as argparse's type=int does
        option =
            sub.add_option_function<int64_t>(flag, [&a, name](int64_t) { note_ignored(a, name); });
        break;
      case Arity::kInts:
        option = sub.add_option_function<std::vector<int64_t>>(
            flag, [&a, name](const std::vector<int64_t>&) { note_ignored(a, name); });
        break;
    }
    // Hidden from --help; given twice, the last wins (as argparse).
    option->group("");
    if (f.arity != Arity::kInts) option->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  }
}

std::string ignored_flags_warning(const ServerArgs& a) {
  if (a.ignored_gpu_flags.empty()) return "";
  return "ignored on the CPU backend: " + joined(a.ignored_gpu_flags) +
         " (they only tune GPU execution; docs/server.md lists them)";
}

std::vector<std::string> sglang_flag_names() {
  return std::vector<std::string>(kUnimplementedSglangFlags.begin(),
                                  kUnimplementedSglangFlags.end());
}

std::vector<std::string> long_flag_names(const CLI::App& app) {
  std::vector<std::string> names;
  for (const CLI::Option* option : app.get_options()) {
    for (const std::string& name : option->get_lnames()) names.push_back(name);
  }
  return names;
}

std::vector<std::string> expand_flag_abbreviations(std::vector<std::string> args,
                                                   const std::vector<std::string>& names) {
  for (std::string& arg : args) {
    if (arg == "--") break;  // the rest are values, never flags
    if (arg.size() <= 2 || arg.rfind("--", 0) != 0) continue;
    const size_t eq = arg.find('=');
    const std::string given = arg.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
    if (std::find(names.begin(), names.end(), given) != names.end()) continue;  // exact wins
    std::vector<std::string> matches;
    for (const std::string& name : names) {
      if (name.rfind(given, 0) == 0) matches.push_back("--" + name);
    }
    if (matches.empty()) continue;  // an unknown flag: check_unknown_flags() names it
    // argparse's words for it.
    EPS_CHECK(matches.size() == 1, "ambiguous option: --{} could match {}", given, joined(matches));
    arg = matches[0] + (eq == std::string::npos ? "" : arg.substr(eq));
  }
  return args;
}

void check_unknown_flags(const std::vector<std::string>& extras) {
  std::vector<std::string> unimplemented, unknown, stray;
  for (size_t i = 0; i < extras.size(); ++i) {
    const std::string& arg = extras[i];
    if (arg.size() > 2 && arg.rfind("--", 0) == 0) {
      const size_t eq = arg.find('=');
      const std::string name = arg.substr(0, eq);
      (is_unimplemented_sglang_flag(name.substr(2)) ? unimplemented : unknown).push_back(name);
      // The argument after a flag without "=" is taken as its value, not as a stray one.
      if (eq == std::string::npos && i + 1 < extras.size() && extras[i + 1].rfind("--", 0) != 0) {
        ++i;
      }
      continue;
    }
    stray.push_back(arg);
  }
  std::vector<std::string> problems;
  if (unimplemented.size() == 1) {
    problems.push_back(unimplemented[0] +
                       " is an SGLang flag that epserve does not implement yet; remove it");
  } else if (!unimplemented.empty()) {
    problems.push_back(joined(unimplemented) +
                       " are SGLang flags that epserve does not implement yet; remove them");
  }
  if (!unknown.empty()) {
    problems.push_back((unknown.size() == 1 ? "unknown flag " : "unknown flags ") +
                       joined(unknown) + " (epserve serve --help lists the flags)");
  }
  if (!stray.empty()) {
    problems.push_back((stray.size() == 1 ? "unexpected argument " : "unexpected arguments ") +
                       joined(stray, "'"));
  }
  if (problems.empty()) return;
  std::string message;
  for (const std::string& p : problems) message += (message.empty() ? "" : "; ") + p;
  EPS_THROW("{}", message);
}

}  // namespace epserve
