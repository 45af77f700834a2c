// The control plane across nodes (runtime/ipc.h): CURVE sockets whose keys derive from the job's
// secret. A client with the secret is heard; a plain client and one with another secret are not.
#include "runtime/ipc.h"

#include <gtest/gtest.h>

#include <thread>

namespace epserve {
namespace {

using namespace std::chrono_literals;

const std::string kSecret = "0123456789abcdef0123456789abcdef";

// Receives until `want` arrives (or 20 s pass); returns every message received.
std::vector<std::string> receive_until(IpcSocket& pull, const std::string& want) {
  std::vector<std::string> got;
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < deadline) {
    ipc_poll(pull, -1, 100ms);
    while (auto bytes = pull.receive()) got.push_back(*bytes);
    if (std::find(got.begin(), got.end(), want) != got.end()) break;
  }
  return got;
}

TEST(IpcSecurity, ClientWithTheJobSecretIsHeard) {
  IpcContext context;
  context.admit_job(kSecret);
  IpcSocket pull(context, IpcSocket::Kind::kPull);
  pull.secure_as_server(kSecret);
  pull.bind("tcp://127.0.0.1:*");
  const std::string endpoint = pull.last_endpoint();
  ASSERT_EQ(endpoint.rfind("tcp://127.0.0.1:", 0), 0u) << endpoint;

  IpcContext client_context;
  IpcSocket push(client_context, IpcSocket::Kind::kPush, 0);
  push.secure_as_client(kSecret);
  push.connect(endpoint);
  push.send("hello");
  EXPECT_EQ(receive_until(pull, "hello"), std::vector<std::string>{"hello"});
  EXPECT_EQ(context.refused(), 0);
}

TEST(IpcSecurity, ClientsWithoutTheSecretAreRefused) {
  IpcContext context;
  context.admit_job(kSecret);
  IpcSocket pull(context, IpcSocket::Kind::kPull);
  pull.secure_as_server(kSecret);
  pull.bind("tcp://127.0.0.1:*");
  const std::string endpoint = pull.last_endpoint();

  IpcContext other;
  // No CURVE at all: the handshake fails on the mechanism.
  IpcSocket plain(other, IpcSocket::Kind::kPush, 0);
  plain.connect(endpoint);
  plain.send("plain");
  // CURVE with another job's keys: the handshake fails on the server key.
  IpcSocket wrong(other, IpcSocket::Kind::kPush, 0);
  wrong.secure_as_client("another job's secret, 32 chars..");
  wrong.connect(endpoint);
  wrong.send("wrong");
  // The server's public key but not the job's client key: the ZAP handler refuses it.
  IpcSocket stranger(other, IpcSocket::Kind::kPush, 0);
  stranger.secure_as_client(kSecret, "another job's secret, 32 chars..");
  stranger.connect(endpoint);
  stranger.send("stranger");
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (context.refused() == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_GE(context.refused(), 1);

  // The job's own client is heard after them, and nothing of theirs arrived.
  IpcSocket good(other, IpcSocket::Kind::kPush, 0);
  good.secure_as_client(kSecret);
  good.connect(endpoint);
  good.send("good");
  std::vector<std::string> got = receive_until(pull, "good");
  std::this_thread::sleep_for(200ms);
  while (auto bytes = pull.receive()) got.push_back(*bytes);
  EXPECT_EQ(got, std::vector<std::string>{"good"});
}

}  // namespace
}  // namespace epserve
