#include "runtime/slot_allocator.h"

#include "core/error.h"

namespace epserve {

SlotAllocator::SlotAllocator(int64_t num_slots, int64_t page_size)
    : page_size_(page_size), num_pages_(num_slots / page_size) {
  EPS_CHECK(page_size > 0, "page size must be positive, got {}", page_size);
  EPS_CHECK(num_pages_ > 0, "{} KV slots hold no page of {} tokens", num_slots, page_size);
  free_.reserve(num_pages_);
  // Hand out low page numbers first.
  for (int64_t p = num_pages_ - 1; p >= 0; --p) free_.push_back(static_cast<int32_t>(p));
}

bool SlotAllocator::reserve(std::vector<int32_t>& pages, int64_t num_tokens) {
  int64_t need = pages_for(num_tokens) - static_cast<int64_t>(pages.size());
  if (need <= 0) return true;
  if (need > num_free_pages()) return false;
  for (int64_t i = 0; i < need; ++i) {
    pages.push_back(free_.back());
    free_.pop_back();
  }
  return true;
}

void SlotAllocator::release(std::vector<int32_t>& pages) {
  for (auto it = pages.rbegin(); it != pages.rend(); ++it) free_.push_back(*it);
  pages.clear();
}

std::vector<int32_t> SlotAllocator::slots(const std::vector<int32_t>& pages,
                                          int64_t num_tokens) const {
  EPS_CHECK(pages_for(num_tokens) <= static_cast<int64_t>(pages.size()),
            "{} positions need more than the {} pages held", num_tokens, pages.size());
  std::vector<int32_t> out(num_tokens);
  for (int64_t p = 0; p < num_tokens; ++p) {
    out[p] = static_cast<int32_t>(pages[p / page_size_] * page_size_ + p % page_size_);
  }
  return out;
}

}  // namespace epserve
