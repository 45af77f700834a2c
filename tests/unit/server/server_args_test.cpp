// The `serve` flags: SGLang's names and aliases, argparse's abbreviations, the consistency rules,
// SGLang's GPU-only flags (accepted, ignored with one warning) and the messages for SGLang flags
// epserve does not implement.
#include "server/server_args.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/error.h"
#include "support/run_epserve.h"

namespace epserve {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

ServerArgs parse(std::vector<std::string> argv, std::vector<std::string>* extras = nullptr) {
  CLI::App app;
  ServerArgs args;
  app.allow_extras();
  add_server_args(app, args);
  argv.insert(argv.begin(), {"--model-path", "/models/m"});
  std::reverse(argv.begin(), argv.end());  // CLI11 takes a vector in reverse order
  app.parse(argv);
  if (extras != nullptr) *extras = app.remaining();
  return args;
}

// As `epserve serve` parses: abbreviations written out first (src/cli/commands.cpp).
ServerArgs parse_abbreviated(std::vector<std::string> argv,
                             std::vector<std::string>* extras = nullptr) {
  CLI::App app;
  ServerArgs unused;
  app.allow_extras();
  add_server_args(app, unused);
  std::vector<std::string> names = long_flag_names(app);
  for (const std::string& name : sglang_flag_names()) names.push_back(name);
  return parse(expand_flag_abbreviations(std::move(argv), names), extras);
}

std::string abbreviation_error(std::vector<std::string> argv) {
  try {
    parse_abbreviated(std::move(argv));
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string unknown_flags_error(const std::vector<std::string>& extras) {
  try {
    check_unknown_flags(extras);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string serve_fixture() {
  return std::string(EPSERVE_SOURCE_DIR) + "/tests/data/models/qwen3_moe_tiny";
}

std::string resolve_error(std::vector<std::string> argv) {
  ServerArgs args = parse(std::move(argv));
  try {
    resolve_server_args(args);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ServerArgs, DefaultsAreSglangs) {
  ServerArgs a = parse({});
  resolve_server_args(a);
  EXPECT_EQ(a.model_path, "/models/m");
  EXPECT_EQ(a.host, "127.0.0.1");
  EXPECT_EQ(a.port, 30000);
  EXPECT_EQ(a.parallel.world_size(), 1);
  EXPECT_EQ(a.served_model_name, "/models/m");
  EXPECT_EQ(a.tokenizer_path, "/models/m");
  EXPECT_EQ(a.parallel.attention_groups(), 1);
  EXPECT_EQ(a.disaggregation_bootstrap_port, 8998);
  EXPECT_EQ(a.experts.recorder_buffer_size, 1000);
}

TEST(ServerArgs, AliasesSetTheSameField) {
  EXPECT_EQ(parse({"--tp", "4"}).parallel.tp_size, 4);
  EXPECT_EQ(parse({"--tensor-parallel-size", "4"}).parallel.tp_size, 4);
  EXPECT_EQ(parse({"--ep", "2"}).parallel.ep_size, 2);
  EXPECT_EQ(parse({"--expert-parallel-size", "2"}).parallel.ep_size, 2);
  EXPECT_EQ(parse({"--dp", "2"}).parallel.dp_size, 2);
  EXPECT_EQ(parse({"--port=31000"}).port, 31000);
}

TEST(ServerArgs, WorldSizeIsTpOrTheLargestOfEpAndDp) {
  ServerArgs a = parse({"--ep-size", "4"});
  resolve_server_args(a);
  EXPECT_EQ(a.parallel.world_size(), 4);
  ServerArgs b = parse({"--tp-size", "8", "--ep-size", "4"});
  resolve_server_args(b);
  EXPECT_EQ(b.parallel.world_size(), 8);
}

TEST(ServerArgs, EpMustDivideTheWorldSize) {
  EXPECT_THAT(resolve_error({"--tp-size", "6", "--ep-size", "4"}),
              HasSubstr("--ep-size 4 must divide the world size 6"));
}

TEST(ServerArgs, DpAttentionNeedsTpDivisibleByDp) {
  EXPECT_THAT(resolve_error({"--tp-size", "6", "--dp-size", "4", "--enable-dp-attention"}),
              HasSubstr("--tp-size (6) divisible by --dp-size (4)"));
}

TEST(ServerArgs, DpAttentionWithoutDpSizeTakesTheWorldSize) {
  ServerArgs a = parse({"--ep-size", "8", "--enable-dp-attention"});
  resolve_server_args(a);
  EXPECT_EQ(a.parallel.dp_size, 8);
  ASSERT_EQ(a.parallel.notes.size(), 1u);
  EXPECT_THAT(a.parallel.notes[0], HasSubstr("SGLang would run without DP attention"));
  EXPECT_EQ(a.parallel.attention_groups(), 8);
}

TEST(ServerArgs, DpOneTurnsDpAttentionOff) {
  ServerArgs a = parse({"--tp-size", "2", "--dp-size", "1", "--enable-dp-attention"});
  resolve_server_args(a);
  EXPECT_FALSE(a.parallel.enable_dp_attention);
  EXPECT_EQ(a.parallel.attention_groups(), 1);
}

TEST(ServerArgs, PlainDataParallelismIsNotImplemented) {
  EXPECT_THAT(resolve_error({"--dp-size", "2"}), HasSubstr("without --enable-dp-attention"));
}

TEST(ServerArgs, DeepepForcesEpToTheWorldSize) {
  ServerArgs a = parse({"--tp-size", "4", "--moe-a2a-backend", "deepep"});
  resolve_server_args(a);
  EXPECT_EQ(a.parallel.ep_size, 4);
}

TEST(ServerArgs, RulesBetweenFlags) {
  EXPECT_THAT(resolve_error({"--enable-eplb"}), HasSubstr("--enable-eplb needs --ep-size"));
  EXPECT_THAT(resolve_error({"--enable-dp-lm-head"}),
              HasSubstr("--enable-dp-lm-head needs --enable-dp-attention"));
  EXPECT_THAT(resolve_error({"--nnodes", "2", "--tp-size", "4"}),
              HasSubstr("needs --dist-init-addr"));
  EXPECT_THAT(resolve_error({"--node-rank", "1"}), HasSubstr("--node-rank 1 is outside"));
  EXPECT_THAT(resolve_error({"--tp-size", "3", "--nnodes", "2", "--dist-init-addr", "h:1"}),
              HasSubstr("multiple of --nnodes 2"));
}

TEST(ServerArgs, EplbSetsTheRecorderMode) {
  ServerArgs a = parse({"--ep-size", "2", "--enable-eplb"});
  resolve_server_args(a);
  EXPECT_EQ(a.experts.recorder_mode, "stat");
  EXPECT_EQ(a.parallel.ep_dispatch_algorithm, "static");
}

TEST(ServerArgs, BadValuesNameTheFlag) {
  EXPECT_THAT(resolve_error({"--port", "70000"}), HasSubstr("--port 70000"));
  EXPECT_THAT(resolve_error({"--log-level", "loud"}), HasSubstr("--log-level 'loud'"));
  EXPECT_THAT(resolve_error({"--mem-fraction-static", "1.5"}),
              HasSubstr("--mem-fraction-static 1.5"));
  EXPECT_THAT(resolve_error({"--chunked-prefill-size", "-2"}),
              HasSubstr("--chunked-prefill-size -2"));
  EXPECT_THAT(resolve_error({"--deepep-mode", "fast"}), HasSubstr("--deepep-mode 'fast'"));
  EXPECT_THAT(resolve_error({"--disaggregation-mode", "both"}),
              HasSubstr("--disaggregation-mode 'both'"));
  EXPECT_THAT(resolve_error({"--device", "tpu"}), HasSubstr("--device 'tpu'"));
}

// SGLang's transfer backends map onto UCX: nixl (which runs on UCX) is accepted, the others are
// refused with one line; an RDMA device becomes UCX_NET_DEVICES (with its port).
TEST(ServerArgs, DisaggregationTransferFlags) {
  ServerArgs a = parse({"--disaggregation-mode", "prefill"});
  resolve_server_args(a);
  EXPECT_EQ(a.disaggregation_transfer_backend, "");
  EXPECT_EQ(a.ucx_net_devices, "");
  EXPECT_EQ(resolve_error({"--disaggregation-transfer-backend", "nixl"}), "");
  EXPECT_THAT(resolve_error({"--disaggregation-transfer-backend", "mooncake"}),
              HasSubstr("--disaggregation-transfer-backend mooncake: epserve moves the KV cache "
                        "with UCX"));
  EXPECT_THAT(resolve_error({"--disaggregation-ib-device", "mlx5_nonexistent"}),
              HasSubstr("no RDMA device or network interface 'mlx5_nonexistent'"));
  ServerArgs lo = parse({"--disaggregation-ib-device", "lo"});
  resolve_server_args(lo);
  EXPECT_EQ(lo.ucx_net_devices, "lo");
  setenv("SGLANG_DISAGGREGATION_WAITING_TIMEOUT", "soon", 1);
  EXPECT_THAT(resolve_error({"--disaggregation-mode", "decode"}),
              HasSubstr("SGLANG_DISAGGREGATION_WAITING_TIMEOUT=soon"));
  unsetenv("SGLANG_DISAGGREGATION_WAITING_TIMEOUT");
}

TEST(ServerArgs, UnimplementedSglangFlagsSaySo) {
  std::vector<std::string> extras;
  parse({"--kv-cache-dtype", "fp8_e5m2"}, &extras);
  ASSERT_FALSE(extras.empty());
  EXPECT_THAT(unknown_flags_error(extras),
              HasSubstr("--kv-cache-dtype is an SGLang flag that epserve does not implement yet"));
  parse({"--speculative-algorithm=EAGLE"}, &extras);
  EXPECT_THROW(check_unknown_flags(extras), Error);
  EXPECT_TRUE(is_unimplemented_sglang_flag("kv-cache-dtype"));
  EXPECT_FALSE(is_unimplemented_sglang_flag("ep-size"));
}

TEST(ServerArgs, QuantizationIsAServeFlag) {
  EXPECT_EQ(parse({"--quantization", "fp8"}).parallel.quantization, "fp8");
  EXPECT_EQ(parse({}).parallel.quantization, "");
}

TEST(ServerArgs, EveryRefusedFlagIsNamedInOneMessage) {
  std::vector<std::string> extras;
  parse({"--kv-cache-dtype", "fp8_e5m2", "--quantization-param-path=x.json", "--enable-lora",
         "--bogus", "1", "--typo"},
        &extras);
  const std::string message = unknown_flags_error(extras);
  EXPECT_THAT(message,
              HasSubstr("--kv-cache-dtype, --quantization-param-path, --enable-lora are SGLang "
                        "flags that epserve does not implement yet; remove them"));
  EXPECT_THAT(message, HasSubstr("unknown flags --bogus, --typo"));
  EXPECT_THAT(message, Not(HasSubstr("unexpected argument"))) << "values are not stray arguments";
  EXPECT_THAT(unknown_flags_error({"stray"}), HasSubstr("unexpected argument 'stray'"));

  ServerArgs a = parse({"--device", "cuda", "--enable-two-batch-overlap", "--moe-a2a-backend",
                        "deepep", "--expert-distribution-recorder-mode", "per_token"});
  resolve_server_args(a);
  try {
    check_supported(a);
    FAIL() << "accepted --device cuda";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("--device cuda (the CUDA backend) and "
                                    "--expert-distribution-recorder-mode per_token with "
                                    "--enable-two-batch-overlap are not implemented"));
  }
}

TEST(ServerArgs, GpuOnlyFlagsAreAcceptedAndNamedInOneWarning) {
  std::vector<std::string> extras;
  ServerArgs a =
      parse({"--disable-cuda-graph", "--cuda-graph-max-bs", "8", "--cuda-graph-bs", "1", "2", "4",
             "--attention-backend", "fa3", "--port", "31000", "--moe-runner-backend=deep_gemm",
             "--disable-cuda-graph", "--disable-overlap-schedule", "--enable-torch-compile"},
            &extras);
  EXPECT_TRUE(extras.empty()) << extras[0];
  EXPECT_EQ(a.port, 31000) << "--cuda-graph-bs takes its values and no more";
  resolve_server_args(a);
  EXPECT_NO_THROW(check_supported(a));
  // Named once each, in the order of SGLang's groups (docs/server.md).
  EXPECT_EQ(ignored_flags_warning(a),
            "ignored on the CPU backend: --cuda-graph-max-bs, --cuda-graph-bs, "
            "--disable-cuda-graph, --enable-torch-compile, --attention-backend, "
            "--moe-runner-backend, --disable-overlap-schedule (they only tune GPU execution; "
            "docs/server.md lists them)");
  EXPECT_EQ(ignored_flags_warning(parse({})), "");
  // SGLang's types still hold: an integer flag takes integers.
  EXPECT_THROW(parse({"--cuda-graph-max-bs", "many"}), CLI::ParseError);
  EXPECT_THROW(parse({"--cuda-graph-bs", "1", "x"}), CLI::ParseError);
  EXPECT_TRUE(is_ignored_sglang_flag("sampling-backend"));
  EXPECT_FALSE(is_unimplemented_sglang_flag("sampling-backend"));
  // Flags whose feature would change results stay refused.
  for (const char* refused : {"kv-cache-dtype", "enable-mixed-chunk", "num-continuous-decode-steps",
                              "enable-deterministic-inference", "speculative-algorithm"}) {
    EXPECT_TRUE(is_unimplemented_sglang_flag(refused)) << refused;
    EXPECT_FALSE(is_ignored_sglang_flag(refused)) << refused;
  }
}

TEST(ServerArgs, UnambiguousPrefixesAreTheFlag) {
  EXPECT_EQ(parse_abbreviated({"--context-len", "4096"}).context_length, 4096);
  EXPECT_EQ(parse_abbreviated({"--max-total-token", "100"}).max_total_tokens, 100);
  EXPECT_EQ(parse_abbreviated({"--max-total=100"}).max_total_tokens, 100);
  EXPECT_EQ(parse_abbreviated({"--mem-frac", "0.5"}).mem_fraction_static, 0.5);
  EXPECT_TRUE(parse_abbreviated({"--enable-dp-att"}).parallel.enable_dp_attention);
  EXPECT_EQ(parse_abbreviated({"--cuda-graph-max", "8"}).ignored_gpu_flags,
            std::vector<std::string>{"--cuda-graph-max-bs"});
  // An exact name wins over the longer names it starts.
  EXPECT_EQ(parse_abbreviated({"--tp", "4"}).parallel.tp_size, 4);
  EXPECT_EQ(parse_abbreviated({"--ep", "2"}).parallel.ep_size, 2);
  // A prefix of an SGLang flag epserve does not implement is that flag, and refused by name.
  std::vector<std::string> extras;
  parse_abbreviated({"--speculative-algo", "EAGLE"}, &extras);
  EXPECT_THAT(unknown_flags_error(extras), HasSubstr("--speculative-algorithm is an SGLang flag"));
  // After "--" nothing is a flag.
  EXPECT_EQ(expand_flag_abbreviations({"--", "--context-len"}, {"context-length"}),
            (std::vector<std::string>{"--", "--context-len"}));
}

TEST(ServerArgs, AmbiguousPrefixesNameTheCandidates) {
  EXPECT_EQ(abbreviation_error({"--enable-dp"}),
            "ambiguous option: --enable-dp could match --enable-dp-attention, --enable-dp-lm-head");
  EXPECT_EQ(abbreviation_error({"--max-total-tokens", "1", "--max", "5"}),
            "ambiguous option: --max could match --max-running-requests, --max-total-tokens, "
            "--max-queued-requests, --max-prefill-tokens, --max-lora-rank, "
            "--max-loras-per-batch, --max-loaded-loras, --max-lora-chunk-size, "
            "--max-mamba-cache-size");
  // Ambiguous in SGLang, through a flag epserve accepts and ignores and one it refuses.
  EXPECT_THAT(abbreviation_error({"--disable-cuda"}),
              HasSubstr("could match --disable-cuda-graph, --disable-cuda-graph-padding"));
  EXPECT_THAT(abbreviation_error({"--mod=m"}),
              HasSubstr("ambiguous option: --mod could match --model-path, --model, "));
}

TEST(ServerArgs, ServeTakesAbbreviationsAndGpuOnlyFlags) {
  // Both reach the model check: --context-len is --context-length (the model allows 4096), and
  // the GPU-only flags are accepted with one warning line.
  testing::RunResult r = testing::run_epserve(
      "serve --model-path " + serve_fixture() +
      " --disable-cuda-graph --cuda-graph-max-bs 8 --attention-backend fa3 --context-len 100000");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("longer than the model's max_position_embeddings"));
  EXPECT_THAT(r.output, HasSubstr("ignored on the CPU backend: --cuda-graph-max-bs, "
                                  "--disable-cuda-graph, --attention-backend"));
  r = testing::run_epserve("serve --model-path " + serve_fixture() + " --enable-dp");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("epserve: error: ambiguous option: --enable-dp could match"));
}

TEST(ServerArgs, TyposAreUnknownFlags) {
  std::vector<std::string> extras;
  parse({"--mem-fraction-statc", "0.5"}, &extras);
  EXPECT_THAT(unknown_flags_error(extras), HasSubstr("unknown flag --mem-fraction-statc"));
  EXPECT_NO_THROW(check_unknown_flags({}));
}

TEST(ServerArgs, ThisBuildRefusesWhatHasNotLanded) {
  ServerArgs a = parse({"--device", "cuda"});
  resolve_server_args(a);
  EXPECT_THROW(check_supported(a), Error);
  // Two-batch overlap: SGLang's flags with SGLang's meaning (default off, threshold 0.48); like
  // SGLang, it needs an all-to-all backend.
  ServerArgs plain = parse({});
  resolve_server_args(plain);
  EXPECT_FALSE(plain.parallel.enable_two_batch_overlap);
  EXPECT_DOUBLE_EQ(plain.parallel.tbo_token_distribution_threshold, 0.48);
  ServerArgs tbo = parse({"--enable-two-batch-overlap", "--moe-a2a-backend", "deepep",
                          "--tbo-token-distribution-threshold", "0.4"});
  resolve_server_args(tbo);
  EXPECT_NO_THROW(check_supported(tbo));
  EXPECT_DOUBLE_EQ(tbo.parallel.tbo_token_distribution_threshold, 0.4);
  ServerArgs tbo_none = parse({"--enable-two-batch-overlap"});
  try {
    resolve_server_args(tbo_none);
    FAIL() << "accepted --enable-two-batch-overlap with --moe-a2a-backend none";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("moe_a2a_backend cannot be 'none'"));
  }
  ServerArgs high = parse({"--enable-two-batch-overlap", "--moe-a2a-backend", "deepep",
                           "--tbo-token-distribution-threshold", "0.6"});
  EXPECT_THROW(resolve_server_args(high), Error);
  ServerArgs b = parse({"--tp-size", "2", "--enable-dp-attention"});
  resolve_server_args(b);
  EXPECT_NO_THROW(check_supported(b));
  // Several nodes, with and without DP groups led from node 1 (the frontend reaches them over
  // tcp://, runtime/control_plane.h).
  ServerArgs nodes = parse({"--tp-size", "4", "--nnodes", "2", "--dist-init-addr", "h:1"});
  resolve_server_args(nodes);
  EXPECT_NO_THROW(check_supported(nodes));
  ServerArgs two_groups = parse({"--tp-size", "4", "--nnodes", "2", "--dist-init-addr", "h:1",
                                 "--enable-dp-attention", "--dp-size", "2"});
  resolve_server_args(two_groups);
  EXPECT_NO_THROW(check_supported(two_groups));  // group 1's leader is rank 2, on node 1
}

TEST(ServerArgs, JsonHasTheResolvedLayout) {
  ServerArgs a = parse({"--ep-size", "2", "--served-model-name", "tiny"});
  resolve_server_args(a);
  nlohmann::json j = server_args_to_json(a);
  EXPECT_EQ(j["served_model_name"], "tiny");
  EXPECT_EQ(j["world_size"], 2);
  EXPECT_EQ(j["ep_size"], 2);
  EXPECT_TRUE(j["max_total_tokens"].is_null());
}

}  // namespace
}  // namespace epserve
