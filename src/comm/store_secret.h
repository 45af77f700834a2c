// The rendezvous store's secret: every connection to the store presents it first (comm/store.h),
// so only the job's own launchers and ranks are heard.
//
// Where a launcher takes it from (job_store_secret):
//   1. EPSERVE_STORE_SECRET, when set: the same value on every node (at least 16 characters);
//   2. one node: a fresh random value, handed to the ranks in their environment;
//   3. several nodes: the file ~/.epserve/store_secret, created with a random value on first use
//      and readable only by its owner; nodes that share the home directory (the usual cluster
//      setup) share it, as Erlang nodes share ~/.erlang.cookie. Elsewhere, set (1).
// A rank reads it from EPSERVE_STORE_SECRET, which its launcher sets.
#pragma once

#include <string>

namespace epserve {

inline constexpr const char* kEnvStoreSecret = "EPSERVE_STORE_SECRET";
// What to tell a user whose nodes disagree.
inline constexpr const char* kStoreSecretHint =
    "set EPSERVE_STORE_SECRET to the same value on every node, or give every node the same "
    "~/.epserve/store_secret";

// 32 random bytes as 64 hex digits.
std::string random_store_secret();
// The secret of a job over `nnodes` nodes, as described above.
std::string job_store_secret(int nnodes);
// ~/.epserve/store_secret: read, or created when missing. Throws when it is unsafe (readable by
// others, not a regular file of this user) or cannot be made.
std::string shared_store_secret(const std::string& path);
std::string default_store_secret_path();

}  // namespace epserve
