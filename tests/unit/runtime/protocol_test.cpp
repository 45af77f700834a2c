// The control plane's typed messages: every envelope survives encode/decode unchanged, the wire
// format is the documented CBOR object with a "type", and bad bytes are an error, not a crash.
#include "runtime/protocol.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>

#include "core/error.h"

namespace epserve {
namespace {

TEST(Protocol, DisaggMessagesRoundTrip) {
  GenerateInput in;
  in.rid = "r";
  in.bootstrap_host = "10.0.0.1";
  in.bootstrap_port = 8998;
  in.bootstrap_room = 1234567890123;
  const GenerateInput g = std::get<GenerateInput>(decode_scheduler_message(encode(in)));
  EXPECT_EQ(g.bootstrap_host, "10.0.0.1");
  EXPECT_EQ(g.bootstrap_port, 8998);
  EXPECT_EQ(g.bootstrap_room, 1234567890123);
  SchedulerMessage d = decode_scheduler_message(encode(DisaggInput{"r", {{"received", 3}}}));
  ASSERT_TRUE(std::holds_alternative<DisaggInput>(d));
  EXPECT_EQ(std::get<DisaggInput>(d).body["received"], 3);
  FrontendMessage f = decode_frontend_message(encode(DisaggOutput{"r", {{"slots", {4, 5}}}}));
  ASSERT_TRUE(std::holds_alternative<DisaggOutput>(f));
  EXPECT_EQ(std::get<DisaggOutput>(f).body["slots"][1], 5);
  EXPECT_EQ(std::get<DisaggOutput>(f).dp_rank, -1);
  f = decode_frontend_message(encode(DisaggOutput{"r", {{"slots", {4}}}, 3}));
  EXPECT_EQ(std::get<DisaggOutput>(f).dp_rank, 3);
  TokenOutput out;
  out.rid = "r";
  out.error = "x";
  out.error_status = 504;
  EXPECT_EQ(std::get<OutputBatch>(decode_frontend_message(encode(OutputBatch{{out}})))
                .outputs[0]
                .error_status,
            504);
}

TEST(Protocol, SchedulerMessagesRoundTrip) {
  GenerateInput in;
  in.rid = "r1";
  in.input_ids = {1, 2, 3};
  in.sampling.temperature = 0.5f;
  in.sampling.logit_bias = {{7, -100.0f}};
  in.seed = 42;
  in.max_new_tokens = 9;
  in.stop_token_ids = {5};
  in.return_logprob = true;
  in.top_logprobs_num = 2;
  in.logprob_start_len = 1;
  SchedulerMessage back = decode_scheduler_message(encode(in));
  ASSERT_TRUE(std::holds_alternative<GenerateInput>(back));
  const GenerateInput& g = std::get<GenerateInput>(back);
  EXPECT_EQ(g.rid, "r1");
  EXPECT_EQ(g.input_ids, in.input_ids);
  EXPECT_EQ(g.sampling.temperature, 0.5f);
  EXPECT_EQ(g.sampling.logit_bias.at(7), -100.0f);
  EXPECT_EQ(g.seed, 42u);
  EXPECT_EQ(g.max_new_tokens, 9);
  EXPECT_EQ(g.stop_token_ids, in.stop_token_ids);
  EXPECT_TRUE(g.return_logprob);
  EXPECT_EQ(g.logprob_start_len, 1);

  back = decode_scheduler_message(encode(AbortInput{"r2"}));
  ASSERT_TRUE(std::holds_alternative<AbortInput>(back));
  EXPECT_EQ(std::get<AbortInput>(back).rid, "r2");

  back = decode_scheduler_message(encode(ControlInput{"flush_cache", 17}));
  ASSERT_TRUE(std::holds_alternative<ControlInput>(back));
  EXPECT_EQ(std::get<ControlInput>(back).command, "flush_cache");
  EXPECT_EQ(std::get<ControlInput>(back).id, 17u);
}

TEST(Protocol, ImagesTravelWithTheirPixelsBitForBit) {
  GenerateInput in;
  in.rid = "img";
  in.input_ids = {1, 2, 3};
  ImageInput image;
  image.grid_t = 1;
  image.grid_h = 4;
  image.grid_w = 6;
  image.pixel_values = {0.5f, -1.0f, 3.25e-8f, -0.0f, 1e30f};
  image.content_hash = 0xfedcba9876543210ull;
  in.images = {image, ImageInput{}};
  SchedulerMessage back = decode_scheduler_message(encode(in));
  const GenerateInput& g = std::get<GenerateInput>(back);
  ASSERT_EQ(g.images.size(), 2u);
  EXPECT_EQ(g.images[0].grid_t, 1);
  EXPECT_EQ(g.images[0].grid_h, 4);
  EXPECT_EQ(g.images[0].grid_w, 6);
  ASSERT_EQ(g.images[0].pixel_values.size(), image.pixel_values.size());
  EXPECT_EQ(std::memcmp(g.images[0].pixel_values.data(), image.pixel_values.data(),
                        image.pixel_values.size() * sizeof(float)),
            0);
  EXPECT_EQ(g.images[0].content_hash, image.content_hash);
  EXPECT_TRUE(g.images[1].pixel_values.empty());

  in.images.clear();  // a text request carries no "images" key and decodes with none
  EXPECT_TRUE(std::get<GenerateInput>(decode_scheduler_message(encode(in))).images.empty());
}

TEST(Protocol, FrontendMessagesRoundTrip) {
  TokenOutput out;
  out.rid = "r1";
  out.token_ids = {10, 11};
  out.logprobs = {-0.5f, -1.5f};
  out.top_logprobs = {{{10, -0.5f}}, {{11, -1.5f}}};
  out.finished = true;
  out.finish_reason = "stop";
  out.matched_stop_token = 11;
  FrontendMessage back = decode_frontend_message(encode(OutputBatch{{out}}));
  ASSERT_TRUE(std::holds_alternative<OutputBatch>(back));
  const std::vector<TokenOutput>& outputs = std::get<OutputBatch>(back).outputs;
  ASSERT_EQ(outputs.size(), 1u);
  EXPECT_EQ(outputs[0].token_ids, out.token_ids);
  EXPECT_EQ(outputs[0].top_logprobs[1][0].id, 11);
  EXPECT_EQ(outputs[0].finish_reason, "stop");
  EXPECT_EQ(outputs[0].matched_stop_token, 11);

  back = decode_frontend_message(encode(ControlOutput{3, {{"ok", true}}}));
  ASSERT_TRUE(std::holds_alternative<ControlOutput>(back));
  EXPECT_EQ(std::get<ControlOutput>(back).id, 3u);
  EXPECT_EQ(std::get<ControlOutput>(back).result["ok"], true);
}

TEST(Protocol, TheWireIsOneCborObjectWithAType) {
  std::string bytes = encode(ControlInput{"shutdown", 8});
  nlohmann::json m = nlohmann::json::from_cbor(bytes.begin(), bytes.end());
  EXPECT_EQ(m, (nlohmann::json{{"type", "control"}, {"command", "shutdown"}, {"id", 8}}));
}

TEST(Protocol, BadBytesAreAnError) {
  EXPECT_THROW(decode_scheduler_message("not cbor at all"), Error);
  EXPECT_THROW(decode_frontend_message(std::string("\xa0", 1)), Error);  // {} without a type
  std::vector<uint8_t> unknown = nlohmann::json::to_cbor({{"type", "teleport"}});
  EXPECT_THROW(decode_scheduler_message(std::string(unknown.begin(), unknown.end())), Error);
}

}  // namespace
}  // namespace epserve
