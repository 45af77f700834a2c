// Dispatch and combine benchmark (docs/benchmarks.md, "Dispatch and combine").
//
//   build/bench/dispatch_bench [--ranks 2] [--hidden 7168] [--experts 256] [--topk 8]
//                              [--tokens 1,32,128,4096] [--capacity 128] [--no-mpi]
//
// Launches --ranks rank processes of itself (the epserve launcher) and times dispatch and combine
// on random top-k routing (DeepSeek-V3 shapes by default, fp32 payload) in three variants: normal,
// low_latency (the [experts, capacity * ranks, hidden] receive layout) and low_latency_rows (the
// opt-in layout without the receive-side copy). Beside them, from the same run: single-thread
// memcpy bandwidth, the same memcpy in every rank at once (the memory bandwidth the ranks share),
// and OpenMPI's MPI_Alltoallv moving the same bytes (bench/alltoallv_mpi through mpirun), once with
// one row per (token, destination rank) and once with one row per (token, top-k slot). Times are
// the median and best over iterations of the slowest rank; GB/s are payload bytes received per
// rank over the best time.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "comm/launcher.h"
#include "ep/dispatcher.h"

using namespace epserve;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  int ranks = 2;
  int64_t hidden = 7168;
  int experts = 256;
  int topk = 8;
  int capacity = 128;
  std::vector<int> tokens = {1, 32, 128, 4096};
  bool mpi = true;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      EPS_CHECK(i + 1 < argc, "{} needs a value", a);
      return argv[++i];
    };
    if (a == "--ranks")
      o.ranks = std::stoi(next());
    else if (a == "--hidden")
      o.hidden = std::stoll(next());
    else if (a == "--experts")
      o.experts = std::stoi(next());
    else if (a == "--topk")
      o.topk = std::stoi(next());
    else if (a == "--capacity")
      o.capacity = std::stoi(next());
    else if (a == "--no-mpi")
      o.mpi = false;
    else if (a == "--tokens") {
      o.tokens.clear();
      std::stringstream ss(next());
      std::string item;
      while (std::getline(ss, item, ',')) o.tokens.push_back(std::stoi(item));
    } else {
      EPS_THROW("unknown option {} (see the comment at the top of bench/dispatch_bench.cpp)", a);
    }
  }
  return o;
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

double best(const std::vector<double>& v) {
  return v.empty() ? 0 : *std::min_element(v.begin(), v.end());
}

