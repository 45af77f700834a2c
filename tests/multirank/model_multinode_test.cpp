// `epserve generate` over two "nodes": two network namespaces joined by a veth pair with
// addresses assigned inside them, one command per node with --nnodes 2 --node-rank i
// --dist-init-addr, UCX_TLS=tcp,self so rank traffic crosses the veth. The tokens and logits
// must be those of the same layout on one node.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "netns.h"
#include "support/temp_dir.h"

namespace epserve {
namespace {

std::string model_dir() { return std::string(EPSERVE_SOURCE_DIR) + "/tests/data/models/deepseek_v3_tiny"; }

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
    char buf[1024];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), nodes[node])) > 0) log.append(buf, n);
    int status = pclose(nodes[node]);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "node " << node << ": " << log;
  }
  EXPECT_GT(ns.veth_rx_bytes() - rx_before, 100000) << "rank traffic did not cross the veth";
  std::ifstream a(one), b(two);
  ASSERT_TRUE(a.good() && b.good());
  EXPECT_EQ(nlohmann::json::parse(a), nlohmann::json::parse(b));
}

}  // namespace
}  // namespace epserve
