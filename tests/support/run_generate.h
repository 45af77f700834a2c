// `epserve generate` on a model with --ignore-eos --return-logits, its JSON output read back (an
// empty object when it wrote none): the multi-rank tests run one layout per call and compare.
// Needs EPSERVE_BINARY.
#pragma once

#include <cstdio>
#include <fstream>
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/run_epserve.h"
#include "support/temp_dir.h"

namespace epserve::testing {

inline nlohmann::json run_generate(const std::string& model, const std::string& prompts,
                                   const std::string& flags, const TempDir& dir,
                                   int max_new_tokens = 8, const std::string& env = "") {
  std::string out = dir.file("out.json");
  std::remove(out.c_str());
  std::string args = fmt::format(
      "generate --model-path {} {} --max-new-tokens {} --ignore-eos --return-logits --output {} "
      "{}",
      model, prompts, max_new_tokens, out, flags);
  RunResult r = run_epserve(args, env);
  EXPECT_EQ(r.exit_code, 0) << args << "\n" << r.output;
  std::ifstream in(out);
  return in ? nlohmann::json::parse(in) : nlohmann::json::object();
}

}  // namespace epserve::testing
