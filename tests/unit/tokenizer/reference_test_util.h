// Helpers for the tokenizer comparison tests: the corpus, FNV-1a hashes as the reference tools
// write them (tools/reference/tokenizer/references.py), fixture paths.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace epserve::tokenizer::testing {

inline std::string fixture_dir() {
  return std::string(EPSERVE_SOURCE_DIR) + "/tests/data/tokenizers";
}

inline std::string fnv1a(std::string_view data) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : data) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

inline std::string join_ids(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) s.push_back(' ');
    s += std::to_string(ids[i]);
  }
  return s;
}

struct CorpusLine {
  std::string text;  // raw bytes (may be invalid UTF-8)
  bool valid_utf8;
};

inline std::vector<CorpusLine> load_corpus(const std::string& file = "corpus.jsonl") {
  std::ifstream in(fixture_dir() + "/" + file);
  std::vector<CorpusLine> out;
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (j.is_string()) {
      out.push_back({j.get<std::string>(), true});
    } else {
      std::string hex = j.at("hex"), bytes;
      for (size_t i = 0; i + 1 < hex.size(); i += 2) {
        bytes.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
      }
      out.push_back({bytes, false});
    }
  }
  return out;
}

}  // namespace epserve::tokenizer::testing
