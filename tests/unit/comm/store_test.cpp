#include "comm/store.h"

#include <gtest/gtest.h>

#include <thread>

#include "core/error.h"

namespace epserve {
namespace {

using std::chrono::milliseconds;

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
  StoreServer server("127.0.0.1", 0);
  ASSERT_GT(server.port(), 0);
  StoreClient a(server.address(), milliseconds(2000));
  StoreClient b(server.address(), milliseconds(2000));
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
  StoreServer server("127.0.0.1", 0);
  StoreClient waiter(server.address(), milliseconds(2000));
  StoreClient setter(server.address(), milliseconds(2000));
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
  StoreServer server("127.0.0.1", 0);
  StoreClient watcher(server.address(), milliseconds(2000));
  {
    StoreClient clean(server.address(), milliseconds(2000));
    clean.register_liveness("rank 0");
    clean.bye();
  }
  EXPECT_FALSE(watcher.check(kAbortKey).has_value());
  {
    StoreClient dying(server.address(), milliseconds(2000));
    dying.register_liveness("rank 7");
  }
  auto reason = watcher.wait(kAbortKey, milliseconds(5000));
  ASSERT_TRUE(reason.has_value());
  EXPECT_EQ(reason->rfind("rank 7 is gone", 0), 0u) << *reason;
}

TEST(Store, InterruptUnblocksAWaitingThread) {
  StoreServer server("127.0.0.1", 0);
  StoreClient client(server.address(), milliseconds(2000));
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
    StoreServer server("127.0.0.1", 0);
    port = server.port();
  }
  try {
    StoreClient client("127.0.0.1:" + std::to_string(port), milliseconds(100));
    FAIL() << "connected to a closed port";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--dist-init-addr"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace epserve
