// SGLang router's cache_aware policy. Each worker ("tenant") owns the request texts it was sent,
// in one approximate radix tree over Unicode characters shared by all workers. When the load is
// balanced, a request goes to the worker whose texts share the longest prefix with it if the
// shared part is more than cache_threshold of the text, else to the worker with the fewest
// characters in the tree. When it is not ((max - min) > balance_abs_threshold and
// max > min * balance_rel_threshold, over the requests in flight), it goes to the least loaded.
// The chosen worker's tree grows by the text; every eviction_interval_secs the least recently
// used leaves of each worker over max_tree_size characters are dropped.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "router/policy.h"

namespace epserve {

struct CacheAwareOptions {
  double cache_threshold = 0.3;
  int64_t balance_abs_threshold = 64;
  double balance_rel_threshold = 1.5;
  int eviction_interval_secs = 120;
  int64_t max_tree_size = int64_t{1} << 26;
};

// The multi-tenant radix tree (not thread-safe; the policy locks around it).
class ApproxTree {
 public:
  ApproxTree();
  ~ApproxTree();
  void insert(const std::u32string& text, const std::string& tenant);
  // The length of the longest prefix of `text` in the tree, and the node's tenants among
  // `allowed` (most recently used first); that tenant's access time is refreshed up to the root.
  size_t prefix_match(const std::u32string& text, const std::vector<std::string>& allowed,
                      std::string& tenant);
  int64_t char_count(const std::string& tenant) const;
  // Drops the least recently used leaves of every tenant over max_chars until it is not.
  void evict(int64_t max_chars);

 private:
  struct Node;
  std::unique_ptr<Node> root_;
  std::unordered_map<std::string, int64_t> char_count_;
  int64_t clock_ = 0;  // access order (SGLang uses milliseconds; only the order matters)
};

class CacheAwarePolicy : public Policy {
 public:
  explicit CacheAwarePolicy(CacheAwareOptions options) : options_(options) {}
  const char* name() const override { return "cache_aware"; }
  bool needs_request_text() const override { return true; }
  std::shared_ptr<Worker> select(const WorkerList& available, const std::string& text) override;

 private:
  CacheAwareOptions options_;
  std::mutex mutex_;
  ApproxTree tree_;
  std::chrono::steady_clock::time_point last_eviction_ = std::chrono::steady_clock::now();
};

// UTF-8 to characters (an invalid byte stands for itself).
std::u32string utf8_chars(const std::string& text);

}  // namespace epserve
