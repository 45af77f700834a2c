// `epserve bench-one-batch` over ranks: every rank reports, a rank's resident routed-expert
// weights are its share of the model's (the files are mmapped; a rank touches only its own expert
// slices), and with DP attention the batch is the whole batch spread over the groups.
#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <regex>
#include <string>

#include <fmt/format.h>

#include "support/run_epserve.h"
#include "support/temp_dir.h"

namespace epserve {
namespace {

std::string run(const std::string& args, int* exit_code) {
  testing::RunResult r = testing::run_epserve(args);
  *exit_code = r.exit_code;
  return r.output;
}

struct Report {
  std::map<int, double> resident_mib;  // per rank
  double experts_mib = 0, other_mib = 0;
  int batch_size = 0;
};

Report parse(const std::string& out) {
  Report r;
  std::regex rank_line(
      R"(rank (\d+): resident weights ([0-9.]+) MiB \(model: ([0-9.]+) MiB of routed experts, ([0-9.]+) MiB other\))");
  for (auto it = std::sregex_iterator(out.begin(), out.end(), rank_line);
       it != std::sregex_iterator(); ++it) {
    r.resident_mib[std::stoi((*it)[1])] = std::stod((*it)[2]);
    r.experts_mib = std::stod((*it)[3]);
    r.other_mib = std::stod((*it)[4]);
  }
  std::smatch m;
  if (std::regex_search(out, m, std::regex(R"(batch size (\d+))"))) r.batch_size = std::stoi(m[1]);
  return r;
}

class BenchOneBatch : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    int code = 0;
    std::string out =
        run(fmt::format("make-model --preset small --output {}", dir_->path()), &code);
    ASSERT_EQ(code, 0) << out;
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string bench(const std::string& flags, int* code) {
    return run(fmt::format("bench-one-batch --model-path {} --batch-size 4 --input-len 16 "
                           "--output-len 3 {}",
                           dir_->path(), flags),
               code);
  }
  static testing::TempDir* dir_;
};
testing::TempDir* BenchOneBatch::dir_ = nullptr;

TEST_F(BenchOneBatch, EachRankHoldsItsShareOfTheExperts) {
  int code = 0;
  std::string out = bench("", &code);
  ASSERT_EQ(code, 0) << out;
  Report one = parse(out);
  ASSERT_EQ(one.resident_mib.size(), 1u) << out;
  ASSERT_GT(one.experts_mib, 2 * one.other_mib) << out;  // the experts dominate this model
  // One rank touches every weight it uses: all of them but the unused embedding rows.
  EXPECT_GT(one.resident_mib[0], 0.9 * one.experts_mib) << out;
  for (int ep : {2, 4}) {
    out = bench(fmt::format("--ep-size {}", ep), &code);
    ASSERT_EQ(code, 0) << out;
    Report r = parse(out);
    ASSERT_EQ(r.resident_mib.size(), static_cast<size_t>(ep)) << out;
    for (auto [rank, mib] : r.resident_mib) {
      // other weights + this rank's 1/ep of the experts (pages shared with a neighbour's slice
      // at the edges allow a little more).
      EXPECT_LT(mib, r.other_mib + r.experts_mib / ep + 0.1 * r.experts_mib)
          << "rank " << rank << " of " << ep << "\n"
          << out;
      EXPECT_GT(mib, r.experts_mib / ep * 0.9) << "rank " << rank << "\n" << out;
    }
  }
}

TEST_F(BenchOneBatch, DpAttentionSpreadsTheWholeBatch) {
  int code = 0;
  std::string out = bench("--ep-size 2 --enable-dp-attention --moe-a2a-backend deepep", &code);
  ASSERT_EQ(code, 0) << out;
  Report r = parse(out);
  EXPECT_EQ(r.batch_size, 4) << out;
  EXPECT_EQ(r.resident_mib.size(), 2u) << out;
  // Three requests for two groups: one group gets two, the other one; one request for two
  // groups: the idle group joins every forward with an empty batch.
  for (int batch : {3, 1}) {
    out = run(fmt::format("bench-one-batch --model-path {} --batch-size {} --input-len 8 "
                          "--output-len 2 --ep-size 2 --enable-dp-attention --dist-timeout 30",
                          dir_->path(), batch),
              &code);
    EXPECT_EQ(code, 0) << out;
    EXPECT_EQ(parse(out).batch_size, batch) << out;
  }
}

}  // namespace
}  // namespace epserve
