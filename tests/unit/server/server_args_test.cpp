// The `serve` flags: SGLang's names and aliases, the consistency rules, and the messages for
// SGLang flags epserve does not implement.
#include "server/server_args.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/error.h"

namespace epserve {
namespace {

using ::testing::HasSubstr;

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
  EXPECT_EQ(a.world_size, 1);
  EXPECT_EQ(a.served_model_name, "/models/m");
  EXPECT_EQ(a.tokenizer_path, "/models/m");
  EXPECT_EQ(a.num_dp_groups, 1);
  EXPECT_EQ(a.disaggregation_bootstrap_port, 8998);
  EXPECT_EQ(a.expert_distribution_recorder_buffer_size, 1000);
}

TEST(ServerArgs, AliasesSetTheSameField) {
  EXPECT_EQ(parse({"--tp", "4"}).tp_size, 4);
  EXPECT_EQ(parse({"--tensor-parallel-size", "4"}).tp_size, 4);
  EXPECT_EQ(parse({"--ep", "2"}).ep_size, 2);
  EXPECT_EQ(parse({"--expert-parallel-size", "2"}).ep_size, 2);
  EXPECT_EQ(parse({"--dp", "2"}).dp_size, 2);
  EXPECT_EQ(parse({"--port=31000"}).port, 31000);
}

TEST(ServerArgs, WorldSizeIsTpOrTheLargestOfEpAndDp) {
  ServerArgs a = parse({"--ep-size", "4"});
  resolve_server_args(a);
  EXPECT_EQ(a.world_size, 4);
  ServerArgs b = parse({"--tp-size", "8", "--ep-size", "4"});
  resolve_server_args(b);
  EXPECT_EQ(b.world_size, 8);
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
  EXPECT_EQ(a.dp_size, 8);
  EXPECT_TRUE(a.dp_size_implied);
  EXPECT_EQ(a.num_dp_groups, 8);
}

TEST(ServerArgs, DpOneTurnsDpAttentionOff) {
  ServerArgs a = parse({"--tp-size", "2", "--dp-size", "1", "--enable-dp-attention"});
  resolve_server_args(a);
  EXPECT_FALSE(a.enable_dp_attention);
  EXPECT_EQ(a.num_dp_groups, 1);
}

TEST(ServerArgs, PlainDataParallelismIsNotImplemented) {
  EXPECT_THAT(resolve_error({"--dp-size", "2"}), HasSubstr("without --enable-dp-attention"));
}

TEST(ServerArgs, DeepepForcesEpToTheWorldSize) {
  ServerArgs a = parse({"--tp-size", "4", "--moe-a2a-backend", "deepep"});
  resolve_server_args(a);
  EXPECT_EQ(a.ep_size, 4);
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
  EXPECT_EQ(a.expert_distribution_recorder_mode, "stat");
  EXPECT_EQ(a.ep_dispatch_algorithm, "static");
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

TEST(ServerArgs, UnimplementedSglangFlagsSaySo) {
  std::vector<std::string> extras;
  parse({"--disable-cuda-graph", "--cuda-graph-max-bs", "8"}, &extras);
  ASSERT_FALSE(extras.empty());
  try {
    check_unknown_flags(extras);
    FAIL() << "accepted --disable-cuda-graph";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("--disable-cuda-graph is an SGLang flag that epserve does "
                                    "not implement yet"));
  }
  parse({"--speculative-algorithm=EAGLE"}, &extras);
  EXPECT_THROW(check_unknown_flags(extras), Error);
  EXPECT_TRUE(is_unimplemented_sglang_flag("kv-cache-dtype"));
  EXPECT_FALSE(is_unimplemented_sglang_flag("ep-size"));
}

TEST(ServerArgs, TyposAreUnknownFlags) {
  std::vector<std::string> extras;
  parse({"--mem-fraction-statc", "0.5"}, &extras);
  try {
    check_unknown_flags(extras);
    FAIL() << "accepted a typo";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("unknown flag --mem-fraction-statc"));
  }
  EXPECT_NO_THROW(check_unknown_flags({}));
}

TEST(ServerArgs, ThisBuildRefusesWhatHasNotLanded) {
  ServerArgs a = parse({"--device", "cuda"});
  resolve_server_args(a);
  EXPECT_THROW(check_supported(a), Error);
  ServerArgs tbo = parse({"--enable-two-batch-overlap"});
  resolve_server_args(tbo);
  EXPECT_THROW(check_supported(tbo), Error);
  ServerArgs b = parse({"--tp-size", "2", "--enable-dp-attention"});
  resolve_server_args(b);
  EXPECT_NO_THROW(check_supported(b));
  // Several nodes: every DP group's leader must be on node 0, where the frontend is.
  ServerArgs nodes = parse({"--tp-size", "4", "--nnodes", "2", "--dist-init-addr", "h:1"});
  resolve_server_args(nodes);
  EXPECT_NO_THROW(check_supported(nodes));
  ServerArgs two_groups = parse({"--tp-size", "4", "--nnodes", "2", "--dist-init-addr", "h:1",
                                 "--enable-dp-attention", "--dp-size", "2"});
  resolve_server_args(two_groups);
  EXPECT_THROW(check_supported(two_groups), Error);  // group 1's leader is rank 2, on node 1
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
