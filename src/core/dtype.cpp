#include "core/dtype.h"

#include <array>
#include <cmath>

namespace epserve {
namespace {

struct DTypeInfo {
  DType dtype;
  std::string_view name;
  size_t size;
};

constexpr std::array<DTypeInfo, 11> kDTypes = {{
    {DType::F32, "F32", 4},
    {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2},
    {DType::F8_E4M3, "F8_E4M3", 1},
    {DType::I64, "I64", 8},
    {DType::I32, "I32", 4},
    {DType::I16, "I16", 2},
    {DType::I8, "I8", 1},
    {DType::U8, "U8", 1},
    {DType::BOOL, "BOOL", 1},
    {DType::F64, "F64", 8},
}};

}  // namespace

size_t dtype_size(DType dtype) {
  return kDTypes[static_cast<size_t>(dtype)].size;
}

std::string_view dtype_name(DType dtype) {
  return kDTypes[static_cast<size_t>(dtype)].name;
}

bool dtype_from_name(std::string_view name, DType* out) {
  for (const auto& info : kDTypes) {
    if (info.name == name) {
      *out = info.dtype;
      return true;
    }
  }
  return false;
}

float f16_to_f32(f16_t v) {
  uint32_t sign = (static_cast<uint32_t>(v) & 0x8000u) << 16;
  uint32_t exponent = (v >> 10) & 0x1f;
  uint32_t mantissa = v & 0x3ff;
  uint32_t bits;
  if (exponent == 0) {
    if (mantissa == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      int shift = 0;
      while ((mantissa & 0x400) == 0) {
        mantissa <<= 1;
        ++shift;
      }
      mantissa &= 0x3ff;
      bits = sign | (static_cast<uint32_t>(127 - 15 - shift + 1) << 23) | (mantissa << 13);
    }
  } else if (exponent == 31) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else {
    bits = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
  }
  float out;
  std::memcpy(&out, &bits, sizeof(out));
  return out;
}

f16_t f32_to_f16(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof(bits));
  uint32_t sign = (bits >> 16) & 0x8000u;
  if (std::isnan(v)) return static_cast<f16_t>(sign | 0x7e00u);
  float a = std::fabs(v);
  if (a >= 65520.0f) return static_cast<f16_t>(sign | 0x7c00u);
  if (a < 6.103515625e-05f) {  // subnormal or zero: scale so that rint does the rounding
    uint32_t m = static_cast<uint32_t>(std::nearbyint(a * 16777216.0f));  // a / 2^-24
    return static_cast<f16_t>(sign | m);
  }
  uint32_t abits = bits & 0x7fffffffu;
  uint32_t rounded = abits + 0xfffu + ((abits >> 13) & 1u);
  uint32_t exponent = (rounded >> 23) - 127 + 15;
  uint32_t mantissa = (rounded >> 13) & 0x3ffu;
  return static_cast<f16_t>(sign | (exponent << 10) | mantissa);
}

}  // namespace epserve
