// run_launcher: starts this node's ranks, serves the store on node 0, and supervises.
#include "comm/launcher.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "comm/rank_exec.h"
#include "comm/store.h"
#include "comm/store_secret.h"
#include "core/error.h"

namespace epserve {
namespace {

using Clock = std::chrono::steady_clock;

// SIGINT/SIGTERM reach the supervisor loop through a pipe, whichever thread the kernel picks.
int g_signal_pipe = -1;

void on_stop_signal(int sig) {
  unsigned char byte = static_cast<unsigned char>(sig);
  if (g_signal_pipe >= 0) (void)!write(g_signal_pipe, &byte, 1);
}

class SignalForwarding {
 public:
  SignalForwarding() {
    EPS_CHECK(pipe2(pipe_, O_CLOEXEC | O_NONBLOCK) == 0, "pipe2 failed: {}", std::strerror(errno));
    g_signal_pipe = pipe_[1];
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~SignalForwarding() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
    g_signal_pipe = -1;
    close(pipe_[0]);
    close(pipe_[1]);
  }
  int fd() const { return pipe_[0]; }

 private:
  int pipe_[2];
  struct sigaction old_int_, old_term_;
};

std::string describe_status(int status) {
  if (WIFEXITED(status)) return fmt::format("exited with code {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    return fmt::format("was killed by signal {} ({})", sig, strsignal(sig));
  }
  return "ended";
}

bool status_ok(int status) {
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// Watches the store's abort key on its own connection and wakes the launcher loop.
class AbortWatcher {
 public:
  AbortWatcher(const std::string& addr, const std::string& secret,
               std::chrono::milliseconds timeout)
      : client_(addr, secret, timeout), event_fd_(eventfd(0, EFD_CLOEXEC)) {
    thread_ = std::thread([this] {
      std::string message;
      try {
        auto value = client_.wait(kAbortKey, std::chrono::milliseconds(-1));
        message = value ? *value : "";
      } catch (const Error& e) {
        message = e.what();
      }
      {
        std::lock_guard<std::mutex> lock(mutex_);
        message_ = message;
      }
      uint64_t one = 1;
      (void)!write(event_fd_, &one, 8);
    });
  }
  ~AbortWatcher() {
    stopping_ = true;
    client_.interrupt();
    thread_.join();
    close(event_fd_);
  }
  int fd() const { return event_fd_; }
  std::string message() {
    std::lock_guard<std::mutex> lock(mutex_);
    return message_;
  }

 private:
  StoreClient client_;
  int event_fd_;
  std::atomic<bool> stopping_{false};
  std::mutex mutex_;
  std::string message_;
  std::thread thread_;
};

struct Child {
  int rank;
  pid_t pid;
  int pidfd;
  bool alive = true;
};

class Supervisor {
 public:
  Supervisor(const LaunchOptions& o, StoreClient& client, AbortWatcher& watcher,
             const StoreServer* server)
      : o_(o), client_(client), watcher_(watcher), server_(server) {}

  int run(std::vector<Child>& children, int signal_fd);

 private:
  void report(const std::string& line);
  void reap(Child& c);
  void signal_alive(int sig) {
    for (auto& c : *children_) {
      if (c.alive) kill(c.pid, sig);
    }
  }
  // Starts the stop sequence; posts `reason` to the store so that other nodes stop too.
  void begin_stop(const std::string& reason, int exit_code);
  // Node 0: tells on_silent_ranks when the set of silent heartbeats changed; returns when to
  // look next.
  Clock::time_point check_heartbeats(Clock::time_point now);

  const LaunchOptions& o_;
  StoreClient& client_;
  AbortWatcher& watcher_;
  const StoreServer* server_;
  std::vector<std::string> silent_labels_;
  std::vector<Child>* children_ = nullptr;
  size_t alive_ = 0;
  bool stopping_ = false;
  bool reported_ = false;
  int exit_code_ = 0;
  int stop_phase_ = 0;  // 0: ranks may stop by themselves; 1: SIGTERM sent; 2: SIGKILL sent
  Clock::time_point stop_started_;
  // An abort seen in the store is reported after a short delay, so that a local rank that
  // caused it is named with how it ended instead.
  std::string pending_cause_;
  Clock::time_point pending_until_;
  int first_secondary_ = -1;
};

void Supervisor::report(const std::string& line) {
  reported_ = true;
  if (o_.report) {
    o_.report(line);
  } else {
    std::fprintf(stderr, "epserve: %s\n", line.c_str());
    std::fflush(stderr);
  }
}

void Supervisor::begin_stop(const std::string& reason, int exit_code) {
  if (stopping_) return;
  stopping_ = true;
  exit_code_ = exit_code;
  stop_started_ = Clock::now();
  if (reason.empty()) return;
  try {
    client_.set_if_absent(kAbortKey, reason);
  } catch (const Error&) {
    // The store is gone (node 0 stopped); the local stop sequence still runs.
  }
}

Clock::time_point Supervisor::check_heartbeats(Clock::time_point now) {
  // While the job stops, ranks go quiet on purpose: nothing to report (and no "answers again").
  if (server_ == nullptr || !o_.on_silent_ranks || stopping_) return Clock::time_point::max();
  std::vector<SilentPeer> silent = server_->silent(o_.heartbeat_timeout);
  std::vector<std::string> labels;
  for (const auto& s : silent) labels.push_back(s.label);
  std::sort(labels.begin(), labels.end());
  if (labels != silent_labels_) {
    silent_labels_ = std::move(labels);
    o_.on_silent_ranks(silent);
  }
  return now + std::chrono::milliseconds(250);
}

int Supervisor::run(std::vector<Child>& children, int signal_fd) {
  children_ = &children;
  alive_ = children.size();
  constexpr auto kReportDelay = std::chrono::milliseconds(300);
  auto next_heartbeat_check = Clock::now();
  while (alive_ > 0) {
    auto now = Clock::now();
    if (now >= next_heartbeat_check) next_heartbeat_check = check_heartbeats(now);
    auto next = next_heartbeat_check;
    if (!pending_cause_.empty() && !reported_) {
      if (now >= pending_until_) {
        report(fmt::format("node {} stops its ranks: {}", o_.node_rank, pending_cause_));
        continue;
      }
      next = pending_until_;
    }
    if (stopping_ && stop_phase_ < 2) {
      auto at = stop_started_ + o_.grace * (stop_phase_ + 1);
      if (now >= at) {
        signal_alive(stop_phase_ == 0 ? SIGTERM : SIGKILL);
        if (stop_phase_ == 0) signal_alive(SIGCONT);
        ++stop_phase_;
        continue;
      }
      next = std::min(next, at);
    }
    int timeout_ms = -1;
    if (next != Clock::time_point::max()) {
      timeout_ms =
          static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(next - now).count());
    }
    std::vector<pollfd> fds = {{signal_fd, POLLIN, 0}, {watcher_.fd(), POLLIN, 0}};
    for (auto& c : children) fds.push_back({c.alive ? c.pidfd : -1, POLLIN, 0});
    if (stopping_) fds[1].fd = -1;
    int n = poll(fds.data(), fds.size(), timeout_ms);
    if (n < 0 && errno != EINTR) EPS_THROW("launcher poll failed: {}", std::strerror(errno));
    if (n <= 0) continue;
    for (size_t i = 0; i < children.size(); ++i) {
      if (fds[2 + i].revents) reap(children[i]);
    }
    if (fds[0].revents & POLLIN) {
      unsigned char sig = 0;
      if (read(signal_fd, &sig, 1) == 1) {
        signal_alive(sig);
        begin_stop(fmt::format("node {} was interrupted by signal {} ({})", o_.node_rank, sig,
                               strsignal(sig)),
                   128 + sig);
        reported_ = true;
      }
    }
    if (!stopping_ && (fds[1].revents & POLLIN)) {
      std::string message = watcher_.message();
      pending_cause_ = message.empty() ? "the rendezvous store closed" : message;
      pending_until_ = Clock::now() + kReportDelay;
      begin_stop("", 1);
    }
  }
  if (!reported_ && !pending_cause_.empty()) {
    report(fmt::format("node {} stops its ranks: {}", o_.node_rank, pending_cause_));
  } else if (!reported_ && exit_code_ != 0) {
    report(fmt::format("node {}: rank {} stopped because another rank failed (see its line above)",
                       o_.node_rank, first_secondary_));
  }
  return exit_code_;
}

void Supervisor::reap(Child& c) {
  int status = 0;
  if (!c.alive || waitpid(c.pid, &status, WNOHANG) != c.pid) return;
  c.alive = false;
  close(c.pidfd);
  --alive_;
  if (status_ok(status)) return;
  // Ranks that stopped because another rank failed, or that we signalled, are not the culprit.
  bool secondary = (WIFEXITED(status) && WEXITSTATUS(status) == kExitPeerFailure) ||
                   stop_phase_ > 0 || exit_code_ > 128;
  if (secondary || reported_) {
    if (first_secondary_ < 0) first_secondary_ = c.rank;
    begin_stop("", 1);
    return;
  }
  std::string line = fmt::format("rank {} (pid {}, node {}) {}", c.rank, c.pid, o_.node_rank,
                                 describe_status(status));
  std::optional<std::string> cause;
  if (WIFEXITED(status)) {
    try {
      cause = client_.check(kAbortKey);
    } catch (const Error&) {
    }
    // The store's own note that this rank is gone adds nothing to the line.
    if (cause && cause->rfind(fmt::format("rank {} is gone", c.rank), 0) == 0) cause.reset();
  }
  report(cause ? fmt::format("{}; cause: {}", line, *cause) : line + "; stopping the others");
  begin_stop(line, 1);
}

}  // namespace

int run_launcher(const LaunchOptions& o) {
  EPS_CHECK(o.world_size >= 1, "world size must be at least 1, found {}", o.world_size);
  EPS_CHECK(o.nnodes >= 1 && o.world_size % o.nnodes == 0,
            "--nnodes {} must divide the number of ranks {}", o.nnodes, o.world_size);
  EPS_CHECK(o.node_rank >= 0 && o.node_rank < o.nnodes, "--node-rank {} must be in [0, {})",
            o.node_rank, o.nnodes);
  EPS_CHECK(o.nnodes == 1 || !o.dist_init_addr.empty(),
            "--dist-init-addr HOST:PORT is required with --nnodes {}", o.nnodes);
  const int local_ranks = o.world_size / o.nnodes;
  std::vector<std::string> args = o.args.empty() ? own_command_line() : o.args;
  EPS_CHECK(!args.empty(), "cannot read this process's command line to start the ranks");

  const std::string secret = o.store_secret.empty() ? job_store_secret(o.nnodes) : o.store_secret;
  std::unique_ptr<StoreServer> server;
  std::string store_addr = o.dist_init_addr;
  if (o.node_rank == 0) {
    HostPort hp = o.dist_init_addr.empty() ? HostPort{"127.0.0.1", 0}
                                           : HostPort::parse(o.dist_init_addr, "--dist-init-addr");
    server = std::make_unique<StoreServer>(hp.host, hp.port, secret);
    store_addr = server->address();
  }
  StoreClient client(store_addr, secret, o.connect_timeout);
  if (o.node_rank == 0) {
    for (const auto& [key, value] : o.store_values) client.set(key, value);
  }
  client.register_liveness(fmt::format("the launcher of node {}", o.node_rank));
  AbortWatcher watcher(store_addr, secret, o.connect_timeout);

  std::vector<int> cores = allowed_cores();
  auto core_sets =
      o.pin_cores ? plan_core_sets(cores, local_ranks) : std::vector<std::vector<int>>(local_ranks);
  int threads = suggested_threads(static_cast<int>(cores.size()), local_ranks);

  SignalForwarding signals;

  std::vector<Child> children;
  int exit_code = 1;
  try {
    for (int lr = 0; lr < local_ranks; ++lr) {
      int rank = o.node_rank * local_ranks + lr;
      ExecPlan plan =
          make_plan(o, args, rank, lr, local_ranks, store_addr, secret, core_sets[lr], threads);
      pid_t parent = getpid();
      pid_t pid = fork();
      EPS_CHECK(pid >= 0, "fork failed for rank {}: {}", rank, std::strerror(errno));
      if (pid == 0) exec_child(plan, o.executable, parent);
      int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
      if (pidfd < 0) {
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
        EPS_THROW("pidfd_open failed for rank {}: {}", rank, std::strerror(errno));
      }
      children.push_back({rank, pid, pidfd});
    }
    Supervisor supervisor(o, client, watcher, server.get());
    exit_code = supervisor.run(children, signals.fd());
    if (exit_code == 0) {
      // Node 0 keeps the store up until every node's ranks are done.
      try {
        client.add("epserve/nodes_done", 1);
        client.bye();
      } catch (const Error&) {
        // Every rank of this node ended cleanly; node 0 may already have closed the store
        // (it stops waiting once the store records any rank as gone), which is no failure here.
        if (o.node_rank == 0) throw;
        return 0;
      }
      while (o.node_rank == 0 && client.add("epserve/nodes_done", 0) < o.nnodes) {
        if (client.check(kAbortKey)) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
  } catch (...) {
    for (auto& c : children) {
      if (!c.alive) continue;
      kill(c.pid, SIGKILL);
      waitpid(c.pid, nullptr, 0);
      close(c.pidfd);
    }
    throw;
  }
  return exit_code;
}

}  // namespace epserve
