// `epserve serve` with DP attention over two "nodes" (network namespaces joined by a veth pair,
// UCX_TLS=tcp,self): `--tp-size 2 --enable-dp-attention --dp-size 2`, one rank per node, so DP
// group 1 is led from node 1 and its scheduler reaches node 0's frontend over tcp:// (CURVE with
// the job's secret, runtime/control_plane.h). Greedy tokens from both groups equal one rank's,
// for both architectures; the recorder endpoints, EPLB rebalancing, metrics and abort on client
// disconnect work across the nodes; strangers on the network are refused by the control plane;
// a rank that dies on node 1 stops the server with an error instead of a hang.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <regex>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "comm/store.h"
#include "netns.h"
#include "runtime/control_plane.h"
#include "runtime/ipc.h"
#include "support/temp_dir.h"

namespace epserve {
namespace {

std::string model_dir(const std::string& name) {
  return std::string(EPSERVE_SOURCE_DIR) + "/tests/data/models/" + name;
}

// Both nodes' job secret (comm/store_secret.h), known here so that the test can read the store.
const std::string kJobSecret = "dp-multinode-test-secret-0123456789";

const std::vector<std::vector<int>> kPrompts = {{5, 6, 7, 8}, {9, 10, 11, 12, 13, 14, 15}};

// One rank's greedy tokens for kPrompts (`epserve generate`, no parallel flags).
nlohmann::json one_rank_tokens(const std::string& model, const testing::TempDir& dir) {
  std::string out;
  std::string file = dir.file("one.json");
  EXPECT_EQ(test::run_command(
                fmt::format("{} generate --model-path {} --input-ids 5,6,7,8 --input-ids "
                            "9,10,11,12,13,14,15 --max-new-tokens 6 --ignore-eos --output {}",
                            EPSERVE_BINARY, model, file),
                &out),
            0)
      << out;
  std::ifstream f(file);
  nlohmann::json j = nlohmann::json::parse(f);
  return nlohmann::json::array({j["sequences"][0]["output_ids"], j["sequences"][1]["output_ids"]});
}

// The two node commands of one server, each `epserve serve` in its namespace.
class TwoNodeServer {
 public:
  TwoNodeServer(const test::Namespaces& ns, const testing::TempDir& dir, const std::string& model,
                const std::string& flags)
      : ns_(ns), dir_(dir), host_(ns.node0_addr().substr(0, ns.node0_addr().find(':'))) {
    for (int node = 0; node < 2; ++node) {
      std::string cmd = fmt::format(
          "UCX_TLS=tcp,self EPSERVE_STORE_SECRET={} EPSERVE_EXPERT_DISTRIBUTION_RECORDER_DIR={} "
          "ip netns exec {} sh -c "
          "'echo $$ > {}; exec {} serve --model-path {} {} --nnodes 2 --node-rank {} "
          "--dist-init-addr {} --host {} --port 30000' > {} 2>&1",
          kJobSecret, dir.path(), ns.name(node), dir.file("pid" + std::to_string(node)),
          EPSERVE_BINARY, model, flags, node, ns.node0_addr(), host_, log_file(node));
      nodes_.push_back(popen(cmd.c_str(), "r"));
    }
  }
  ~TwoNodeServer() {
    if (!finished_) finish();
  }
  const std::string& host() const { return host_; }
  std::string url(const std::string& path) const {
    return fmt::format("http://{}:30000{}", host_, path);
  }
  // curl inside node 0's namespace; returns the body (and the exit status in *status).
  std::string curl(const std::string& args, int* status = nullptr) const {
    std::string out;
    int rc = test::run_command(fmt::format("ip netns exec {} curl -s {}", ns_.name(0), args), &out);
    if (status) *status = rc;
    return out;
  }
  bool wait_healthy() const {
    for (int i = 0; i < 900; ++i) {
      int rc = 0;
      curl("-f " + url("/health"), &rc);
      if (rc == 0) return true;
      usleep(200000);
    }
    return false;
  }
  nlohmann::json generate(const std::vector<int>& ids, int max_new_tokens = 6) const {
    nlohmann::json body = {
        {"input_ids", ids},
        {"sampling_params",
         {{"max_new_tokens", max_new_tokens}, {"temperature", 0}, {"ignore_eos", true}}}};
    std::string answer = curl(fmt::format("-H 'Content-Type: application/json' -d '{}' {}",
                                          body.dump(), url("/generate")));
    return nlohmann::json::parse(answer, nullptr, false);
  }
  // The sum of a metric's samples on /metrics (-1 when absent).
  double metric(const std::string& name) const {
    std::string text = curl(url("/metrics"));
    std::regex line("^" + name + "(\\{[^}]*\\})? (\\S+)$", std::regex::multiline);
    double sum = -1;
    for (std::sregex_iterator it(text.begin(), text.end(), line), end; it != end; ++it) {
      sum = std::max(sum, 0.0) + std::stod((*it)[2]);
    }
    return sum;
  }
  // A node's output so far (a file, so that a busy node never blocks on a full pipe).
  std::string log(int node) const {
    std::ifstream f(log_file(node));
    return std::string(std::istreambuf_iterator<char>(f), {});
  }
  int pid(int node) const {
    std::ifstream f(dir_.file("pid" + std::to_string(node)));
    int pid = 0;
    f >> pid;
    return pid;
  }
  // Reads both nodes' output to the end (after SIGTERM to node 0 when `stop`); true per node
  // that exited 0.
  std::vector<bool> finish(bool stop = true) {
    finished_ = true;
    if (stop && pid(0) > 0) kill(pid(0), SIGTERM);
    std::vector<bool> clean;
    logs_.clear();
    for (size_t node = 0; node < nodes_.size(); ++node) {
      int status = pclose(nodes_[node]);
      clean.push_back(WIFEXITED(status) && WEXITSTATUS(status) == 0);
      logs_.push_back(log(static_cast<int>(node)));
    }
    return clean;
  }
  const std::vector<std::string>& logs() const { return logs_; }

