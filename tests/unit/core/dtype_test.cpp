#include "core/dtype.h"

#include <gtest/gtest.h>

#include <cmath>

namespace epserve {
namespace {

TEST(DType, Bf16RoundTripIsExactForBf16Values) {
  for (uint32_t bits = 0; bits < 0x10000; bits += 7) {
    bf16_t v = static_cast<bf16_t>(bits);
    float f = bf16_to_f32(v);
    if (std::isnan(f)) continue;
    EXPECT_EQ(f32_to_bf16(f), v) << bits;
  }
}

TEST(DType, Bf16RoundsToNearestEven) {
  // 1 + 2^-8 lies exactly between two bf16 values; ties go to the even mantissa (1.0).
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + 1.0f / 256)), 1.0f);
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + 3.0f / 256)), 1.0f + 4.0f / 256);
}

TEST(DType, F16RoundTripIsExactForF16Values) {
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    f16_t v = static_cast<f16_t>(bits);
    float f = f16_to_f32(v);
    if (std::isnan(f)) continue;
    EXPECT_EQ(f32_to_f16(f), v) << bits;
  }
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(f16_to_f32(0xc000), -2.0f);
}

TEST(DType, NamesRoundTrip) {
  for (const char* name : {"F32", "F16", "BF16", "F8_E4M3", "I64", "I32", "U8", "BOOL"}) {
    DType d;
    ASSERT_TRUE(dtype_from_name(name, &d));
    EXPECT_EQ(dtype_name(d), name);
  }
  DType d;
  EXPECT_FALSE(dtype_from_name("Q4", &d));
}

}  // namespace
}  // namespace epserve
