#include "runtime/prefix_cache.h"

#include <algorithm>

#include "core/error.h"

namespace epserve {

// One node per cached page: the page's tokens are the edge from the parent.
struct PrefixCache::Node {
  Node* parent = nullptr;
  std::vector<int32_t> key;  // the page_size tokens this page holds
  int32_t page = -1;
  int64_t pins = 0;  // requests using this node (or a descendant)
  uint64_t last_use = 0;
  bool in_evictable = false;
  std::map<std::vector<int32_t>, std::unique_ptr<Node>> children;
};

void PrefixCache::forget(Node* n) {
  if (n->in_evictable) {
    evictable_.erase({n->last_use, n});
    n->in_evictable = false;
  }
}

void PrefixCache::remember(Node* n) {
  if (n != root_.get() && n->children.empty() && n->pins == 0 && !n->in_evictable) {
    evictable_.insert({n->last_use, n});
    n->in_evictable = true;
  }
}

PrefixCache::PrefixCache(SlotAllocator& allocator, bool enabled)
    : allocator_(allocator), enabled_(enabled), root_(std::make_unique<Node>()) {}

PrefixCache::~PrefixCache() = default;

PrefixCache::Match PrefixCache::match(const std::vector<int32_t>& tokens, int64_t limit) {
  Match m;
  if (!enabled_) return m;
  const int64_t ps = allocator_.page_size();
  Node* node = root_.get();
  ++clock_;
  for (int64_t start = 0; start + ps <= limit; start += ps) {
    std::vector<int32_t> key(tokens.begin() + start, tokens.begin() + start + ps);
    auto it = node->children.find(key);
    if (it == node->children.end()) break;
    node = it->second.get();
    m.pages.push_back(node->page);
    m.num_tokens += ps;
  }
  for (Node* n = node; n != nullptr; n = n->parent) {
    forget(n);
    ++n->pins;
    n->last_use = clock_;
  }
  m.node = node;
  return m;
}

void PrefixCache::release(void* handle) {
  if (handle == nullptr) return;
  for (Node* n = static_cast<Node*>(handle); n != nullptr; n = n->parent) {
    EPS_CHECK(n->pins > 0, "prefix cache: release without a matching pin");
    --n->pins;
    remember(n);
  }
}

void PrefixCache::insert(const std::vector<int32_t>& tokens, int64_t num_tokens,
                         std::vector<int32_t>& pages) {
  const int64_t ps = allocator_.page_size();
  std::vector<int32_t> unused;
  Node* node = root_.get();
  ++clock_;
  int64_t full_pages = enabled_ ? num_tokens / ps : 0;
  for (int64_t p = 0; p < static_cast<int64_t>(pages.size()); ++p) {
    if (p >= full_pages) {
      unused.push_back(pages[p]);
      continue;
    }
    std::vector<int32_t> key(tokens.begin() + p * ps, tokens.begin() + (p + 1) * ps);
    auto it = node->children.find(key);
    if (it != node->children.end()) {
      // Already cached (the request matched it, or computed the same tokens itself).
      if (it->second->page != pages[p]) unused.push_back(pages[p]);
      node = it->second.get();
    } else {
      forget(node);  // no longer a leaf
      auto child = std::make_unique<Node>();
      child->parent = node;
      child->key = std::move(key);
      child->page = pages[p];
      Node* raw = child.get();
      node->children.emplace(raw->key, std::move(child));
      ++cached_pages_;
      node = raw;
    }
    forget(node);
    node->last_use = clock_;
    remember(node);
  }
  allocator_.release(unused);
  pages.clear();
}

bool PrefixCache::evict(int64_t want) {
  while (allocator_.num_free_pages() < want && !evictable_.empty()) {
    Node* victim = evictable_.begin()->second;  // the least recently used unpinned leaf
    forget(victim);
    std::vector<int32_t> page = {victim->page};
    allocator_.release(page);
    --cached_pages_;
    Node* parent = victim->parent;
    std::vector<int32_t> key = victim->key;
    parent->children.erase(key);
    remember(parent);
  }
  return allocator_.num_free_pages() >= want;
}

bool PrefixCache::flush() {
  if (root_->pins > 0) return false;
  evict(allocator_.num_pages());
  return cached_pages_ == 0;
}

}  // namespace epserve