 private:
  std::string log_file(int node) const { return dir_.file("node" + std::to_string(node) + ".log"); }

  const test::Namespaces& ns_;
  const testing::TempDir& dir_;
  std::string host_;
  std::vector<FILE*> nodes_;
  std::vector<std::string> logs_;
  bool finished_ = false;
};

// From node 1's namespace, knocks on the frontend's tcp:// sockets (read from the store, as a
// leader does) with ZeroMQ clients that lack the job's secret: one without CURVE, one with
// another job's keys, one with the server's public key but another client key. Runs in a child
// process that joins node 1's network namespace.
void knock_without_the_secret(const test::Namespaces& ns, const TwoNodeServer& server,
                              const testing::TempDir& dir) {
  const std::string stop_file = dir.file("knocked");
  pid_t child = fork();
  if (child == 0) {
    int fd = open(("/var/run/netns/" + ns.name(1)).c_str(), O_RDONLY);
    if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) _exit(2);
    StoreClient store(ns.node0_addr(), kJobSecret, std::chrono::seconds(10));
    ControlPlaneEndpoints frontend = ControlPlaneEndpoints::from_json(
        store.get(kControlPlaneKey, std::chrono::seconds(10), "the control plane"));
    std::vector<std::string> endpoints = frontend.in;
    endpoints.push_back(frontend.out);
    if (endpoints.size() != 3 || frontend.out.rfind("tcp://10.", 0) != 0) _exit(3);
    IpcContext context;
    std::vector<IpcSocket> sockets;
    // A PULL on the frontend's per-group PUSH sockets would read requests; a PUSH on its PULL
    // would inject outputs.
    auto knock = [&](const std::string& endpoint, IpcSocket::Kind kind, const char* server_secret,
                     const char* client_secret) {
      sockets.emplace_back(context, kind, 0);
      if (server_secret) sockets.back().secure_as_client(server_secret, client_secret);
      sockets.back().connect(endpoint);
      if (kind == IpcSocket::Kind::kPush) (void)sockets.back().send("not a message", false);
    };
    const char* other = "another job's secret, 32 chars..";
    for (const std::string& endpoint : endpoints) {
      auto kind = endpoint == frontend.out ? IpcSocket::Kind::kPush : IpcSocket::Kind::kPull;
      knock(endpoint, kind, nullptr, nullptr);  // no CURVE
      knock(endpoint, kind, other, other);      // another job's keys
      // The server's public key (learned somehow) but not the job's client key.
      knock(endpoint, kind, kJobSecret.c_str(), other);
    }
    // Until the parent has seen the frontend refuse them (at most 60 s).
    for (int i = 0; i < 600 && access(stop_file.c_str(), F_OK) != 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      for (IpcSocket& socket : sockets) {
        if (socket.receive()) _exit(4);  // a stranger read a request
      }
    }
    _exit(0);
  }
  bool refused = false;
  for (int i = 0; i < 600 && !refused; ++i) {
    refused = server.log(0).find("control plane: refused a connection from") != std::string::npos;
    if (!refused) usleep(100000);
  }
  EXPECT_TRUE(refused) << "the frontend never logged a refused connection";
  dir.write("knocked", "");
  int status = 0;
  waitpid(child, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "the knocking child failed with status " << status;
}

class DpAttentionMultiNode : public ::testing::TestWithParam<std::string> {};

TEST_P(DpAttentionMultiNode, ServesWithGroupsLedFromBothNodes) {
  test::Namespaces ns(2);
  std::string why;
  if (!ns.create(&why)) GTEST_SKIP() << why;
  testing::TempDir dir;
  const std::string model = model_dir(GetParam());
  const nlohmann::json expected = one_rank_tokens(model, dir);
  TwoNodeServer server(ns, dir, model,
                       "--tp-size 2 --enable-dp-attention --dp-size 2 --ep-size 2 "
                       "--moe-a2a-backend deepep --enable-eplb --ep-num-redundant-experts 2 "
                       "--eplb-rebalance-num-iterations 4 --expert-distribution-recorder-mode "
                       "stat --enable-expert-distribution-metrics --max-total-tokens 16384");
  const bool healthy = server.wait_healthy();
  if (healthy) {
    // Round robin: the first request goes to group 0 (node 0), the second to group 1 (node 1).
    for (size_t i = 0; i < 2 * kPrompts.size(); ++i) {
      nlohmann::json body = server.generate(kPrompts[i % kPrompts.size()]);
      ASSERT_FALSE(body.is_discarded());
      EXPECT_EQ(body["output_ids"], expected[i % kPrompts.size()]) << body.dump();
    }
    // The recorder endpoints are collective over both nodes.
    EXPECT_NE(server.curl("-X POST " + server.url("/start_expert_distribution_record"))
                  .find("Start recording the expert distribution."),
              std::string::npos);
    server.generate(kPrompts[0]);
    server.curl("-X POST " + server.url("/stop_expert_distribution_record"));
    EXPECT_NE(
        server.curl("-X POST " + server.url("/dump_expert_distribution_record")).find("Written to"),
        std::string::npos);
    // EPLB rebalances every 4 passes; the greedy tokens stay those of one rank.
    for (int i = 0; i < 20 && server.metric("epserve:eplb_rebalances_total") < 1; ++i) {
      server.generate(kPrompts[i % 2]);
    }
    EXPECT_GE(server.metric("epserve:eplb_rebalances_total"), 1);
    for (size_t i = 0; i < kPrompts.size(); ++i) {
      EXPECT_EQ(server.generate(kPrompts[i])["output_ids"], expected[i]);
    }
    // Streaming clients that hang up: one long request per group, both aborted at their
    // scheduler (their KV freed) instead of running to the end.
    const double aborted_before = std::max(0.0, server.metric("sglang:num_aborted_requests_total"));
    nlohmann::json long_body = {
        {"input_ids", kPrompts[0]},
        {"stream", true},
        {"sampling_params", {{"max_new_tokens", 4000}, {"ignore_eos", true}}}};
    std::string long_curl =
        fmt::format("-N -m 1 -o /dev/null -H 'Content-Type: application/json' -d '{}' {}",
                    long_body.dump(), server.url("/generate"));
    std::thread first([&] { server.curl(long_curl); });
    server.curl(long_curl);
    first.join();
    nlohmann::json info;
    auto idle = [&] {
      info = nlohmann::json::parse(server.curl(server.url("/get_server_info")), nullptr, false);
      if (info.is_discarded() || info["num_requests_in_flight"] != 0) return false;
      for (const auto& group : info["internal_states"]) {
        if (group["num_running_reqs"] != 0 || group["kv_used_tokens"] != 0) return false;
      }
      return true;
    };
    for (int i = 0; i < 300 && !idle(); ++i) usleep(100000);
    EXPECT_TRUE(idle()) << info.dump();
    EXPECT_EQ(info["internal_states"].size(), 2u) << info.dump();
    EXPECT_GE(server.metric("sglang:num_aborted_requests_total"), aborted_before + 2);
    // Strangers on node 1's network are refused and change nothing.
    knock_without_the_secret(ns, server, dir);
    EXPECT_EQ(server.generate(kPrompts[1])["output_ids"], expected[1]);
  }
  std::vector<bool> clean = server.finish();
  std::string logs = fmt::format("node 0:\n{}\nnode 1:\n{}", server.logs()[0], server.logs()[1]);
  ASSERT_TRUE(healthy) << "the two-node server never answered /health\n" << logs;
  EXPECT_TRUE(clean[0] && clean[1]) << logs;
}

INSTANTIATE_TEST_SUITE_P(Models, DpAttentionMultiNode,
                         ::testing::Values("deepseek_v3_tiny", "qwen3_moe_tiny"));

// The leader of group 1 (on node 1) dies while serving: node 0's server reports it and exits
// non-zero, and a request in flight ends instead of hanging.
TEST(DpAttentionMultiNodeFaults, RemoteLeaderThatDiesStopsTheServer) {
  test::Namespaces ns(2);
  std::string why;
  if (!ns.create(&why)) GTEST_SKIP() << why;
  testing::TempDir dir;
  TwoNodeServer server(ns, dir, model_dir("deepseek_v3_tiny"),
                       "--tp-size 2 --enable-dp-attention --dp-size 2 --ep-size 2 "
                       "--moe-a2a-backend deepep --max-total-tokens 16384");
  const bool healthy = server.wait_healthy();
  int curl_status = -1;
  if (healthy) {
    server.generate(kPrompts[0]);  // group 0; the next request goes to group 1
    std::string rank;
    test::run_command(fmt::format("pgrep -P {}", server.pid(1)), &rank);
    ASSERT_GT(std::atoi(rank.c_str()), 0) << "no rank process under node 1's server";
    std::thread in_flight([&] {
      nlohmann::json body = {{"input_ids", kPrompts[1]},
                             {"sampling_params", {{"max_new_tokens", 4000}, {"ignore_eos", true}}}};
      server.curl(fmt::format("-m 300 -H 'Content-Type: application/json' -d '{}' {}", body.dump(),
                              server.url("/generate")),
                  &curl_status);
    });
    usleep(300000);
    kill(std::atoi(rank.c_str()), SIGKILL);
    in_flight.join();
  }
  std::vector<bool> clean = server.finish(/*stop=*/false);
  std::string logs = fmt::format("node 0:\n{}\nnode 1:\n{}", server.logs()[0], server.logs()[1]);
  ASSERT_TRUE(healthy) << logs;
  EXPECT_NE(curl_status, 28) << "the request in flight hung until curl's timeout\n" << logs;
  EXPECT_FALSE(clean[0]) << logs;
  EXPECT_NE(server.logs()[0].find("rank 1"), std::string::npos) << logs;
  EXPECT_NE(server.logs()[0].find("the ranks stopped; stopping the server"), std::string::npos)
      << logs;
}

}  // namespace
}  // namespace epserve
