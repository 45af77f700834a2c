#include "netns.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "comm/world.h"
#include "core/error.h"

extern char** environ;

namespace epserve::test {

int run_command(const std::string& cmd, std::string* output) {
  FILE* pipe = popen((cmd + " 2>&1").c_str(), "r");
  if (!pipe) return -1;
  char buf[256];
  while (std::fgets(buf, sizeof(buf), pipe)) output->append(buf);
  int status = pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

namespace {

pid_t spawn_node(const Namespaces& ns, int node, int nnodes, int world_size,
                 const RankRunOptions& options) {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) env.push_back(*e);
  env.push_back("EPSERVE_TEST_NODE=" + std::to_string(node));
  env.push_back("EPSERVE_TEST_NNODES=" + std::to_string(nnodes));
  env.push_back("EPSERVE_TEST_WORLD=" + std::to_string(world_size));
  env.push_back("EPSERVE_TEST_ADDR=" + ns.node0_addr());
  env.push_back("UCX_TLS=tcp,self");
  for (auto& [k, v] : options.env) env.push_back(k + "=" + v);
  char self[4096];
  ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
  EPS_CHECK(len > 0, "cannot resolve the test executable");
  self[len] = '\0';
  std::vector<std::string> args = {
      "ip", "netns", "exec", ns.name(node), self, "--gtest_filter=" + current_test_filter()};
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    execvpe("ip", argv.data(), envp.data());
    _exit(127);
  }
  return pid;
}

}  // namespace

int run_nodes(int nnodes, int world_size, const std::function<void(const RankInfo&)>& body,
              const RankRunOptions& options, std::string* why, long long* veth_bytes) {
  if (is_rank_process()) return run_ranks(world_size, body, options);  // runs body, exits
  if (const char* node = std::getenv("EPSERVE_TEST_NODE")) {
    LaunchOptions launch;
    launch.world_size = std::atoi(std::getenv("EPSERVE_TEST_WORLD"));
    launch.nnodes = std::atoi(std::getenv("EPSERVE_TEST_NNODES"));
    launch.node_rank = std::atoi(node);
    launch.dist_init_addr = std::getenv("EPSERVE_TEST_ADDR");
    launch.args = {"multirank_tests", "--gtest_filter=" + current_test_filter()};
    launch.grace = options.grace;
    int code = 1;
    try {
      code = run_launcher(launch);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "node %s: %s\n", node, e.what());
    }
    std::fflush(stderr);
    _exit(code);
  }
  EPS_CHECK(nnodes == 2, "run_nodes supports 2 nodes (one veth pair), asked for {}", nnodes);
  Namespaces ns(nnodes);
  if (!ns.create(why)) return kSkipped;
  unsetenv("EPSERVE_TEST_DIR");
  std::string dir = test_dir();
  std::vector<pid_t> pids;
  for (int node = 0; node < nnodes; ++node) {
    pids.push_back(spawn_node(ns, node, nnodes, world_size, options));
  }
  int worst = 0;
  for (pid_t pid : pids) {
    int status = 0;
    waitpid(pid, &status, 0);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    worst = std::max(worst, code);
  }
  if (veth_bytes) *veth_bytes = ns.veth_rx_bytes();
  return worst;
}

}  // namespace epserve::test
