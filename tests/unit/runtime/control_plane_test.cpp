// The frontend's tcp:// bind address for DP groups led from other nodes: ZeroMQ binds only
// numeric addresses, so a host name in --dist-init-addr is resolved first.
#include "runtime/control_plane.h"

#include <gtest/gtest.h>

#include "core/error.h"

namespace epserve {
namespace {

TEST(ControlPlane, TcpBindResolvesAHostName) {
  EXPECT_EQ(control_plane_tcp_bind("10.0.0.1:29500"), "tcp://10.0.0.1:*");
  EXPECT_EQ(control_plane_tcp_bind("[::1]:29500"), "tcp://[::1]:*");
  const std::string named = control_plane_tcp_bind("localhost:29500");
  EXPECT_TRUE(named == "tcp://127.0.0.1:*" || named == "tcp://[::1]:*") << named;
  EXPECT_THROW(control_plane_tcp_bind("no-such-host.invalid:29500"), Error);
}

}  // namespace
}  // namespace epserve
