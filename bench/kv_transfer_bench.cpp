// PD disaggregation's KV transfer through the path the server uses, against UCX's own put
// bandwidth in the same run. A child process plays a decode rank: a KV cache (model/kv_cache.h)
// of `layers` MLA rows of `width` floats per token, its memory from the rank's KV agent
// (disagg/kv_agent.h: allocated by UCX, as a decode server does), and, for comparison, a second
// decode rank whose cache is on the heap (registered with UCX, as before). This process plays a
// prefill rank (its own agent and cache) and sends a prompt of `tokens` tokens into `page`-token
// pages the decode side holds in shuffled order, through KvTransferAgent::send (the puts, then a
// flush to remote completion). Each round, interleaved: one transfer to each decode rank, then
// `ucx_perftest -t ucp_put_bw` between two local processes with one message of the transfer's
// size (at most 256 MiB; past the caches, like the transfer's working set) and, for reference,
// with messages of the transfer's put size. Figures are the median (min, max) of the rounds;
// the ratio is taken per round.
//
//   kv_transfer_bench [tokens=2048] [layers=61] [floats_per_token_per_layer=576] [page=64]
//                     [rounds=5] [source=heap|ucx]
//   UCX_TLS=tcp,self kv_transfer_bench ...   (as between two nodes over TCP)
// `source=ucx`: the prefill rank's cache also comes from UCX (KvAgentOptions::allocate_source_kv).
// UCX_TLS sets without a transport for active messages (cma,self; posix,cma,self) are not
// supported: the connection is never wired up and the bench ends at the transfer timeout.
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "disagg/kv_agent.h"
#include "model/kv_cache.h"

using namespace epserve;