// One rank: times both modes at every token count; rank 0 writes the results file.
int run_rank(const Options& o) {
  auto comm = Communicator::create_world(rank_info_from_env());
  const int n = comm->size(), me = comm->rank(), K = o.topk;
  const int64_t H = o.hidden;
  DispatchConfig config{H, K, o.experts, o.capacity};
  auto normal = make_dispatcher(DispatchMode::kNormal, *comm, config);
  auto low_latency = make_dispatcher(DispatchMode::kLowLatency, *comm, config);
  DispatchConfig in_place_config = config;
  in_place_config.low_latency_expand = false;
  auto low_latency_rows = make_dispatcher(DispatchMode::kLowLatency, *comm, in_place_config);
  const int per_rank = o.experts / n;
  std::ofstream out;
  if (me == 0) out.open(std::getenv("EPSERVE_BENCH_OUT"));
  {
    // Every rank copying at once, as the ranks do in a dispatch: the memory bandwidth they share.
    int max_t = *std::max_element(o.tokens.begin(), o.tokens.end());
    size_t bytes = std::max<size_t>(size_t(max_t) * H * 4, 64 << 20);
    std::vector<char> src(bytes, 1), dst(bytes, 0);
    double fastest = 1e30;
    for (int i = 0; i < 7; ++i) {
      comm->barrier();
      auto t0 = Clock::now();
      std::memcpy(dst.data(), src.data(), bytes);
      double t = seconds_since(t0);
      comm->allreduce(&t, 1, ReduceOp::kMax);
      fastest = std::min(fastest, t);
    }
    if (me == 0) out << "C " << bytes / fastest / 1e9 << "\n";
  }
  for (int T : o.tokens) {
    std::mt19937 gen(me * 7919 + T);
    std::vector<float> x(T * H), w(T * K, 1.0f / K), result(T * H);
    for (auto& v : x) v = float(gen() % 1000) / 1000.0f;
    std::vector<int32_t> topk(T * K), pool(o.experts);
    for (int t = 0; t < T; ++t) {
      std::iota(pool.begin(), pool.end(), 0);
      for (int k = 0; k < K; ++k) {
        std::swap(pool[k], pool[k + gen() % (o.experts - k)]);
        topk[t * K + k] = pool[k];
      }
    }
    DispatchLayout layout = get_dispatch_layout(topk.data(), T, K, o.experts, n);
    // Bytes this rank sends to each rank: token rows (dispatch) and (token, slot) rows (combine).
    std::vector<int64_t> send_rows(n), send_slots(n, 0), rows_all(n * n), slots_all(n * n);
    for (int d = 0; d < n; ++d) send_rows[d] = layout.num_tokens_per_rank[d];
    for (int e : topk) ++send_slots[e / per_rank];
    comm->allgather(send_rows.data(), n * 8, rows_all.data());
    comm->allgather(send_slots.data(), n * 8, slots_all.data());
    int64_t dispatch_bytes = 0, combine_bytes = 0;  // received, summed over ranks
    for (int64_t v : rows_all) dispatch_bytes += v * H * 4;
    for (int64_t v : slots_all) combine_bytes += v * H * 4;
    if (me == 0) {
      // Dispatch moves token rows src -> dst; combine moves (token, slot) rows dst -> src.
      out << "M " << T << " dispatch";
      for (int s = 0; s < n; ++s)
        for (int d = 0; d < n; ++d) out << " " << rows_all[s * n + d] * H * 4;
      // What lands in low-latency recv_x: one row per (token, slot), src -> dst.
      out << "\nM " << T << " dispatchslots";
      for (int s = 0; s < n; ++s)
        for (int d = 0; d < n; ++d) out << " " << slots_all[s * n + d] * H * 4;
      out << "\nM " << T << " combine";
      for (int s = 0; s < n; ++s)
        for (int d = 0; d < n; ++d) out << " " << slots_all[d * n + s] * H * 4;
      out << "\n";
    }
    for (Dispatcher* dispatcher : {normal.get(), low_latency.get(), low_latency_rows.get()}) {
      bool ll = dispatcher->mode() == DispatchMode::kLowLatency;
      const char* name = dispatcher == normal.get()        ? "normal"
                         : dispatcher == low_latency.get() ? "low_latency"
                                                           : "low_latency_rows";
      if (ll && T > o.capacity) continue;
      int iters = T >= 1024 ? 5 : T >= 128 ? 30 : 300;
      std::vector<double> dispatch_times, combine_times;
      for (int i = 0; i < iters + 2; ++i) {
        comm->barrier();
        auto t0 = Clock::now();
        DispatchHandle h = dispatcher->dispatch({x.data(), topk.data(), w.data(), T, &layout});
        double td = seconds_since(t0);
        const DispatchOutput& got = h.output();
        float* y = h.y_buffer();
        if (i == 0) {  // expert outputs: touch the rows once, as experts would write them
          for (size_t e = 0; e < got.num_recv_tokens_per_expert.size(); ++e) {
            std::fill_n(y + got.expert_row_offset[e] * H, got.num_recv_tokens_per_expert[e] * H,
                        0.5f);
          }
        }
        comm->barrier();
        auto t1 = Clock::now();
        dispatcher->combine(y, h, result.data());
        double times[2] = {td, seconds_since(t1)};
        comm->allreduce(times, 2, ReduceOp::kMax);
        if (i >= 2) {
          dispatch_times.push_back(times[0]);
          combine_times.push_back(times[1]);
        }
      }
      if (me == 0) {
        out << "R " << T << " " << name << " " << median(dispatch_times) * 1e6 << " "
            << best(dispatch_times) * 1e6 << " " << median(combine_times) * 1e6 << " "
            << best(combine_times) * 1e6 << " " << dispatch_bytes / n << " " << combine_bytes / n
            << "\n";
        out.flush();
      }
    }
  }
  return 0;
}

double memcpy_gbps(size_t bytes) {
  std::vector<char> src(bytes, 1), dst(bytes, 0);
  std::vector<double> times;
  for (int i = 0; i < 7; ++i) {
    auto t0 = Clock::now();
    std::memcpy(dst.data(), src.data(), bytes);
    times.push_back(seconds_since(t0));
  }
  return bytes / best(times) / 1e9;
}

// Runs the MPI peer on the byte matrices; returns case name -> median microseconds.
struct Timing {
  double median_us = 0, best_us = 0;
};

std::map<std::string, Timing> run_mpi(const Options& o, const std::string& cases_file) {
  std::map<std::string, Timing> result;
  std::string exe =
      (std::filesystem::read_symlink("/proc/self/exe").parent_path() / "alltoallv_mpi").string();
  if (!std::filesystem::exists(exe)) {
    std::printf("(MPI peer %s not built: OpenMPI development files missing)\n", exe.c_str());
    return result;
  }
  std::string cmd = fmt::format("mpirun --allow-run-as-root --oversubscribe -np {} {} {} 2>&1",
                                o.ranks, exe, cases_file);
  FILE* pipe = popen(cmd.c_str(), "r");
  char line[512];
  while (pipe && std::fgets(line, sizeof(line), pipe)) {
    char name[256];
    Timing t;
    if (std::sscanf(line, "%255s %lf %lf", name, &t.median_us, &t.best_us) == 3) result[name] = t;
  }
  if (pipe) pclose(pipe);
  return result;
}

