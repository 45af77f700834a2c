// The CPU's vector instruction sets, read once, as every kernel dispatcher sees them.
//
// EPSERVE_CPU_FEATURES can take features away (to run and test the slower paths on a machine
// that has the faster ones), never add one the CPU lacks. Its value is `native` (everything
// the CPU has, the default), `scalar` (no vector paths), or a comma list of feature names, each
// of which brings its prerequisites: `avx2` (AVX2 + FMA), `avx_vnni` (+ avx2), `avx512`
// (F/BW/VL/DQ, + avx2), `avx512_bf16`, `avx512_vnni` and `amx` (each + avx512). Examples:
// `avx2` runs the AVX2 paths on an AVX-512 machine; `avx512` the AVX-512 paths without BF16.
// A name the CPU lacks, or an unknown name, is an error that names the CPU's features.
#pragma once

#include <string>
#include <string_view>

namespace epserve {

struct CpuFeatures {
  bool avx2_fma = false;
  bool avx512 = false;  // AVX-512 F, BW, VL and DQ, with the OS saving zmm and mask registers
  bool avx512_bf16 = false;
  bool avx512_vnni = false;
  bool avx_vnni = false;
  bool amx = false;  // AMX tiles with BF16 and INT8, enabled by the OS

  bool operator==(const CpuFeatures&) const = default;
};

// What the CPU (and OS) support, from cpuid and xgetbv.
CpuFeatures detect_cpu_features();

// `hardware` restricted by an EPSERVE_CPU_FEATURES value (syntax above); throws epserve::Error
// for an unknown name or a feature `hardware` lacks.
CpuFeatures restrict_cpu_features(const CpuFeatures& hardware, std::string_view spec);

// detect_cpu_features() restricted by $EPSERVE_CPU_FEATURES, computed on the first call.
const CpuFeatures& cpu_features();

// "avx2 avx512 avx512_bf16 ..." (or "none").
std::string cpu_features_string(const CpuFeatures& features);

// One line naming the kernel paths cpu_features() selects and the features themselves, for the
// startup log and the benchmarks: "kernels: matmul BF16 avx512-bf16, F32 avx2; ...".
std::string kernel_paths_summary();

}  // namespace epserve
