#include "runtime/rank_main.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <variant>

#include <fmt/format.h>

#include "runtime/generator.h"
#include "runtime/ipc.h"
#include "runtime/protocol.h"
#include "support/temp_dir.h"

namespace epserve {
namespace {

std::string fixture(const std::string& name) {
  return std::string(EPSERVE_SOURCE_DIR) + "/tests/data/models/" + name;
}

// The next message from the rank (waiting up to 20 s).
FrontendMessage receive(IpcSocket& socket) {
  ipc_poll(socket, -1, std::chrono::seconds(20));
  std::optional<std::string> bytes = socket.receive();
  if (!bytes) throw std::runtime_error("no message from the rank within 20 s");
  return decode_frontend_message(*bytes);
}

ControlOutput receive_control(IpcSocket& socket) {
  FrontendMessage m = receive(socket);
  if (!std::holds_alternative<ControlOutput>(m)) throw std::runtime_error("expected a control");
  return std::get<ControlOutput>(std::move(m));
}

TEST(RankMain, ServesRequestsOverZeroMq) {
  testing::TempDir dir;
  RankOptions options;
  options.model_path = fixture("qwen3_moe_tiny");
  options.ipc_base = "ipc://" + dir.file("ep");
  options.max_total_tokens = 512;
  options.log_level = "warning";

  IpcContext context;
  IpcSocket to_rank(context, IpcSocket::Kind::kPush);
  IpcSocket from_rank(context, IpcSocket::Kind::kPull);
  to_rank.bind(options.ipc_base + "-in-0");
  from_rank.bind(options.ipc_base + "-out");
  int rc = -1;
  std::thread rank([&] { rc = run_rank(options); });

  // Loading progress (one message per layer), then the ready message.
  ControlOutput ready = receive_control(from_rank);
  int progress = 0;
  while (ready.result.contains("load_progress")) {
    EXPECT_EQ(ready.result["load_progress"]["done"], ++progress);
    ready = receive_control(from_rank);
  }
  EXPECT_EQ(progress, 3);
  EXPECT_EQ(ready.id, 0u);
  EXPECT_EQ(ready.result["max_total_num_tokens"], 512);

  GenerateInput in;
  in.rid = "x";
  in.input_ids = {5, 9, 77, 300};
  in.max_new_tokens = 6;
  in.sampling.temperature = 0.0f;
  in.ignore_eos = true;
  to_rank.send(encode(in));
  std::vector<int32_t> tokens;
  bool finished = false;
  while (!finished) {
    FrontendMessage m = receive(from_rank);
    ASSERT_TRUE(std::holds_alternative<OutputBatch>(m));
    for (const TokenOutput& out : std::get<OutputBatch>(m).outputs) {
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

  to_rank.send(encode(ControlInput{"get_stats", 7}));
  ControlOutput stats = receive_control(from_rank);
  EXPECT_EQ(stats.id, 7u);
  EXPECT_EQ(stats.result["kv_used_tokens"], 0);
  to_rank.send(encode(ControlInput{"shutdown", 8}));
  EXPECT_EQ(receive_control(from_rank).id, 8u);
  rank.join();
  EXPECT_EQ(rc, 0);
}

}  // namespace
}  // namespace epserve
