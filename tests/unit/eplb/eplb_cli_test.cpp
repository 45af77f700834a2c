// Runs the real `epserve eplb plan` binary: the interface external checks rely on.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

namespace {

using json = nlohmann::json;

struct CliRun {
  int exit_code;
  std::string out;
  std::string err;
};

std::string read_file(const std::string& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

class EplbCli : public testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(EPSERVE_BINARY))
        << EPSERVE_BINARY << " is missing; build the epserve target first";
    dir_ = testing::TempDir() + "/eplb_cli_" + std::to_string(::getpid());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }

  CliRun plan(const std::string& args) {
    std::string out = dir_ + "/stdout", err = dir_ + "/stderr";
    std::string command =
        std::string(EPSERVE_BINARY) + " eplb plan " + args + " >" + out + " 2>" + err;
    int status = std::system(command.c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_file(out), read_file(err)};
  }

  std::string dir_;
};

const char* kReadmeInput =
    R"({"logical_count": [[90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86],
                          [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27]]})";
const char* kReadmeLayout = " --num-physical-experts 16 --num-gpus 8 --num-nodes 2 --num-groups 4";

TEST_F(EplbCli, ReadmeExampleWithDeepseekGivesThePublishedMap) {
  std::string input = write("in.json", kReadmeInput), output = dir_ + "/out.json";
  CliRun run =
      plan("--input " + input + kReadmeLayout + " --algorithm deepseek --output " + output);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  json out = json::parse(read_file(output));
  EXPECT_EQ(out["physical_to_logical_map"], json::parse("[[5,6,5,7,8,4,3,4,10,9,10,2,0,1,11,1],"
                                                        "[7,10,6,8,6,11,8,9,2,4,5,1,5,0,3,1]]"));
  EXPECT_EQ(out["logical_count"], json::parse("[[1,2,1,1,2,2,1,1,1,1,2,1],"
                                              "[1,2,1,1,1,2,2,1,2,1,1,1]]"));
  ASSERT_EQ(out["logical_to_all_physical_map"].size(), 2u);
  ASSERT_EQ(out["logical_to_all_physical_map"][0].size(), 12u);
  EXPECT_EQ(out["logical_to_all_physical_map"][0][1], json::parse("[15, 13]"));
  EXPECT_EQ(out["logical_to_all_physical_map"][0][0], json::parse("[12, -1]"));
  ASSERT_EQ(out["balancedness_per_layer"].size(), 2u);
  double mean = (out["balancedness_per_layer"][0].get<double>() +
                 out["balancedness_per_layer"][1].get<double>()) /
                2;
  EXPECT_NEAR(out["balancedness"].get<double>(), mean, 1e-12);
  // The table: header, one line per layer with before and after, and the mean.
  EXPECT_NE(run.out.find("before"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("after"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("     1     0.4201     0.8050"), std::string::npos) << run.out;
}

TEST_F(EplbCli, DefaultIsAutoWhichIsMinmaxAndNeverWorse) {
  std::string input = write("in.json", kReadmeInput);
  CliRun deepseek = plan("--input " + input + kReadmeLayout + " --algorithm deepseek");
  CliRun automatic = plan("--input " + input + kReadmeLayout);
  ASSERT_EQ(deepseek.exit_code, 0) << deepseek.err;
  ASSERT_EQ(automatic.exit_code, 0) << automatic.err;
  json theirs = json::parse(deepseek.out), ours = json::parse(automatic.out);  // JSON on stdout
  EXPECT_EQ(ours["algorithm"], "minmax_hierarchical");
  EXPECT_GT(ours["balancedness"].get<double>(), theirs["balancedness"].get<double>());
  EXPECT_NE(automatic.err.find("mean"), std::string::npos);  // the table went to stderr
}

TEST_F(EplbCli, AcceptsARecorderDump) {
  std::string input =
      write("dump.json", R"({"logical_count": [[[1,0,0,0],[0,0,0,9]], [[7,1,1,1],[1,1,1,1]]],
                             "rank": 0, "average_utilization_rate_over_window": 0.5})");
  CliRun run = plan("--input " + input +
                    " --num-physical-experts 6 --num-gpus 2 --algorithm "
                    "deepseek_global");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  json out = json::parse(run.out);
  EXPECT_EQ(out["logical_count"][0], json::parse("[3, 1, 1, 1]"));  // summed: 8, 1, 1, 1
  EXPECT_EQ(out["logical_count"][1], json::parse("[1, 1, 1, 3]"));  // summed: 1, 1, 1, 10
}

TEST_F(EplbCli, BadInputIsOneLineAndNonZeroExit) {
  std::string good = write("good.json", kReadmeInput);
  struct Case {
    std::string args;
    std::string expected;
  };
  std::vector<Case> cases = {
      {"--input " + good + " --num-physical-experts 17 --num-gpus 8", "multiple of the number"},
      {"--input " + good + " --num-physical-experts 8 --num-gpus 8", "smaller than"},
      {"--input " + good + " --num-physical-experts 16 --num-gpus 8 --num-groups 5", "divide"},
      {"--input " + good + " --num-physical-experts 16 --num-gpus 8 --algorithm best",
       "unknown EPLB algorithm"},
      {"--input " + good +
           " --num-physical-experts 16 --num-gpus 8 --num-nodes 8 --num-groups 4"
           " --algorithm deepseek_hierarchical",
       "multiple of the number of nodes"},
      {"--input " + write("neg.json", R"({"logical_count": [[1, -1]]})") +
           " --num-physical-experts 2 --num-gpus 1",
       ">= 0"},
      {"--input " + write("ragged.json", R"({"logical_count": [[1, 2], [1]]})") +
           " --num-physical-experts 2 --num-gpus 1",
       "must be an array of 2"},
      {"--input " + write("bad.json", R"({"logical_count": [[1, 2)") +
           " --num-physical-experts 2 --num-gpus 1",
       "malformed JSON"},
      {"--input " + dir_ + "/missing.json --num-physical-experts 2 --num-gpus 1", "cannot open"},
  };
  for (const Case& c : cases) {
    CliRun run = plan(c.args);
    EXPECT_NE(run.exit_code, 0) << c.args;
    EXPECT_NE(run.err.find(c.expected), std::string::npos) << c.args << "\n" << run.err;
    EXPECT_EQ(run.err.rfind("epserve: error: ", 0), 0u) << run.err;
    EXPECT_EQ(std::count(run.err.begin(), run.err.end(), '\n'), 1) << run.err;
    EXPECT_EQ(run.out, "") << c.args;
  }
}

}  // namespace
