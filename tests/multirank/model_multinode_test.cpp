// `epserve generate` over two "nodes": two network namespaces joined by a veth pair with
// addresses assigned inside them, one command per node with --nnodes 2 --node-rank i
// --dist-init-addr, UCX_TLS=tcp,self so rank traffic crosses the veth. The tokens and logits
// must be those of the same layout on one node.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "netns.h"
#include "support/temp_dir.h"

namespace epserve {
namespace {

std::string model_dir() {
  return std::string(EPSERVE_SOURCE_DIR) + "/tests/data/models/deepseek_v3_tiny";
}

// Reads a popen'ed node command to its end; true when it exited with status 0.
bool finished_cleanly(FILE* node, std::string* log) {
  char buf[1024];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), node)) > 0) log->append(buf, n);
  int status = pclose(node);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

const char* kPrompts = "--input-ids 5,6,7,8 --input-ids 9,10,11,12,13,14,15,16,17,18,19";

TEST(ModelMultiNode, TwoNodesGiveTheTokensOfOneNode) {
  test::Namespaces ns(2);
  std::string why;
  if (!ns.create(&why)) GTEST_SKIP() << why;
  testing::TempDir dir;
  const std::string flags =
      "--ep-size 4 --moe-a2a-backend deepep --max-new-tokens 6 --ignore-eos --return-logits";
  std::string one = dir.file("one.json");
  std::string out;
  ASSERT_EQ(test::run_command(fmt::format("UCX_TLS=tcp,self {} generate --model-path {} {} {} "
                                          "--output {}",
                                          EPSERVE_BINARY, model_dir(), kPrompts, flags, one),
                              &out),
            0)
      << out;
  long long rx_before = ns.veth_rx_bytes();
  std::string two = dir.file("two.json");
  std::vector<FILE*> nodes;
  for (int node = 0; node < 2; ++node) {
    std::string cmd = fmt::format(
        "UCX_TLS=tcp,self ip netns exec {} {} generate --model-path {} {} {} --nnodes 2 "
        "--node-rank {} --dist-init-addr {} --output {} 2>&1",
        ns.name(node), EPSERVE_BINARY, model_dir(), kPrompts, flags, node, ns.node0_addr(),
        node == 0 ? two : dir.file("unused.json"));
    nodes.push_back(popen(cmd.c_str(), "r"));
  }
  for (int node = 0; node < 2; ++node) {
    std::string log;
    EXPECT_TRUE(finished_cleanly(nodes[node], &log)) << "node " << node << ": " << log;
  }
  EXPECT_GT(ns.veth_rx_bytes() - rx_before, 100000) << "rank traffic did not cross the veth";
  std::ifstream a(one), b(two);
  ASSERT_TRUE(a.good() && b.good());
  EXPECT_EQ(nlohmann::json::parse(a), nlohmann::json::parse(b));
}

// `epserve serve` over two nodes: node 0 runs the HTTP server, the frontend and rank 0 (the
// leader); node 1 runs rank 1, a follower. Greedy tokens through HTTP equal one node's `generate`.
TEST(ModelMultiNode, ServeOverTwoNodes) {
  test::Namespaces ns(2);
  std::string why;
  if (!ns.create(&why)) GTEST_SKIP() << why;
  testing::TempDir dir;
  const std::string layout = "--tp-size 2 --ep-size 2 --moe-a2a-backend deepep";
  std::string out;
  ASSERT_EQ(
      test::run_command(fmt::format("UCX_TLS=tcp,self {} generate --model-path {} "
                                    "--input-ids 5,6,7,8 --max-new-tokens 6 --ignore-eos "
                                    "{} --output {}",
                                    EPSERVE_BINARY, model_dir(), layout, dir.file("one.json")),
                        &out),
      0)
      << out;
  std::ifstream one_file(dir.file("one.json"));
  auto expected = nlohmann::json::parse(one_file)["sequences"][0]["output_ids"];
  const std::string host = ns.node0_addr().substr(0, ns.node0_addr().find(':'));
  long long rx_before = ns.veth_rx_bytes();
  std::vector<FILE*> nodes;
  for (int node = 0; node < 2; ++node) {
    std::string cmd = fmt::format(
        "UCX_TLS=tcp,self ip netns exec {} sh -c 'echo $$ > {}; exec {} serve --model-path {} {} "
        "--nnodes 2 --node-rank {} --dist-init-addr {} --host {} --port 30000 "
        "--max-total-tokens 4096 --log-level warning' 2>&1",
        ns.name(node), dir.file("pid" + std::to_string(node)), EPSERVE_BINARY, model_dir(), layout,
        node, ns.node0_addr(), host);
    nodes.push_back(popen(cmd.c_str(), "r"));
  }
  const std::string curl = fmt::format("ip netns exec {} curl -sf", ns.name(0));
  const std::string url = fmt::format("http://{}:30000", host);
  bool healthy = false;
  for (int i = 0; i < 600 && !healthy; ++i) {
    healthy = test::run_command(curl + " " + url + "/health", &out) == 0;
    if (!healthy) usleep(200000);
  }
  std::string answer;
  if (healthy) {
    test::run_command(curl +
                          " -H 'Content-Type: application/json' -d '{\"input_ids\": [5, 6, 7, 8], "
                          "\"sampling_params\": {\"max_new_tokens\": 6, \"temperature\": 0, "
                          "\"ignore_eos\": true}}' " +
                          url + "/generate",
                      &answer);
  }
  std::ifstream pid_file(dir.file("pid0"));
  int pid = 0;
  pid_file >> pid;
  if (pid > 0) kill(pid, SIGTERM);
  std::string logs;
  for (int node = 0; node < 2; ++node) {
    std::string log;
    EXPECT_TRUE(finished_cleanly(nodes[node], &log)) << "node " << node << ": " << log;
    logs += fmt::format("node {}:\n{}\n", node, log);
  }
  ASSERT_TRUE(healthy) << "the two-node server never answered /health\n" << logs;
  auto body = nlohmann::json::parse(answer, nullptr, false);
  ASSERT_FALSE(body.is_discarded()) << answer << "\n" << logs;
  EXPECT_EQ(body["output_ids"], expected) << answer;
  EXPECT_GT(ns.veth_rx_bytes() - rx_before, 10000) << "rank traffic did not cross the veth";
}

}  // namespace
}  // namespace epserve
