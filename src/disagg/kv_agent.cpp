#include "disagg/kv_agent.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/error.h"

namespace epserve {
namespace {

using nlohmann::json;

std::string to_hex(const std::string& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

std::string from_hex(const std::string& hex) {
  EPS_CHECK(hex.size() % 2 == 0, "a KV description holds a malformed hex string");
  std::string out(hex.size() / 2, '\0');
  for (size_t i = 0; i < out.size(); ++i) {
    out[i] = static_cast<char>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
  }
  return out;
}

json layout_json(const KvRankLayout& l) {
  return {{"num_layers", l.num_layers},   {"head_width", l.head_width},
          {"heads_total", l.heads_total}, {"head_begin", l.head_begin},
          {"head_end", l.head_end},       {"has_v", l.has_v}};
}

KvRankLayout layout_from_json(const json& j) {
  KvRankLayout l;
  l.num_layers = j.at("num_layers").get<int64_t>();
  l.head_width = j.at("head_width").get<int64_t>();
  l.heads_total = j.at("heads_total").get<int64_t>();
  l.head_begin = j.at("head_begin").get<int64_t>();
  l.head_end = j.at("head_end").get<int64_t>();
  l.has_v = j.at("has_v").get<bool>();
  return l;
}

std::string describe_layout(const KvRankLayout& l) {
  return fmt::format("{} layers, {} kv heads of {} floats{}", l.num_layers, l.heads_total,
                     l.head_width, l.has_v ? " (K and V)" : " (latent)");
}

class UcxKvAgent : public KvTransferAgent {
 public:
  explicit UcxKvAgent(const KvAgentOptions& options)
      : options_(options),
        agent_(std::make_shared<RmaAgent>(
            RmaAgentOptions{options.net_devices, options.mode == "decode"})) {}

  KvStorage allocate_kv(size_t bytes) override {
    // A decode rank is written into: memory UCX allocated can be mapped by a prefill rank on this
    // host and written directly; registered heap memory takes emulated puts (comm/rma_agent.h).
    const bool decode = options_.mode == "decode";
    if (!(decode ? options_.allocate_kv : options_.allocate_source_kv)) return {};
    void* address = nullptr;
    std::string key;
    try {
      key = agent_->allocate_memory(bytes, &address);
    } catch (const std::exception& e) {
      spdlog::warn(
          "KV transfer: {}; the KV cache takes ordinary memory (registered with UCX), into which "
          "prefill ranks on this host write slower",
          e.what());
      return {};
    }
    spdlog::info("KV transfer: the KV cache ({} bytes) is in memory UCX allocated", bytes);
    if (decode) {
      block_ = static_cast<char*>(address);
      block_bytes_ = bytes;
      block_key_ = key;
    }
    std::shared_ptr<RmaAgent> agent = agent_;
    return {address, std::shared_ptr<void>(address, [agent](void* p) {
              try {
                agent->free_memory(p);
              } catch (const std::exception& e) {
                spdlog::warn("KV transfer: {}", e.what());
              }
            })};
  }

  void attach(const KvMemory& memory) override {
    cache_ = memory;
    for (int r = 0; r < memory.group_size; ++r) group_.push_back(kv_rank_layout(memory, r));
    me_ = memory.group_rank;
    EPS_CHECK(group_[me_].row_width() == memory.k_width,
              "KV transfer: this rank's KV rows hold {} floats, its heads {}", memory.k_width,
              group_[me_].row_width());
    if (options_.mode != "decode") return;
    const size_t slots = static_cast<size_t>(memory.num_slots);
    auto add = [&](float* region, int64_t width, std::vector<uint64_t>& addresses) {
      const size_t bytes = slots * width * sizeof(float);
      const char* p = reinterpret_cast<const char*>(region);
      addresses.push_back(reinterpret_cast<uint64_t>(region));
      // A region inside the allocated block goes with the block's key (one rkey for a writer).
      if (block_ != nullptr && p >= block_ && p + bytes <= block_ + block_bytes_) {
        keys_.push_back(block_key_);
      } else {
        keys_.push_back(agent_->register_memory(region, bytes));
      }
    };
    for (float* k : memory.k) add(k, memory.k_width, k_);
    for (float* v : memory.v) add(v, memory.v_width, v_);
  }

  json describe() const override {
    json keys = json::array();
    for (const auto& k : keys_) keys.push_back(to_hex(k));
    return {{"address", to_hex(agent_->address())},
            {"host", RmaAgent::host_id()},
            {"layout", layout_json(group_[me_])},
            {"num_slots", cache_.num_slots},
            {"k", k_},
            {"v", v_},
            {"keys", keys}};
  }

  int64_t send(const json& target, const std::vector<int32_t>& slots) override {
    const auto dst_slots = target.at("slots").get<std::vector<int32_t>>();
    const json& ranks = target.at("ranks");
    EPS_CHECK(!ranks.empty(), "the decode server described no ranks");
    const auto deadline = std::chrono::steady_clock::now() + options_.transfer_timeout;
    int64_t bytes = 0;
    for (size_t d = 0; d < ranks.size(); ++d) {
      const json& rank = ranks[d];
      KvRankLayout decode = layout_from_json(rank.at("layout"));
      std::vector<KvPut> plan =
          plan_kv_puts(group_, me_, decode, static_cast<int>(d), slots, dst_slots);
      if (plan.empty()) continue;
      const int64_t num_slots = rank.at("num_slots").get<int64_t>();
      const auto k = rank.at("k").get<std::vector<uint64_t>>();
      const auto v = rank.at("v").get<std::vector<uint64_t>>();
      std::vector<std::string> keys;
      for (const auto& key : rank.at("keys")) keys.push_back(from_hex(key.get<std::string>()));
      const int64_t src_width = group_[me_].row_width();
      const int64_t dst_width = decode.row_width();
      std::vector<RmaPut> puts;
      puts.reserve(plan.size());
      for (const KvPut& p : plan) {
        EPS_CHECK(p.dst_slot >= 0 && p.dst_slot + (p.floats - 1) / dst_width < num_slots,
                  "the decode server reserved slot {} of its {}", p.dst_slot, num_slots);
        const float* src = (p.v ? cache_.v.at(p.layer) : cache_.k.at(p.layer)) +
                           static_cast<int64_t>(p.src_slot) * src_width + p.src_offset;
        uint64_t remote = (p.v ? v.at(p.layer) : k.at(p.layer)) +
                          (static_cast<uint64_t>(p.dst_slot) * dst_width + p.dst_offset) * 4;
        int key = static_cast<int>(p.v ? k.size() + p.layer : p.layer);
        puts.push_back({src, remote, static_cast<size_t>(p.floats) * 4, key});
        bytes += p.floats * 4;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      const bool same_host = rank.value("host", std::string()) == RmaAgent::host_id();
      agent_->write(from_hex(rank.at("address").get<std::string>()), keys, puts,
                    std::max(left, std::chrono::milliseconds(1)), same_host);
    }
    return bytes;
  }

  std::vector<std::string> draining() override {
    std::vector<std::string> out;
    for (const std::string& peer : agent_->draining(options_.drain_timeout)) {
      out.push_back(to_hex(peer));
    }
    return out;
  }

 private:
  KvAgentOptions options_;
  // Shared with the KV cache's memory when allocate_kv() gave it: UCX unmaps it, and the agent
  // (context and worker) ends after both.
  std::shared_ptr<RmaAgent> agent_;
  KvMemory cache_;
  std::vector<KvRankLayout> group_;
  int me_ = 0;
  std::vector<uint64_t> k_, v_;
  std::vector<std::string> keys_;
  const char* block_ = nullptr;  // allocate_kv()'s block, its size and key
  size_t block_bytes_ = 0;
  std::string block_key_;
};

}  // namespace

KvRankLayout kv_rank_layout(const KvMemory& memory, int rank) {
  const int size = memory.group_size;
  KvRankLayout l;
  l.num_layers = static_cast<int64_t>(memory.k.size());
  l.has_v = memory.v_width > 0;
  if (memory.mla) {
    l.head_width = memory.k_width;
    l.heads_total = 1;
    l.head_begin = 0;
    l.head_end = 1;
    return l;
  }
  const int64_t kv = memory.num_kv_heads;
  l.head_width = memory.head_dim;
  l.heads_total = kv;
  if (kv >= size) {
    l.head_begin = kv / size * rank;
    l.head_end = kv / size * (rank + 1);
  } else {
    l.head_begin = rank / (size / kv);
    l.head_end = l.head_begin + 1;
  }
  return l;
}

std::vector<KvPut> plan_kv_puts(const std::vector<KvRankLayout>& prefill, int me,
                                const KvRankLayout& decode, int decode_index,
                                const std::vector<int32_t>& src_slots,
                                const std::vector<int32_t>& dst_slots) {
  const KvRankLayout& mine = prefill.at(me);
  EPS_CHECK(mine.num_layers == decode.num_layers && mine.head_width == decode.head_width &&
                mine.heads_total == decode.heads_total && mine.has_v == decode.has_v,
            "the prefill and decode servers' KV caches differ (prefill: {}; decode: {}): serve "
            "the same model on both",
            describe_layout(mine), describe_layout(decode));
  EPS_CHECK(src_slots.size() == dst_slots.size(), "{} source slots for {} reserved slots",
            src_slots.size(), dst_slots.size());
  // Heads of the decode rank this prefill rank sends: the holder chosen for each head.
  std::vector<std::pair<int64_t, int64_t>> ranges;
  for (int64_t h = decode.head_begin; h < decode.head_end; ++h) {
    std::vector<int> holders;
    for (int i = 0; i < static_cast<int>(prefill.size()); ++i) {
      if (prefill[i].head_begin <= h && h < prefill[i].head_end) holders.push_back(i);
    }
    EPS_CHECK(!holders.empty(), "no prefill rank holds kv head {}", h);
    if (holders[decode_index % holders.size()] != me) continue;
    if (!ranges.empty() && ranges.back().second == h) {
      ranges.back().second = h + 1;
    } else {
      ranges.push_back({h, h + 1});
    }
  }
  std::vector<KvPut> puts;
  const int64_t src_width = mine.row_width(), dst_width = decode.row_width();
  const size_t n = src_slots.size();
  for (int64_t layer = 0; layer < mine.num_layers; ++layer) {
    for (int kv = 0; kv < (mine.has_v ? 2 : 1); ++kv) {
      for (auto [h0, h1] : ranges) {
        const int64_t floats = (h1 - h0) * mine.head_width;
        const int64_t src_offset = (h0 - mine.head_begin) * mine.head_width;
        const int64_t dst_offset = (h0 - decode.head_begin) * mine.head_width;
        const bool whole = floats == src_width && floats == dst_width;
        for (size_t i = 0; i < n;) {
          size_t run = 1;
          // Whole rows in consecutive slots on both sides are one contiguous block.
          while (whole && i + run < n && src_slots[i + run] == src_slots[i] + int32_t(run) &&
                 dst_slots[i + run] == dst_slots[i] + int32_t(run)) {
            ++run;
          }
          puts.push_back({layer, kv == 1, src_slots[i], src_offset, dst_slots[i], dst_offset,
                          floats * static_cast<int64_t>(run)});
          i += run;
        }
      }
    }
  }
  return puts;
}

std::string check_kv_layouts(const json& prefill_ranks, const json& decode_ranks) {
  try {
    EPS_CHECK(prefill_ranks.is_array() && !prefill_ranks.empty(),
              "the prefill server describes no KV ranks");
    EPS_CHECK(decode_ranks.is_array() && !decode_ranks.empty(),
              "the decode server describes no KV ranks");
    std::vector<KvRankLayout> prefill;
    for (const auto& r : prefill_ranks) prefill.push_back(layout_from_json(r.at("layout")));
    for (size_t d = 0; d < decode_ranks.size(); ++d) {
      KvRankLayout decode = layout_from_json(decode_ranks[d].at("layout"));
      for (int p = 0; p < static_cast<int>(prefill.size()); ++p) {
        plan_kv_puts(prefill, p, decode, static_cast<int>(d), {}, {});
      }
    }
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

KvTransferAgentFactory make_ucx_kv_agent_factory(KvAgentOptions options) {
  return [options]() -> std::unique_ptr<KvTransferAgent> {
    return std::make_unique<UcxKvAgent>(options);
  };
}

}  // namespace epserve
