// PD disaggregation's KV transfer (disagg/kv_agent, comm/rma_agent) against UCX's own put
// bandwidth in the same run. A child process plays the decode rank (a KV cache of `layers`
// regions registered with UCX, progressed by its own thread); this process plays the prefill
// rank and writes a prompt of `tokens` tokens into `page`-token pages the "decode side" holds in
// shuffled order, as the transfer does: one put per run of consecutive slots per layer, then a
// flush to remote completion; once as between ranks on one host (endpoints without peer-failure
// handling, so UCX may use shared memory) and once with it (as between hosts). The limits, in
// the same rounds: `ucx_perftest -t ucp_put_bw` between two local processes, with error handling
// (-e) at the transfer's put size, and without it at that size and with one message as large as
// the whole transfer (past the caches, like the transfer's working set).
//
//   kv_transfer_bench [tokens=2048] [layers=61] [floats_per_token_per_layer=576] [page=64]
//                     [rounds=5] [memory=registered|allocated]
//   UCX_TLS=tcp,self kv_transfer_bench ...   (as between two nodes over TCP)
// UCX_TLS sets without a transport for active messages (cma,self; posix,cma,self) are not
// supported: the connection is never wired up and the bench ends at the write's 60 s deadline.
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

#include "comm/rma_agent.h"
#include "disagg/kv_agent.h"

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

}  // namespace

