#include "kernels/cpu/cpu_features.h"

#include <cpuid.h>

#include <cstdint>
#include <cstdlib>

#include "core/error.h"

namespace epserve {
namespace {

uint64_t read_xcr0() {
  uint32_t lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

bool bit(uint32_t reg, int b) {
  return (reg >> b) & 1u;
}

struct FeatureName {
  const char* name;
  bool CpuFeatures::*field;
  const char* prerequisite;  // another name it brings, or nullptr
};

constexpr FeatureName kNames[] = {
    {"avx2", &CpuFeatures::avx2_fma, nullptr},
    {"avx_vnni", &CpuFeatures::avx_vnni, "avx2"},
    {"avx512", &CpuFeatures::avx512, "avx2"},
    {"avx512_bf16", &CpuFeatures::avx512_bf16, "avx512"},
    {"avx512_vnni", &CpuFeatures::avx512_vnni, "avx512"},
    {"amx", &CpuFeatures::amx, "avx512"},
};

const FeatureName* find_name(std::string_view name) {
  for (const FeatureName& f : kNames) {
    if (name == f.name) return &f;
  }
  return nullptr;
}

std::string trim(std::string_view s) {
  size_t b = s.find_first_not_of(" \t"), e = s.find_last_not_of(" \t");
  return b == std::string_view::npos ? std::string() : std::string(s.substr(b, e - b + 1));
}

}  // namespace

CpuFeatures detect_cpu_features() {
  CpuFeatures f;
  uint32_t a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  // F16C comes with every AVX2 CPU but a VM can hide it; the FP8 decoders use vcvtph2ps.
  const bool osxsave = bit(c, 27), fma = bit(c, 12) && bit(c, 29);
  if (!osxsave) return f;
  const uint64_t xcr0 = read_xcr0();
  const bool ymm_state = (xcr0 & 0x6) == 0x6;           // SSE and AVX state
  const bool zmm_state = (xcr0 & 0xe6) == 0xe6;         // + opmask, ZMM_Hi256, Hi16_ZMM
  const bool tile_state = (xcr0 & 0x60000) == 0x60000;  // XTILECFG and XTILEDATA
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
  const uint32_t b7 = b, c7 = c, d7 = d;
  uint32_t a71 = 0;
  if (__get_cpuid_count(7, 1, &a, &b, &c, &d)) a71 = a;
  f.avx2_fma = ymm_state && fma && bit(b7, 5);
  f.avx_vnni = f.avx2_fma && bit(a71, 4);
  f.avx512 = f.avx2_fma && zmm_state && bit(b7, 16) && bit(b7, 17) && bit(b7, 30) && bit(b7, 31);
  f.avx512_bf16 = f.avx512 && bit(a71, 5);
  f.avx512_vnni = f.avx512 && bit(c7, 11);
  // AMX-BF16 (edx bit 22), AMX-TILE (24), AMX-INT8 (25). Linux also needs the process to ask
  // for the tile state (arch_prctl ARCH_REQ_XCOMP_PERM) before using it; no path uses AMX yet.
  f.amx = f.avx512 && tile_state && bit(d7, 22) && bit(d7, 24) && bit(d7, 25);
  return f;
}

CpuFeatures restrict_cpu_features(const CpuFeatures& hardware, std::string_view spec) {
  const std::string value = trim(spec);
  if (value.empty() || value == "native") return hardware;
  CpuFeatures out;
  if (value == "scalar") return out;
  size_t pos = 0;
  while (pos <= value.size()) {
    size_t comma = value.find(',', pos);
    if (comma == std::string::npos) comma = value.size();
    std::string name = trim(std::string_view(value).substr(pos, comma - pos));
    pos = comma + 1;
    const FeatureName* f = find_name(name);
    EPS_CHECK(
        f != nullptr,
        "EPSERVE_CPU_FEATURES='{}': unknown feature '{}'; use native, scalar, or a comma list "
        "of avx2, avx_vnni, avx512, avx512_bf16, avx512_vnni, amx",
        value, name);
    for (; f != nullptr; f = f->prerequisite ? find_name(f->prerequisite) : nullptr) {
      EPS_CHECK(hardware.*(f->field),
                "EPSERVE_CPU_FEATURES='{}' asks for {}, which this CPU lacks (it has: {})", value,
                f->name, cpu_features_string(hardware));
      out.*(f->field) = true;
    }
  }
  return out;
}

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = [] {
    const char* spec = std::getenv("EPSERVE_CPU_FEATURES");
    return restrict_cpu_features(detect_cpu_features(), spec ? spec : "");
  }();
  return features;
}

std::string cpu_features_string(const CpuFeatures& features) {
  std::string out;
  for (const FeatureName& f : kNames) {
    if (!(features.*(f.field))) continue;
    if (!out.empty()) out += ' ';
    out += f.name;
  }
  return out.empty() ? "none" : out;
}

std::string kernel_paths_summary() {
  const CpuFeatures& f = cpu_features();
  const char* vector = f.avx2_fma ? "avx2" : "scalar";
  const char* env = std::getenv("EPSERVE_CPU_FEATURES");
  return std::string("kernels: matmul BF16 weights ") + (f.avx512_bf16 ? "avx512-bf16" : vector) +
         ", F32 weights " + vector + ", FP8 weights " +
         (f.avx512_bf16 ? "fp8-bf16-avx512"
          : f.avx512    ? "fp32-avx512"
                        : vector) +
         ", INT4 weights " +
         (f.avx512_vnni ? "int4-a8-avx512-vnni"
          : f.avx_vnni  ? "int4-a8-avx-vnni"
          : f.avx512    ? "fp32-avx512"
                        : vector) +
         "; attention and elementwise " + vector + "; untransposed F32 " +
         (f.avx512 ? "avx512" : vector) + "; CPU features used: " + cpu_features_string(f) +
         " (EPSERVE_CPU_FEATURES=" + (env ? env : "native") +
         ", CPU has: " + cpu_features_string(detect_cpu_features()) + ")";
}

}  // namespace epserve
