#include "kernels/cpu/rope.h"

#include <gtest/gtest.h>

#include <cmath>
#include <complex>

namespace epserve {
namespace {

// Rotating pair j by angle pos * inv_freq[j] is multiplying the complex number (a + ib) by
// e^{i angle}; checked here against std::complex in double.
TEST(Rope, RotateHalfIsAComplexRotation) {
  RopeParams config;
  config.theta = 10000.0;
  RopeTable table = make_rope_table(config, 8);
  float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  float y[8];
  std::copy(x, x + 8, y);
  apply_rope(table, 7, y, 1, 8);
  for (int j = 0; j < 4; ++j) {
    double freq = 1.0 / std::pow(10000.0, 2.0 * j / 8);
    std::complex<double> z(x[j], x[j + 4]);
    z *= std::polar(1.0, 7 * freq);
    EXPECT_NEAR(y[j], z.real(), 1e-5);
    EXPECT_NEAR(y[j + 4], z.imag(), 1e-5);
  }
}

TEST(Rope, InterleavedRotatesAdjacentPairsAndWritesHalves) {
  RopeParams config;
  config.interleave = true;
  RopeTable table = make_rope_table(config, 4);
  float x[4] = {1, 2, 3, 4};
  float y[4] = {1, 2, 3, 4};
  apply_rope(table, 3, y, 1, 4);
  for (int j = 0; j < 2; ++j) {
    double freq = 1.0 / std::pow(10000.0, 2.0 * j / 4);
    std::complex<double> z(x[2 * j], x[2 * j + 1]);
    z *= std::polar(1.0, 3 * freq);
    EXPECT_NEAR(y[j], z.real(), 1e-5);
    EXPECT_NEAR(y[j + 2], z.imag(), 1e-5);
  }
}

TEST(Rope, YarnMatchesTransformersOnTheTinyFixture) {
  // tests/data/models/deepseek_v3_tiny: factor 4, original 1024, mscale 1.0,
  // mscale_all_dim 0.8, rotary dim 16. tools/reference/README.md records transformers' values:
  // correction range low 1, high 5, attention_factor 1.02496, softmax scale 0.218161.
  RopeParams config;
  config.yarn = true;
  config.factor = 4.0;
  config.original_max_position_embeddings = 1024;
  config.mscale = 1.0;
  config.mscale_all_dim = 0.8;
  RopeTable table = make_rope_table(config, 16);
  EXPECT_NEAR(table.attention_factor, 1.02496, 1e-5);
  double scale = std::pow(32.0, -0.5) * yarn_softmax_scale_multiplier(config);
  EXPECT_NEAR(scale, 0.218161, 1e-6);
  // Below `low` the frequencies are untouched, above `high` fully interpolated by the factor.
  EXPECT_FLOAT_EQ(table.inv_freq[0], 1.0f);
  double base7 = 1.0 / std::pow(10000.0, 14.0 / 16);
  EXPECT_NEAR(table.inv_freq[7], base7 / 4.0, 1e-9);
}

}  // namespace
}  // namespace epserve