int main(int argc, char** argv) {
  const int64_t tokens = argc > 1 ? std::atoll(argv[1]) : 2048;
  const int64_t layers = argc > 2 ? std::atoll(argv[2]) : 61;
  const int64_t width = argc > 3 ? std::atoll(argv[3]) : 576;  // DeepSeek-V3's latent + rope
  const int64_t page = argc > 4 ? std::atoll(argv[4]) : 64;
  // "allocated": the decode side's KV memory comes from RmaAgent::allocate_memory (UCX's own).
  const bool allocated = argc > 6 && std::string(argv[6]) == "allocated";
  const int64_t slots = tokens * 2;  // the decode cache is twice the prompt
  const size_t region = static_cast<size_t>(slots * width) * 4;

  int to_parent[2], to_child[2];
  if (pipe(to_parent) != 0 || pipe(to_child) != 0) return 1;
  pid_t child = fork();
  if (child == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlives the writer
    close(to_parent[0]);
    close(to_child[1]);
    RmaAgent decode({"", true});
    std::vector<std::vector<float>> kv(layers, std::vector<float>(slots * width, 0.0f));
    nlohmann::json d = {{"address", std::string()},
                        {"k", nlohmann::json::array()},
                        {"keys", nlohmann::json::array()}};
    std::vector<std::string> keys;
    for (auto& l : kv) {
      if (allocated) {
        void* a = nullptr;
        keys.push_back(decode.allocate_memory(region, &a));
        d["k"].push_back(reinterpret_cast<uint64_t>(a));
        continue;
      }
      keys.push_back(decode.register_memory(l.data(), region));
      d["k"].push_back(reinterpret_cast<uint64_t>(l.data()));
    }
    write_all(to_parent[1], decode.address());
    for (const auto& k : keys) write_all(to_parent[1], k);
    write_all(to_parent[1], d["k"].dump());
    read_all(to_child[0]);  // until the writer is done
    _exit(0);
  }
  close(to_parent[1]);
  close(to_child[0]);
  RmaAgent prefill({"", false});       // as a prefill rank writes to a decode rank on its host
  RmaAgent prefill_peer({"", false});  // as before: endpoints with peer-failure handling
  std::string address = read_all(to_parent[0]);
  std::vector<std::string> keys;
  for (int64_t l = 0; l < layers; ++l) keys.push_back(read_all(to_parent[0]));
  std::vector<uint64_t> bases =
      nlohmann::json::parse(read_all(to_parent[0])).get<std::vector<uint64_t>>();

  std::vector<std::vector<float>> src(layers, std::vector<float>(tokens * width));
  for (auto& l : src) std::iota(l.begin(), l.end(), 1.0f);
  // The decode side's pages in shuffled order; the prefill side's slots 0..tokens-1.
  std::vector<int32_t> pages(slots / page);
  std::iota(pages.begin(), pages.end(), 0);
  std::shuffle(pages.begin(), pages.end(), std::mt19937(7));
  std::vector<int32_t> src_slots(tokens), dst_slots(tokens);
  for (int64_t t = 0; t < tokens; ++t) {
    src_slots[t] = static_cast<int32_t>(t);
    dst_slots[t] = pages[t / page] * static_cast<int32_t>(page) + static_cast<int32_t>(t % page);
  }
  KvRankLayout layout{layers, width, 1, 0, 1, false};
  std::vector<KvPut> plan = plan_kv_puts({layout}, 0, layout, 0, src_slots, dst_slots);
  std::vector<RmaPut> puts;
  size_t bytes = 0;
  for (const KvPut& p : plan) {
    puts.push_back({src[p.layer].data() + p.src_slot * width + p.src_offset,
                    bases[p.layer] + (static_cast<uint64_t>(p.dst_slot) * width + p.dst_offset) * 4,
                    static_cast<size_t>(p.floats) * 4, static_cast<int>(p.layer)});
    bytes += static_cast<size_t>(p.floats) * 4;
  }
  prefill.write(address, keys, puts, std::chrono::seconds(60), true);  // warm-up, connects
  prefill_peer.write(address, keys, puts, std::chrono::seconds(60), false);
  // Interleaved: each round one transfer, then UCX's own put bandwidth in three settings.
  const int rounds = argc > 5 ? std::atoi(argv[5]) : 5;
  const size_t put_size = puts.empty() ? 0 : puts[0].bytes;
  const size_t large = std::min<size_t>(bytes, size_t(256) << 20);
  Spread ours, ours_peer, same_mode, shm_small, shm_large, ratio_same, ratio_shm;
  for (int r = 0; r < rounds; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    prefill.write(address, keys, puts, std::chrono::seconds(60), true);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ours.v.push_back(bytes / s / 1e6);
    t0 = std::chrono::steady_clock::now();
    prefill_peer.write(address, keys, puts, std::chrono::seconds(60), false);
    const double sp = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ours_peer.v.push_back(bytes / sp / 1e6);
    same_mode.v.push_back(perftest_mb_s(put_size, 500, true));
    shm_small.v.push_back(perftest_mb_s(put_size, 2000, false));
    shm_large.v.push_back(perftest_mb_s(large, 10, false));
    ratio_same.v.push_back(ours_peer.v.back() / same_mode.v.back());
    ratio_shm.v.push_back(ours.v.back() / shm_large.v.back());
  }
  write_all(to_child[1], "done");
  waitpid(child, nullptr, 0);
  const char* tls = std::getenv("UCX_TLS");
  std::printf(
      "KV transfer: %lld tokens x %lld layers x %lld floats, pages of %lld (UCX_TLS=%s), "
      "%d rounds, decode memory %s, MB/s median (min, max)\n",
      (long long)tokens, (long long)layers, (long long)width, (long long)page,
      tls ? tls : "default", rounds, allocated ? "allocated by UCX" : "registered");
  std::printf("  ours (same host: no peer-failure handling): %zu puts of %zu bytes, %.1f MB: %s\n",
              puts.size(), put_size, bytes / 1e6, ours.text().c_str());
  std::printf("  ours with peer-failure handling (as between hosts): %s\n",
              ours_peer.text().c_str());
  std::printf(
      "  ucx_perftest -e ucp_put_bw (peer error handling), %zu-byte messages: %s"
      " -> ours with it / it %.2f\n",
      put_size, same_mode.text().c_str(), ratio_same.median());
  std::printf("  ucx_perftest ucp_put_bw (no error handling), %zu-byte messages: %s\n", put_size,
              shm_small.text().c_str());
  std::printf(
      "  ucx_perftest ucp_put_bw (no error handling), one %zu-byte message: %s -> ours "
      "(same host) / it %.2f\n",
      large, shm_large.text().c_str(), ratio_shm.median());
  return 0;
}
