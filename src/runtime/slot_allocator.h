// Pages of KV-cache slots. The cache's slots are cut into pages of page_size; a sequence owns a
// list of pages and its position p lives in slot pages[p / page_size] * page_size +
// p % page_size. Freed pages return to the pool at once.
#pragma once

#include <cstdint>
#include <vector>

namespace epserve {

class SlotAllocator {
 public:
  SlotAllocator(int64_t num_slots, int64_t page_size);

  int64_t page_size() const { return page_size_; }
  int64_t num_pages() const { return num_pages_; }
  int64_t num_free_pages() const { return static_cast<int64_t>(free_.size()); }
  int64_t pages_for(int64_t num_tokens) const { return (num_tokens + page_size_ - 1) / page_size_; }

  // Grows `pages` so it covers num_tokens positions; false (and no change) if the pool is short.
  bool reserve(std::vector<int32_t>& pages, int64_t num_tokens);
  void release(std::vector<int32_t>& pages);
  // Slot ids of positions 0..num_tokens-1.
  std::vector<int32_t> slots(const std::vector<int32_t>& pages, int64_t num_tokens) const;

 private:
  int64_t page_size_;
  int64_t num_pages_;
  std::vector<int32_t> free_;
};

}  // namespace epserve
