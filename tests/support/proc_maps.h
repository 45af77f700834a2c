// The line of /proc/self/maps describing the mapping that holds an address: tests check where
// memory came from (SysV shared memory that UCX allocated, or the heap).
#pragma once

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>

namespace epserve::test {

// The whole maps line ("" if no mapping holds `address`).
inline std::string mapping_of(const void* address) {
  std::ifstream maps("/proc/self/maps");
  const auto at = reinterpret_cast<uintptr_t>(address);
  for (std::string line; std::getline(maps, line);) {
    uintptr_t begin = 0, end = 0;
    char dash = 0;
    std::istringstream in(line);
    in >> std::hex >> begin >> dash >> end;
    if (begin <= at && at < end) return line;
  }
  return "";
}

// Its file name column (SysV shared memory: "/SYSV..."; anonymous memory: "").
inline std::string mapping_name(const void* address) {
  std::string line = mapping_of(address);
  return line.size() > 73 ? line.substr(73) : "";
}

}  // namespace epserve::test
