// RankInfo from the environment, and the core plan the launcher pins ranks with.
#include <sched.h>

#include <cstdlib>
#include <sstream>

#include "comm/launcher.h"
#include "comm/store_secret.h"
#include "core/error.h"

namespace epserve {
namespace {

int env_int(const char* name, int fallback) {
  const char* value = std::getenv(name);
  if (!value || !*value) return fallback;
  char* end = nullptr;
  long parsed = std::strtol(value, &end, 10);
  EPS_CHECK(end && *end == '\0', "environment variable {}='{}' is not an integer", name, value);
  return static_cast<int>(parsed);
}

std::vector<int> parse_cores(const char* text) {
  std::vector<int> cores;
  if (!text) return cores;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (!item.empty()) cores.push_back(std::stoi(item));
  }
  return cores;
}

}  // namespace

bool is_rank_process() {
  return std::getenv(kEnvRank) != nullptr;
}

std::vector<int> allowed_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cores;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    for (int c = 0; c < CPU_SETSIZE; ++c) {
      if (CPU_ISSET(c, &set)) cores.push_back(c);
    }
  }
  if (cores.empty()) cores.push_back(0);
  return cores;
}

RankInfo rank_info_from_env() {
  RankInfo info;
  if (!is_rank_process()) {
    info.num_threads = static_cast<int>(allowed_cores().size());
    return info;
  }
  info.rank = env_int(kEnvRank, 0);
  info.world_size = env_int(kEnvWorldSize, 1);
  info.local_rank = env_int(kEnvLocalRank, 0);
  info.local_world_size = env_int(kEnvLocalWorldSize, 1);
  info.node_rank = env_int(kEnvNodeRank, 0);
  info.nnodes = env_int(kEnvNnodes, 1);
  if (const char* addr = std::getenv(kEnvStoreAddr)) info.store_addr = addr;
  if (const char* secret = std::getenv(kEnvStoreSecret)) info.store_secret = secret;
  info.cpu_cores = parse_cores(std::getenv(kEnvCpuCores));
  info.num_threads = std::max(1, env_int(kEnvNumThreads, 1));
  EPS_CHECK(info.world_size >= 1 && info.rank >= 0 && info.rank < info.world_size,
            "{}={} must be in [0, {}={})", kEnvRank, info.rank, kEnvWorldSize, info.world_size);
  return info;
}

std::vector<std::vector<int>> plan_core_sets(const std::vector<int>& cores, int local_ranks) {
  std::vector<std::vector<int>> sets(std::max(0, local_ranks));
  int n = static_cast<int>(cores.size());
  if (local_ranks <= 0 || n < local_ranks) return sets;
  for (int r = 0; r < local_ranks; ++r) {
    int begin = static_cast<int>(int64_t(n) * r / local_ranks);
    int end = static_cast<int>(int64_t(n) * (r + 1) / local_ranks);
    sets[r].assign(cores.begin() + begin, cores.begin() + end);
  }
  return sets;
}

int suggested_threads(int num_cores, int local_ranks) {
  return std::max(1, num_cores / std::max(1, local_ranks));
}

}  // namespace epserve