namespace {

void write_all(int fd, const std::string& s) {
  uint64_t n = s.size();
  (void)!write(fd, &n, 8);
  for (size_t off = 0; off < s.size();)
    off += std::max<ssize_t>(0, write(fd, s.data() + off, s.size() - off));
}

std::string read_all(int fd) {
  uint64_t n = 0;
  if (read(fd, &n, 8) != 8) return "";
  std::string s(n, '\0');
  for (size_t off = 0; off < n;) {
    ssize_t r = read(fd, s.data() + off, n - off);
    if (r <= 0) return "";
    off += r;
  }
  return s;
}

// MB/s of ucx_perftest ucp_put_bw with messages of `bytes`, or -1. `peer_errors`: endpoints with
// error handling (-e), as RmaAgent creates them (UCP_ERR_HANDLING_MODE_PEER).
double perftest_mb_s(size_t bytes, int iters, bool peer_errors) {
  static int port = 20000 + getpid() % 20000;
  ++port;
  const std::string e = peer_errors ? " -e" : "";
  std::string server = "ucx_perftest -p " + std::to_string(port) + e + " >/dev/null 2>&1 &";
  if (std::system(server.c_str()) != 0) return -1;
  usleep(300000);
  std::string client = "ucx_perftest 127.0.0.1 -p " + std::to_string(port) + e +
                       " -t ucp_put_bw -s " + std::to_string(bytes) + " -n " +
                       std::to_string(iters) + " -w " + std::to_string(std::max(1, iters / 10)) +
                       " 2>/dev/null | grep Final:";
  FILE* p = popen(client.c_str(), "r");
  if (!p) return -1;
  char line[512] = {0};
  double mb = -1;
  if (fgets(line, sizeof(line), p)) {
    double it, a, b, c, bw_avg, bw_overall;
    if (sscanf(line, "Final: %lf %lf %lf %lf %lf %lf", &it, &a, &b, &c, &bw_avg, &bw_overall) == 6)
      mb = bw_overall;
  }
  pclose(p);
  return mb;
}

struct Spread {
  std::vector<double> v;
  double median() {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
  }
  std::string text() {
    const double m = median();
    return fmt::format("{:.0f} (min {:.0f}, max {:.0f})", m, v.empty() ? 0 : v.front(),
                       v.empty() ? 0 : v.back());
  }
};

// A rank's KV agent and its cache, as rank_main.cpp makes them.
struct Rank {
  std::unique_ptr<KvTransferAgent> agent;
  std::unique_ptr<KvCache> cache;
};

Rank make_rank(const KvAgentOptions& options, int64_t layers, int64_t slots, int64_t width) {
  Rank r;
  r.agent = make_ucx_kv_agent_factory(options)();
  r.cache = std::make_unique<KvCache>(layers, slots, KvLayout{width, 0},
                                      [&](size_t bytes) { return r.agent->allocate_kv(bytes); });
  KvMemory m;
  for (int64_t l = 0; l < layers; ++l) m.k.push_back(r.cache->k(l));
  m.num_slots = slots;
  m.k_width = width;
  m.mla = true;
  r.agent->attach(m);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t tokens = argc > 1 ? std::atoll(argv[1]) : 2048;
  const int64_t layers = argc > 2 ? std::atoll(argv[2]) : 61;
  const int64_t width = argc > 3 ? std::atoll(argv[3]) : 576;  // DeepSeek-V3's latent + rope
  const int64_t page = argc > 4 ? std::atoll(argv[4]) : 64;
  const int rounds = argc > 5 ? std::atoi(argv[5]) : 5;
  const bool source_ucx = argc > 6 && std::string(argv[6]) == "ucx";
  const int64_t slots = (tokens / page + 2) * page;  // the decode cache: the prompt and a little
  const auto timeout = std::chrono::seconds(60);

  int to_parent[2], to_child[2];
  if (pipe(to_parent) != 0 || pipe(to_child) != 0) return 1;
  pid_t child = fork();
  if (child == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlives the writer
    close(to_parent[0]);
    close(to_child[1]);
    Rank ucx = make_rank({"decode", "", timeout, true}, layers, slots, width);
    Rank heap = make_rank({"decode", "", timeout, false}, layers, slots, width);
    write_all(to_parent[1], ucx.agent->describe().dump());
    write_all(to_parent[1], heap.agent->describe().dump());
    write_all(to_parent[1], ucx.cache->external() ? "ucx" : "heap (UCX could not allocate)");
    read_all(to_child[0]);  // until the writer is done
    _exit(0);
  }
  close(to_parent[1]);
  close(to_child[0]);
  KvAgentOptions prefill_options{"prefill", "", timeout};
  prefill_options.allocate_source_kv = source_ucx;
  Rank prefill = make_rank(prefill_options, layers, tokens, width);
  const nlohmann::json ucx_rank = nlohmann::json::parse(read_all(to_parent[0]));
  const nlohmann::json heap_rank = nlohmann::json::parse(read_all(to_parent[0]));
  const std::string decode_memory = read_all(to_parent[0]);
  for (int64_t l = 0; l < layers; ++l) {
    std::iota(prefill.cache->k(l), prefill.cache->k(l) + tokens * width, 1.0f);
  }
  // The decode side's pages in shuffled order; the prefill side's slots 0..tokens-1.
  std::vector<int32_t> pages(slots / page);
  std::iota(pages.begin(), pages.end(), 0);
  std::shuffle(pages.begin(), pages.end(), std::mt19937(7));
  std::vector<int32_t> src_slots(tokens), dst_slots(tokens);
  for (int64_t t = 0; t < tokens; ++t) {
    src_slots[t] = static_cast<int32_t>(t);
    dst_slots[t] = pages[t / page] * static_cast<int32_t>(page) + static_cast<int32_t>(t % page);
  }
  const nlohmann::json to_ucx = {{"ranks", {ucx_rank}}, {"slots", dst_slots}};
  const nlohmann::json to_heap = {{"ranks", {heap_rank}}, {"slots", dst_slots}};
  auto send_mb_s = [&](const nlohmann::json& target, size_t* bytes) {
    const auto t0 = std::chrono::steady_clock::now();
    *bytes = static_cast<size_t>(prefill.agent->send(target, src_slots));
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return *bytes / s / 1e6;
  };
  size_t bytes = 0;
  send_mb_s(to_ucx, &bytes);  // warm-up: connects, unpacks the keys
  send_mb_s(to_heap, &bytes);
  const size_t put_size = static_cast<size_t>(std::min(tokens, page) * width) * 4;
  const size_t large = std::min<size_t>(bytes, size_t(256) << 20);
  Spread ours, ours_heap, perf_large, perf_small, ratio, ratio_heap;
  for (int r = 0; r < rounds; ++r) {
    ours.v.push_back(send_mb_s(to_ucx, &bytes));
    ours_heap.v.push_back(send_mb_s(to_heap, &bytes));
    perf_large.v.push_back(perftest_mb_s(large, 10, false));
    perf_small.v.push_back(perftest_mb_s(put_size, 2000, false));
    ratio.v.push_back(ours.v.back() / perf_large.v.back());
    ratio_heap.v.push_back(ours_heap.v.back() / perf_large.v.back());
  }
  write_all(to_child[1], "done");
  waitpid(child, nullptr, 0);
  const char* tls = std::getenv("UCX_TLS");
  std::printf(
      "KV transfer (KvTransferAgent::send): %lld tokens x %lld layers x %lld floats = %.1f MB, "
      "pages of %lld in shuffled order (UCX_TLS=%s), prefill memory %s, %d rounds, MB/s median "
      "(min, max)\n",
      (long long)tokens, (long long)layers, (long long)width, bytes / 1e6, (long long)page,
      tls ? tls : "default", source_ucx ? "ucx" : "heap", rounds);
  std::printf("  ours, decode KV cache from UCX (the server's; here: %s): %s\n",
              decode_memory.c_str(), ours.text().c_str());
  std::printf("  ours, decode KV cache on the heap (registered): %s\n", ours_heap.text().c_str());
  std::printf("  ucx_perftest ucp_put_bw, one %zu-byte message: %s\n", large,
              perf_large.text().c_str());
  std::printf("  ucx_perftest ucp_put_bw, %zu-byte messages (the put size; cache-resident): %s\n",
              put_size, perf_small.text().c_str());
  const double ratio_median = ratio.median();  // sorts
  std::printf("  ratio ours / perftest (one message): %.2f (min %.2f, max %.2f); heap: %.2f\n",
              ratio_median, ratio.v.front(), ratio.v.back(), ratio_heap.median());
  return 0;
}
