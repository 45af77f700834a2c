#include "kernels/cpu/cpu_features.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "support/run_epserve.h"
#include "support/temp_dir.h"

namespace epserve {
namespace {

CpuFeatures everything() {
  return CpuFeatures{true, true, true, true, true, true};
}

TEST(CpuFeatures, OverrideOnlyTakesAway) {
  const CpuFeatures all = everything();
  EXPECT_EQ(restrict_cpu_features(all, ""), all);
  EXPECT_EQ(restrict_cpu_features(all, "native"), all);
  EXPECT_EQ(restrict_cpu_features(all, "scalar"), CpuFeatures{});
  CpuFeatures avx2;
  avx2.avx2_fma = true;
  EXPECT_EQ(restrict_cpu_features(all, "avx2"), avx2);
  CpuFeatures avx512 = avx2;
  avx512.avx512 = true;
  EXPECT_EQ(restrict_cpu_features(all, "avx512"), avx512);
  CpuFeatures bf16 = avx512;
  bf16.avx512_bf16 = true;
  EXPECT_EQ(restrict_cpu_features(all, "avx512_bf16"), bf16);
  CpuFeatures list = bf16;
  list.avx_vnni = true;
  EXPECT_EQ(restrict_cpu_features(all, " avx_vnni , avx512_bf16"), list);
  EXPECT_EQ(cpu_features_string(list), "avx2 avx_vnni avx512 avx512_bf16");
  EXPECT_EQ(cpu_features_string(CpuFeatures{}), "none");
}

TEST(CpuFeatures, MissingOrUnknownFeatureIsAnError) {
  CpuFeatures avx2_only;
  avx2_only.avx2_fma = true;
  try {
    restrict_cpu_features(avx2_only, "avx512_bf16");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(
        std::string(e.what()).find("asks for avx512_bf16, which this CPU lacks (it has: avx2)"),
        std::string::npos)
        << e.what();
  }
  // A feature's prerequisites must be there too.
  CpuFeatures odd = avx2_only;
  odd.avx512_vnni = true;
  EXPECT_THROW(restrict_cpu_features(odd, "avx512_vnni"), Error);
  EXPECT_THROW(restrict_cpu_features(everything(), "avx512bf16"), Error);
  EXPECT_THROW(restrict_cpu_features(everything(), "avx2,"), Error);
}

TEST(CpuFeatures, ProcessSeesTheDetectedFeaturesRestrictedByTheEnvironment) {
  const char* env = std::getenv("EPSERVE_CPU_FEATURES");
  EXPECT_EQ(cpu_features(), restrict_cpu_features(detect_cpu_features(), env ? env : ""));
  const CpuFeatures hw = detect_cpu_features();
  EXPECT_TRUE(!hw.avx512_bf16 || hw.avx512);
  EXPECT_TRUE(!hw.avx512 || hw.avx2_fma);
}

// epserve refuses a bad value before doing anything, in one line, and takes a good one.
TEST(CpuFeatures, EpserveChecksTheOverrideAtStartup) {
  testing::TempDir dir;
  const std::string make = "make-model --preset tiny --output " + dir.file("model");
  auto bad = testing::run_epserve(make, "EPSERVE_CPU_FEATURES=avx3");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_EQ(bad.output.rfind("epserve: error: EPSERVE_CPU_FEATURES='avx3': unknown feature", 0), 0u)
      << bad.output;
  EXPECT_EQ(std::count(bad.output.begin(), bad.output.end(), '\n'), 1) << bad.output;
  if (!detect_cpu_features().amx) {
    auto missing = testing::run_epserve(make, "EPSERVE_CPU_FEATURES=amx");
    EXPECT_NE(missing.output.find("asks for amx, which this CPU lacks"), std::string::npos)
        << missing.output;
  }
  auto scalar = testing::run_epserve(make, "EPSERVE_CPU_FEATURES=scalar");
  EXPECT_EQ(scalar.output.find("EPSERVE_CPU_FEATURES"), std::string::npos) << scalar.output;
}

// The override reaches the kernels of a real run: bench-one-batch names the matmul path it took.
TEST(CpuFeatures, OverrideChangesTheMatmulPathOfARun) {
  const std::string args =
      "bench-one-batch --model-path " + std::string(EPSERVE_SOURCE_DIR) +
      "/tests/data/models/deepseek_v3_tiny --batch-size 1 --input-len 4 --output-len 2";
  auto avx2 = testing::run_epserve(args, "EPSERVE_CPU_FEATURES=avx2");
  ASSERT_EQ(avx2.exit_code, 0) << avx2.output;
  EXPECT_NE(avx2.output.find("kernels: matmul BF16 weights avx2,"), std::string::npos)
      << avx2.output;
  auto scalar = testing::run_epserve(args, "EPSERVE_CPU_FEATURES=scalar");
  ASSERT_EQ(scalar.exit_code, 0) << scalar.output;
  EXPECT_NE(scalar.output.find("kernels: matmul BF16 weights scalar,"), std::string::npos)
      << scalar.output;
  if (detect_cpu_features().avx512_bf16) {
    auto native = testing::run_epserve(args);
    EXPECT_NE(native.output.find("kernels: matmul BF16 weights avx512-bf16,"), std::string::npos)
        << native.output;
  }
}

}  // namespace
}  // namespace epserve
