// Every parallel layout gives the tokens of one rank. `epserve generate` runs the golden prompts
// of the tiny fixture models with W = 1, 2 and 4 ranks in several layouts (experts over ranks
// with either MoE backend and dispatch mode, heads over ranks); greedy tokens must equal the
// single-rank run's, logits must agree within 1e-4 (the only difference is the order in which
// tensor-parallel partial sums of attention are added: about 6e-6 here), and for a given world
// size every layout must give bit-identical logits (expert parallelism itself is exact).
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "support/temp_dir.h"

namespace epserve {
namespace {

std::string data_dir() { return std::string(EPSERVE_SOURCE_DIR) + "/tests/data"; }

struct Layout {
  int world;
  std::string flags;
};

const std::vector<Layout> kLayouts = {
    {1, ""},
    {2, "--ep-size 2"},
    {2, "--ep-size 2 --moe-a2a-backend deepep --deepep-mode normal"},
    {2, "--ep-size 2 --moe-a2a-backend deepep --deepep-mode low_latency"},
    {2, "--tp-size 2 --ep-size 1"},
    {4, "--ep-size 4"},
    {4, "--ep-size 4 --moe-a2a-backend deepep"},
    {4, "--tp-size 4 --ep-size 2"},
};

nlohmann::json run_generate(const std::string& model, const std::string& prompts,
                            const std::string& flags, const testing::TempDir& dir) {
  std::string out = dir.file("out.json");
  std::string cmd = fmt::format(
      "{} generate --model-path {} {} --max-new-tokens 8 --ignore-eos --return-logits "
      "--output {} {} 2>&1",
      EPSERVE_BINARY, model, prompts, out, flags);
  FILE* pipe = popen(cmd.c_str(), "r");
  std::string log;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) log.append(buf, n);
  int status = pclose(pipe);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << cmd << "\n" << log;
  std::ifstream in(out);
  return nlohmann::json::parse(in);
}

class LayoutInvariance : public ::testing::TestWithParam<std::string> {};

TEST_P(LayoutInvariance, EveryLayoutGivesTheTokensOfOneRank) {
  const std::string model = data_dir() + "/models/" + GetParam();
  auto golden = SafetensorsFile::open(data_dir() + "/golden/" + GetParam() + ".safetensors");
  std::string prompts;
  for (int p = 0; p < 4; ++p) {
    Tensor ids = golden->get(fmt::format("prompt{}.input_ids", p));
    std::string list;
    for (int64_t i = 0; i < ids.numel(); ++i) {
      list += (i ? "," : "") + std::to_string(ids.ptr<int32_t>()[i]);
    }
    prompts += " --input-ids " + list;
  }
  testing::TempDir dir;
  nlohmann::json single = run_generate(model, prompts, "", dir);
  std::map<int, nlohmann::json> first_of_world;
  for (const Layout& layout : kLayouts) {
    SCOPED_TRACE(layout.flags);
    nlohmann::json result = run_generate(model, prompts, layout.flags, dir);
    ASSERT_EQ(result["sequences"].size(), 4u);
    for (size_t s = 0; s < 4; ++s) {
      const auto& a = single["sequences"][s];
      const auto& b = result["sequences"][s];
      EXPECT_EQ(a["output_ids"], b["output_ids"]) << "prompt " << s;
      for (size_t step = 0; step < a["logits"].size(); ++step) {
        for (size_t v = 0; v < a["logits"][step].size(); ++v) {
          ASSERT_NEAR(a["logits"][step][v].get<double>(), b["logits"][step][v].get<double>(),
                      1e-4);
        }
      }
    }
    auto [it, inserted] = first_of_world.emplace(layout.world, result);
    if (!inserted) {
      EXPECT_EQ(it->second, result) << "layouts of world size " << layout.world << " differ";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Models, LayoutInvariance,
                         ::testing::Values("deepseek_v3_tiny", "qwen3_moe_tiny"));

}  // namespace
}  // namespace epserve
