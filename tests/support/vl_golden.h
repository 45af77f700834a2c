// Reading tests/data/golden/qwen3_vl_moe_tiny.safetensors: a tensor's values, and one chat case
// ("one_image", ...) as the request a scheduler gets (prompt ids, greedy settings, its images'
// grids and pixel values, with made-up content hashes from `hash_base`).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "runtime/protocol.h"

namespace epserve::testing {

template <typename T>
std::vector<T> values(const Tensor& t) {
  return std::vector<T>(t.ptr<const T>(), t.ptr<const T>() + t.numel());
}

inline GenerateInput vl_golden_input(const SafetensorsFile& golden, const std::string& c,
                                     int64_t max_new, uint64_t hash_base) {
  GenerateInput in;
  in.rid = c;
  in.input_ids = values<int32_t>(golden.get(c + ".input_ids"));
  in.max_new_tokens = max_new;
  in.sampling.temperature = 0.0f;
  in.ignore_eos = true;
  for (int i = 0; golden.has(c + ".image" + std::to_string(i) + ".grid_thw"); ++i) {
    const std::string p = c + ".image" + std::to_string(i) + ".";
    auto grid = values<int32_t>(golden.get(p + "grid_thw"));
    ImageInput im;
    im.grid_t = grid[0];
    im.grid_h = grid[1];
    im.grid_w = grid[2];
    im.pixel_values = values<float>(golden.get(p + "pixel_values"));
    im.content_hash = hash_base + static_cast<uint64_t>(i);
    in.images.push_back(std::move(im));
  }
  return in;
}

}  // namespace epserve::testing
