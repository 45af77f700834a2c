#include "comm/store.h"

#include <gtest/gtest.h>

#include <thread>

#include "core/error.h"
#include "support/store_attacks.h"

namespace epserve {
namespace {

using std::chrono::milliseconds;

const std::string kSecret = "0123456789abcdef-test-secret";

TEST(HostPort, ParsesHostAndPort) {
  HostPort hp = HostPort::parse("10.0.0.1:5000", "--dist-init-addr");
  EXPECT_EQ(hp.host, "10.0.0.1");
  EXPECT_EQ(hp.port, 5000);
  EXPECT_EQ(HostPort::parse("[::1]:7", "x").host, "::1");
  EXPECT_EQ(HostPort::parse("[::1]:7", "x").str(), "[::1]:7");
  EXPECT_THROW(HostPort::parse("nohost", "--dist-init-addr"), Error);
  EXPECT_THROW(HostPort::parse("h:99999", "--dist-init-addr"), Error);
  try {
    HostPort::parse("h:x", "--dist-init-addr");
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--dist-init-addr"), std::string::npos);
  }
}

TEST(Store, SetGetAddCheck) {
  StoreServer server("127.0.0.1", 0, kSecret);
  ASSERT_GT(server.port(), 0);
  StoreClient a(server.address(), kSecret, milliseconds(2000));
  StoreClient b(server.address(), kSecret, milliseconds(2000));
  EXPECT_FALSE(a.check("k").has_value());
  std::string blob("x\0y", 3);
  a.set("k", blob);
  EXPECT_EQ(b.get("k", milliseconds(100), "the test key"), blob);
  EXPECT_EQ(a.add("n", 5), 5);
  EXPECT_EQ(b.add("n", -2), 3);
  EXPECT_TRUE(a.set_if_absent("once", "first"));
  EXPECT_FALSE(b.set_if_absent("once", "second"));
  EXPECT_EQ(*a.check("once"), "first");
}

TEST(Store, WaitBlocksUntilSetAndTimesOut) {
  StoreServer server("127.0.0.1", 0, kSecret);
  StoreClient waiter(server.address(), kSecret, milliseconds(2000));
  StoreClient setter(server.address(), kSecret, milliseconds(2000));
  std::thread t([&] { setter.set("later", "v"); });
  EXPECT_EQ(waiter.wait("later", milliseconds(-1)).value_or(""), "v");
  t.join();
  EXPECT_FALSE(waiter.wait("never", milliseconds(20)).has_value());
  try {
    waiter.get("never", milliseconds(10), "rank 3's address");
    FAIL() << "no timeout";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("rank 3's address"), std::string::npos) << e.what();
  }
  // The connection still works after a timeout.
  EXPECT_EQ(waiter.wait("later", milliseconds(10)).value_or(""), "v");
}

TEST(Store, ClosedRegisteredConnectionSetsAbort) {
  StoreServer server("127.0.0.1", 0, kSecret);
  StoreClient watcher(server.address(), kSecret, milliseconds(2000));
  {
    StoreClient clean(server.address(), kSecret, milliseconds(2000));
    clean.register_liveness("rank 0");
    clean.bye();
  }
  EXPECT_FALSE(watcher.check(kAbortKey).has_value());
  {
    StoreClient dying(server.address(), kSecret, milliseconds(2000));
    dying.register_liveness("rank 7");
  }
  auto reason = watcher.wait(kAbortKey, milliseconds(5000));
  ASSERT_TRUE(reason.has_value());
  EXPECT_EQ(reason->rfind("rank 7 is gone", 0), 0u) << *reason;
}

TEST(Store, InterruptUnblocksAWaitingThread) {
  StoreServer server("127.0.0.1", 0, kSecret);
  StoreClient client(server.address(), kSecret, milliseconds(2000));
  bool threw = false;
  std::thread t([&] {
    try {
      client.wait("never", milliseconds(-1));
    } catch (const Error&) {
      threw = true;
    }
  });
  std::this_thread::sleep_for(milliseconds(20));
  client.interrupt();
  t.join();
  EXPECT_TRUE(threw);
}

TEST(Store, ConnectFailsWithALineNamingTheAddress) {
  int port;
  {
    StoreServer server("127.0.0.1", 0, kSecret);
    port = server.port();
  }
  try {
    StoreClient client("127.0.0.1:" + std::to_string(port), kSecret, milliseconds(100));
    FAIL() << "connected to a closed port";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--dist-init-addr"), std::string::npos) << e.what();
  }
}

TEST(Store, StrangersAreDroppedAndNeverStopTheJob) {
  StoreServerOptions options;
  options.hello_timeout = milliseconds(300);
  StoreServer server("127.0.0.1", 0, kSecret, options);
  StoreClient rank(server.address(), kSecret, milliseconds(2000));
  rank.register_liveness("rank 0");
  std::vector<int> fds = testing::open_attacks(server.address());
  // While the strangers' connections are still open, the job's own processes are heard.
  StoreClient late(server.address(), kSecret, milliseconds(2000));
  late.set("k", "v");
  EXPECT_EQ(rank.get("k", milliseconds(1000), "the test key"), "v");
  for (size_t i = 0; i < fds.size(); ++i) {
    ASSERT_GE(fds[i], 0);
    EXPECT_TRUE(testing::closed_by_peer(fds[i], 10000)) << "attack " << i << " was not dropped";
    close(fds[i]);
  }
  EXPECT_EQ(server.rejected(), static_cast<int64_t>(fds.size()));
  EXPECT_FALSE(rank.check(kAbortKey).has_value()) << *rank.check(kAbortKey);
  EXPECT_EQ(late.add("n", 2), 2);
}

TEST(Store, AWrongSecretIsRefusedWithALineSayingSo) {
  StoreServer server("127.0.0.1", 0, kSecret);
  try {
    StoreClient client(server.address(), "another-job's-secret", milliseconds(2000));
    FAIL() << "a wrong secret was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("refused this process's secret"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("EPSERVE_STORE_SECRET"), std::string::npos) << e.what();
  }
  EXPECT_EQ(server.rejected(), 1);
}

TEST(Store, TooManySilentConnectionsDropTheOldest) {
  StoreServerOptions options;
  options.max_pending = 2;
  StoreServer server("127.0.0.1", 0, kSecret, options);
  std::vector<int> fds;
  for (int i = 0; i < 3; ++i) fds.push_back(testing::connect_raw(server.address()));
  EXPECT_TRUE(testing::closed_by_peer(fds[0], 10000));
  StoreClient client(server.address(), kSecret, milliseconds(2000));
  EXPECT_EQ(client.add("n", 1), 1);
  for (int fd : fds) close(fd);
}

TEST(Store, SilentHeartbeatsAreListed) {
  StoreServer server("127.0.0.1", 0, kSecret);
  const std::string label = "rank 1 (pid 5, node 0)";
  {
    StoreClient client(server.address(), kSecret, milliseconds(2000));
    client.beat(label);
    EXPECT_TRUE(server.silent(std::chrono::seconds(60)).empty());
    std::this_thread::sleep_for(milliseconds(30));
    auto silent = server.silent(milliseconds(10));
    ASSERT_EQ(silent.size(), 1u);
    EXPECT_EQ(silent[0].label, label);
    EXPECT_GE(silent[0].seconds, 0.01);
  }
  // A closed connection is not silent: its process is gone, which the launcher reports.
  for (int i = 0; i < 200 && !server.silent(milliseconds(0)).empty(); ++i) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_TRUE(server.silent(milliseconds(0)).empty());
}

}  // namespace
}  // namespace epserve
