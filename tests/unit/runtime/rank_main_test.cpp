#include "runtime/rank_main.h"

#include <gtest/gtest.h>

#include <thread>

#include <fmt/format.h>
#include <zmq.hpp>

#include "runtime/generator.h"
#include "runtime/protocol.h"
#include "support/temp_dir.h"

namespace epserve {
namespace {

std::string fixture(const std::string& name) {
  return std::string(EPSERVE_SOURCE_DIR) + "/tests/data/models/" + name;
}

nlohmann::json receive(zmq::socket_t& socket) {
  zmq::message_t msg;
  EXPECT_TRUE(socket.recv(msg));
  return decode_message(msg.data(), msg.size());
}

TEST(RankMain, ServesRequestsOverZeroMq) {
  testing::TempDir dir;
  RankOptions options;
  options.model_path = fixture("qwen3_moe_tiny");
  options.ipc_base = "ipc://" + dir.file("ep");
  options.max_total_tokens = 512;
  options.log_level = "warning";

  zmq::context_t context(1);
  zmq::socket_t to_rank(context, zmq::socket_type::push);
  zmq::socket_t from_rank(context, zmq::socket_type::pull);
  to_rank.bind(options.ipc_base + "-in-0");
  from_rank.bind(options.ipc_base + "-out");
  from_rank.set(zmq::sockopt::rcvtimeo, 20000);
  int rc = -1;
  std::thread rank([&] { rc = run_rank(options); });

  // Loading progress (one message per layer), then the ready message.
  nlohmann::json ready = receive(from_rank);
  int progress = 0;
  while (ready["result"].contains("load_progress")) {
    EXPECT_EQ(ready["result"]["load_progress"]["done"], ++progress);
    ready = receive(from_rank);
  }
  EXPECT_EQ(progress, 3);
  EXPECT_EQ(ready["type"], "control");
  EXPECT_EQ(ready["id"], 0);
  EXPECT_EQ(ready["result"]["max_total_num_tokens"], 512);

  GenerateInput in;
  in.rid = "x";
  in.input_ids = {5, 9, 77, 300};
  in.max_new_tokens = 6;
  in.sampling.temperature = 0.0f;
  in.ignore_eos = true;
  to_rank.send(zmq::buffer(encode_message({{"type", "generate"}, {"input", in}})));
  std::vector<int32_t> tokens;
  bool finished = false;
  while (!finished) {
    nlohmann::json m = receive(from_rank);
    ASSERT_EQ(m["type"], "outputs");
    for (const auto& o : m["outputs"]) {
      TokenOutput out = o.get<TokenOutput>();
      tokens.insert(tokens.end(), out.token_ids.begin(), out.token_ids.end());
      finished = out.finished;
    }
  }
  GenerateRequest request;
  request.input_ids = in.input_ids;
  request.max_new_tokens = 6;
  request.sampling.temperature = 0.0f;
  request.ignore_eos = true;
  auto model = load_causal_lm(options.model_path);
  EXPECT_EQ(tokens, generate(*model, {request})[0].output_ids);

  to_rank.send(
      zmq::buffer(encode_message({{"type", "control"}, {"command", "get_stats"}, {"id", 7}})));
  nlohmann::json stats = receive(from_rank);
  EXPECT_EQ(stats["id"], 7);
  EXPECT_EQ(stats["result"]["kv_used_tokens"], 0);
  to_rank.send(
      zmq::buffer(encode_message({{"type", "control"}, {"command", "shutdown"}, {"id", 8}})));
  EXPECT_EQ(receive(from_rank)["id"], 8);
  rank.join();
  EXPECT_EQ(rc, 0);
}

}  // namespace
}  // namespace epserve
