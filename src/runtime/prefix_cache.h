// The prefix cache (SGLang's radix cache, at page granularity): KV pages of finished and
// running requests stay indexed by the tokens they hold, so a new request whose prompt starts
// with the same tokens reuses those pages instead of recomputing them. Pages in the tree are
// reference-counted by the requests using them; unreferenced leaves are evicted least recently
// used first when the allocator runs short.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <utility>
#include <vector>

#include "runtime/slot_allocator.h"

namespace epserve {

class PrefixCache {
 public:
  PrefixCache(SlotAllocator& allocator, bool enabled);
  ~PrefixCache();

  struct Match {
    std::vector<int32_t> pages;  // pages covering the matched tokens
    int64_t num_tokens = 0;      // a multiple of the page size
    void* node = nullptr;        // pin handle: pass to release()
  };

  // The longest cached prefix of tokens[0..limit), whole pages only; pins it.
  Match match(const std::vector<int32_t>& tokens, int64_t limit);
  // Unpins a match (when its request finishes or is retracted).
  void release(void* node);
  // Offers a request's pages for tokens[0..num_tokens): the whole pages become cached (pages the
  // tree already has are returned to the allocator), and the request's pages vector is emptied.
  void insert(const std::vector<int32_t>& tokens, int64_t num_tokens, std::vector<int32_t>& pages);
  // Frees unpinned cached pages, least recently used first, until `pages` are free or nothing
  // evictable is left. Returns true if the allocator now has that many free pages.
  bool evict(int64_t pages);
  // Drops every unpinned entry; false if some entries are still pinned by running requests.
  bool flush();
  int64_t cached_pages() const { return cached_pages_; }
  bool enabled() const { return enabled_; }

 private:
  struct Node;
  // Keeps evictable_ in step with a node's state: it holds exactly the unpinned leaves (not the
  // root), ordered by last use.
  void forget(Node* node);
  void remember(Node* node);

  SlotAllocator& allocator_;
  bool enabled_;
  std::unique_ptr<Node> root_;
  std::set<std::pair<uint64_t, Node*>> evictable_;
  int64_t cached_pages_ = 0;
  uint64_t clock_ = 0;
};

}  // namespace epserve
