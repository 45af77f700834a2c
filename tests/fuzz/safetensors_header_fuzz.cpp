// libFuzzer target for the safetensors header parser: any byte string must either parse into a
// header whose every tensor lies inside the data region, or be rejected with epserve::Error.
// Anything else (a crash, a sanitizer report, another exception type) is a bug.
#include <cstdint>
#include <cstdlib>

#include "core/error.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    epserve::SafetensorsHeader header = epserve::parse_safetensors_header(data, size, "fuzz");
    uint64_t data_size = size - header.data_offset;
    for (const auto& [name, entry] : header.tensors) {
      if (entry.end > data_size || entry.begin > entry.end) std::abort();
    }
  } catch (const epserve::Error&) {
  }
  return 0;
}