int run_parent(const Options& o, char** argv, int argc) {
  std::string dir =
      std::filesystem::temp_directory_path() / ("dispatch_bench_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::string results = dir + "/results.txt", cases = dir + "/mpi_cases.txt";
  int max_t = *std::max_element(o.tokens.begin(), o.tokens.end());
  size_t copy_bytes = std::max<size_t>(size_t(max_t) * o.hidden * 4, 64 << 20);
  double memcpy_bw = memcpy_gbps(copy_bytes);

  LaunchOptions launch;
  launch.world_size = o.ranks;
  launch.extra_env = {{"EPSERVE_BENCH_OUT", results}};
  int rc = run_launcher(launch);
  if (rc != 0) return rc;
  memcpy_bw = std::max(memcpy_bw, memcpy_gbps(copy_bytes));

  std::ifstream in(results);
  std::string line;
  std::vector<std::vector<std::string>> rows;
  double concurrent_bw = 0;
  std::ofstream mpi_cases(cases);
  while (std::getline(in, line)) {
    std::istringstream ss(line);
    std::vector<std::string> f;
    for (std::string w; ss >> w;) f.push_back(w);
    if (f.empty()) continue;
    if (f[0] == "C") {
      concurrent_bw = std::stod(f[1]);
    } else if (f[0] == "M") {
      mpi_cases << f[2] << "_" << f[1];
      for (size_t i = 3; i < f.size(); ++i) mpi_cases << " " << f[i];
      mpi_cases << "\n";
    } else {
      rows.push_back(f);
    }
  }
  mpi_cases.close();
  std::map<std::string, Timing> mpi = o.mpi ? run_mpi(o, cases) : std::map<std::string, Timing>{};
  auto mpi_of = [&](const std::string& key) { return mpi.count(key) ? mpi[key] : Timing{}; };

  std::ifstream loadavg("/proc/loadavg");
  std::string load;
  std::getline(loadavg, load);
  std::printf(
      "\nDispatch and combine: %d ranks, hidden %ld, %d experts, top-%d, fp32 payload, "
      "low-latency capacity %d, %d cores, load average after the run: %s\n",
      o.ranks, long(o.hidden), o.experts, o.topk, o.capacity, int(allowed_cores().size()),
      load.c_str());
  std::printf(
      "memcpy, 1 thread, %zu MB, best of 14 (before and after): %.2f GB/s; the same in "
      "every rank at once: %.2f GB/s per rank\n",
      copy_bytes >> 20, memcpy_bw, concurrent_bw);
  std::printf(
      "Times: median / best over the iterations, of the slowest rank, in microseconds. "
      "GB/s: payload bytes received per rank / best time.\n\n");
  std::printf(
      "| tokens/rank | mode | dispatch us | GB/s | vs memcpy | vs memcpy, all ranks | "
      "MPI_Alltoallv us, token rows | vs MPI (best) | MPI_Alltoallv us, slot rows | vs MPI "
      "(best) |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|\n");
  for (auto& f : rows) {
    double med = std::stod(f[3]), bst = std::stod(f[4]), gbps = std::stod(f[7]) / (bst * 1e3);
    Timing m = mpi_of("dispatch_" + f[1]), ms = mpi_of("dispatchslots_" + f[1]);
    std::printf(
        "| %s | %s | %.1f / %.1f | %.2f | %.0f%% | %.0f%% | %.1f / %.1f | %.2fx | %.1f / "
        "%.1f | %.2fx |\n",
        f[1].c_str(), f[2].c_str(), med, bst, gbps, 100 * gbps / memcpy_bw,
        100 * gbps / concurrent_bw, m.median_us, m.best_us, m.best_us > 0 ? bst / m.best_us : 0.0,
        ms.median_us, ms.best_us, ms.best_us > 0 ? bst / ms.best_us : 0.0);
  }
  std::printf(
      "\n| tokens/rank | mode | combine us | GB/s | vs memcpy | vs memcpy, all ranks | "
      "MPI_Alltoallv us, slot rows | vs MPI (best) |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  for (auto& f : rows) {
    double med = std::stod(f[5]), bst = std::stod(f[6]), gbps = std::stod(f[8]) / (bst * 1e3);
    Timing m = mpi_of("combine_" + f[1]);
    std::printf("| %s | %s | %.1f / %.1f | %.2f | %.0f%% | %.0f%% | %.1f / %.1f | %.2fx |\n",
                f[1].c_str(), f[2].c_str(), med, bst, gbps, 100 * gbps / memcpy_bw,
                100 * gbps / concurrent_bw, m.median_us, m.best_us,
                m.best_us > 0 ? bst / m.best_us : 0.0);
  }
  std::filesystem::remove_all(dir);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    Options o = parse(argc, argv);
    if (is_rank_process()) return run_rank(o);
    return run_parent(o, argv, argc);
  } catch (const PeerFailure& e) {
    std::fprintf(stderr, "dispatch_bench: %s\n", e.what());
    return kExitPeerFailure;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dispatch_bench: %s\n", e.what());
    return 1;
  }
}
