// The four golden prompts of a fixture model (tests/data/golden/NAME.safetensors) as
// `--input-ids` flags of `epserve generate`, for the multi-rank tests that compare layouts.
// Needs EPSERVE_SOURCE_DIR.
#pragma once

#include <cstdint>
#include <string>

#include <fmt/format.h>

#include "io/safetensors.h"

namespace epserve::testing {

inline std::string golden_prompts(const std::string& name) {
  auto golden = SafetensorsFile::open(std::string(EPSERVE_SOURCE_DIR) + "/tests/data/golden/" +
                                      name + ".safetensors");
  std::string prompts;
  for (int p = 0; p < 4; ++p) {
    Tensor ids = golden->get(fmt::format("prompt{}.input_ids", p));
    std::string list;
    for (int64_t i = 0; i < ids.numel(); ++i) {
      list += (i ? "," : "") + std::to_string(ids.ptr<int32_t>()[i]);
    }
    prompts += " --input-ids " + list;
  }
  return prompts;
}

}  // namespace epserve::testing
