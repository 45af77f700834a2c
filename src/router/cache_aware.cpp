#include "router/cache_aware.h"

#include <algorithm>
#include <queue>

namespace epserve {

struct ApproxTree::Node {
  std::u32string text;
  std::map<char32_t, std::unique_ptr<Node>> children;
  std::unordered_map<std::string, int64_t> tenants;  // tenant -> last access
  Node* parent = nullptr;
};

std::u32string utf8_chars(const std::string& text) {
  std::u32string out;
  for (size_t i = 0; i < text.size();) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    int extra = 0;
    if (c >= 0xC0 && c < 0xE0) extra = 1;
    if (c >= 0xE0 && c < 0xF0) extra = 2;
    if (c >= 0xF0 && c < 0xF8) extra = 3;
    if (i + extra >= text.size()) extra = 0;  // truncated
    char32_t cp = extra == 0 ? c : (c & (0x3F >> extra));
    bool ok = true;
    for (int k = 1; k <= extra; ++k) {
      unsigned char cc = static_cast<unsigned char>(text[i + k]);
      ok = ok && (cc & 0xC0) == 0x80;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (!ok) {
      cp = c;
      extra = 0;
    }
    out.push_back(cp);
    i += 1 + extra;
  }
  return out;
}

namespace {

size_t shared_prefix(const std::u32string& a, const std::u32string& b, size_t b_from) {
  size_t n = 0;
  while (n < a.size() && b_from + n < b.size() && a[n] == b[b_from + n]) ++n;
  return n;
}

}  // namespace

ApproxTree::ApproxTree() : root_(std::make_unique<Node>()) {}
ApproxTree::~ApproxTree() = default;

void ApproxTree::insert(const std::u32string& text, const std::string& tenant) {
  const int64_t now = ++clock_;
  root_->tenants[tenant] = now;
  char_count_.emplace(tenant, 0);
  Node* node = root_.get();
  size_t at = 0;
  while (at < text.size()) {
    auto it = node->children.find(text[at]);
    if (it == node->children.end()) {
      auto leaf = std::make_unique<Node>();
      leaf->text = text.substr(at);
      leaf->parent = node;
      leaf->tenants[tenant] = now;
      char_count_[tenant] += static_cast<int64_t>(leaf->text.size());
      node->children[text[at]] = std::move(leaf);
      return;
    }
    Node* child = it->second.get();
    size_t shared = shared_prefix(child->text, text, at);
    if (shared < child->text.size()) {
      // Split: node -> middle (the shared part) -> child (the rest).
      auto middle = std::make_unique<Node>();
      middle->text = child->text.substr(0, shared);
      middle->parent = node;
      middle->tenants = child->tenants;
      std::unique_ptr<Node> moved = std::move(it->second);
      moved->text = moved->text.substr(shared);
      moved->parent = middle.get();
      middle->children[moved->text[0]] = std::move(moved);
      it->second = std::move(middle);
      child = it->second.get();
    }
    if (child->tenants.emplace(tenant, now).second) {
      char_count_[tenant] += static_cast<int64_t>(child->text.size());
    } else {
      child->tenants[tenant] = now;
    }
    node = child;
    at += shared;
  }
}

size_t ApproxTree::prefix_match(const std::u32string& text, const std::vector<std::string>& allowed,
                                std::string& tenant) {
  Node* node = root_.get();
  size_t at = 0;
  while (at < text.size()) {
    auto it = node->children.find(text[at]);
    if (it == node->children.end()) break;
    Node* child = it->second.get();
    size_t shared = shared_prefix(child->text, text, at);
    at += shared;
    node = child;
    if (shared < child->text.size()) break;
  }
  tenant.clear();
  int64_t best = -1;
  for (const auto& [name, time] : node->tenants) {
    if (time > best && std::find(allowed.begin(), allowed.end(), name) != allowed.end()) {
      best = time;
      tenant = name;
    }
  }
  if (!tenant.empty()) {
    const int64_t now = ++clock_;
    for (Node* n = node; n != nullptr; n = n->parent) n->tenants[tenant] = now;
  }
  return at;
}

int64_t ApproxTree::char_count(const std::string& tenant) const {
  auto it = char_count_.find(tenant);
  return it == char_count_.end() ? 0 : it->second;
}

void ApproxTree::evict(int64_t max_chars) {
  for (auto& [tenant, count] : char_count_) {
    if (count <= max_chars) continue;
    // The tenant's leaves (no child carries the tenant), oldest first.
    auto is_leaf = [&](const Node* n) {
      return std::none_of(n->children.begin(), n->children.end(),
                          [&](const auto& c) { return c.second->tenants.count(tenant) > 0; });
    };
    using Entry = std::pair<int64_t, Node*>;
    std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> leaves;
    std::vector<Node*> stack = {root_.get()};
    while (!stack.empty()) {
      Node* n = stack.back();
      stack.pop_back();
      for (auto& c : n->children) stack.push_back(c.second.get());
      if (n != root_.get() && n->tenants.count(tenant) && is_leaf(n)) {
        leaves.emplace(n->tenants[tenant], n);
      }
    }
    while (count > max_chars && !leaves.empty()) {
      Node* n = leaves.top().second;
      leaves.pop();
      n->tenants.erase(tenant);
      count -= static_cast<int64_t>(n->text.size());
      Node* parent = n->parent;
      if (n->tenants.empty() && n->children.empty()) parent->children.erase(n->text[0]);
      if (parent != root_.get() && parent->tenants.count(tenant) && is_leaf(parent)) {
        leaves.emplace(parent->tenants[tenant], parent);
      }
    }
  }
}

std::shared_ptr<Worker> CacheAwarePolicy::select(const WorkerList& available,
                                                 const std::string& text) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto now = std::chrono::steady_clock::now();
  if (options_.eviction_interval_secs > 0 &&
      now - last_eviction_ >= std::chrono::seconds(options_.eviction_interval_secs)) {
    tree_.evict(options_.max_tree_size);
    last_eviction_ = now;
  }
  const std::u32string chars = utf8_chars(text);
  int64_t max_load = 0, min_load = INT64_MAX;
  for (const auto& w : available) {
    max_load = std::max<int64_t>(max_load, w->load.load());
    min_load = std::min<int64_t>(min_load, w->load.load());
  }
  std::shared_ptr<Worker> chosen;
  if (max_load - min_load > options_.balance_abs_threshold &&
      static_cast<double>(max_load) >
          static_cast<double>(min_load) * options_.balance_rel_threshold) {
    chosen = *std::min_element(available.begin(), available.end(),
                               [](const auto& a, const auto& b) { return a->load < b->load; });
  } else {
    std::vector<std::string> urls;
    for (const auto& w : available) urls.push_back(w->url);
    std::string matched;
    size_t matched_chars = tree_.prefix_match(chars, urls, matched);
    double rate = chars.empty() ? 0.0 : static_cast<double>(matched_chars) / chars.size();
    if (rate > options_.cache_threshold && !matched.empty()) {
      for (const auto& w : available) {
        if (w->url == matched) chosen = w;
      }
    } else {
      chosen =
          *std::min_element(available.begin(), available.end(), [&](const auto& a, const auto& b) {
            return tree_.char_count(a->url) < tree_.char_count(b->url);
          });
    }
  }
  tree_.insert(chars, chosen->url);
  return chosen;
}

}  // namespace epserve
