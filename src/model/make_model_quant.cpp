#include "model/make_model_quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>

#include "core/error.h"
#include "kernels/cpu/matmul_quant.h"

namespace epserve {
namespace {

constexpr int64_t kFp8Block = 128;
constexpr int64_t kInt4Group = 32;

// The BF16 matrix and, once computed, its quantized parts (shared by the tensors' fills, which
// the writer calls in declaration order: values first).
struct Staged {
  std::vector<uint8_t> values;
  std::vector<uint8_t> scales;
};

void fp8_cast(const std::vector<float>& w, int64_t rows, int64_t cols, Staged& out) {
  const int64_t br = (rows + kFp8Block - 1) / kFp8Block, bc = (cols + kFp8Block - 1) / kFp8Block;
  out.values.resize(static_cast<size_t>(rows * cols));
  out.scales.resize(static_cast<size_t>(br * bc * 4));
  for (int64_t i = 0; i < br; ++i) {
    for (int64_t j = 0; j < bc; ++j) {
      const int64_t r1 = std::min(rows, (i + 1) * kFp8Block),
                    c1 = std::min(cols, (j + 1) * kFp8Block);
      float amax = 0;
      for (int64_t r = i * kFp8Block; r < r1; ++r)
        for (int64_t c = j * kFp8Block; c < c1; ++c)
          amax = std::max(amax, std::fabs(w[r * cols + c]));
      const float s = std::max(amax, 1e-12f) / 448.0f;
      std::memcpy(&out.scales[(i * bc + j) * 4], &s, 4);
      for (int64_t r = i * kFp8Block; r < r1; ++r)
        for (int64_t c = j * kFp8Block; c < c1; ++c)
          out.values[r * cols + c] = f32_to_fp8_e4m3(w[r * cols + c] / s);
    }
  }
}

void int4_pack(const std::vector<float>& w, int64_t rows, int64_t cols, Staged& out) {
  const int64_t groups = cols / kInt4Group, words = cols / 8;
  out.values.assign(static_cast<size_t>(rows * words * 4), 0);
  out.scales.resize(static_cast<size_t>(rows * groups * 2));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      float amax = 0;
      for (int64_t k = 0; k < kInt4Group; ++k)
        amax = std::max(amax, std::fabs(w[r * cols + g * kInt4Group + k]));
      bf16_t sb = f32_to_bf16(amax / 7.5f);
      if (bf16_to_f32(sb) == 0.0f) sb = f32_to_bf16(1e-8f);
      std::memcpy(&out.scales[(r * groups + g) * 2], &sb, 2);
      const float s = bf16_to_f32(sb);
      for (int64_t k = 0; k < kInt4Group; ++k) {
        const int64_t c = g * kInt4Group + k;
        const int q = std::clamp(static_cast<int>(std::nearbyint(w[r * cols + c] / s)), -8, 7);
        uint32_t word;
        std::memcpy(&word, &out.values[(r * words + c / 8) * 4], 4);
        word |= static_cast<uint32_t>(q + 8) << (4 * (c % 8));
        std::memcpy(&out.values[(r * words + c / 8) * 4], &word, 4);
      }
    }
  }
}

}  // namespace

void check_make_model_quantization(const std::string& q) {
  EPS_CHECK(q.empty() || q == "fp8" || q == "int4",
            "--quantization '{}' is not one of fp8 (DeepSeek-V3's block FP8) or int4 "
            "(Kimi-K2-Thinking's compressed-tensors experts)",
            q);
}

nlohmann::json make_model_quant_config(const std::string& q) {
  if (q == "fp8") {
    return {{"quant_method", "fp8"},
            {"fmt", "e4m3"},
            {"activation_scheme", "dynamic"},
            {"weight_block_size", {kFp8Block, kFp8Block}}};
  }
  if (q == "int4") {
    nlohmann::json weights = {{"num_bits", 4},
                              {"type", "int"},
                              {"symmetric", true},
                              {"strategy", "group"},
                              {"group_size", kInt4Group},
                              {"dynamic", false},
                              {"actorder", nullptr},
                              {"observer", "minmax"}};
    return {{"quant_method", "compressed-tensors"},
            {"format", "pack-quantized"},
            {"quantization_status", "compressed"},
            {"config_groups",
             {{"group_0",
               {{"targets", {"Linear"}},
                {"weights", weights},
                {"input_activations", nullptr},
                {"output_activations", nullptr}}}}},
            {"ignore",
             {"lm_head", "re:.*self_attn.*", "re:.*shared_experts.*",
              "re:.*mlp\\.(gate|up|gate_up|down)_proj.*"}}};
  }
  return nullptr;
}

bool make_model_quantizes(const std::string& q, const std::string& name) {
  const bool proj = name.size() > 12 && name.compare(name.size() - 12, 12, "_proj.weight") == 0;
  const bool kv_a = name.find("kv_a_proj_with_mqa.weight") != std::string::npos;
  if (q == "fp8") return proj || kv_a;
  if (q == "int4") return proj && name.find(".mlp.experts.") != std::string::npos;
  return false;
}

void add_quantized_matrix(std::vector<TensorToWrite>& out, const std::string& q,
                          const TensorSpec& spec, std::function<void(bf16_t*)> fill_bf16) {
  const int64_t rows = spec.shape[0], cols = spec.shape[1];
  auto staged = std::make_shared<Staged>();
  const bool fp8 = q == "fp8";
  EPS_CHECK(fp8 || cols % kInt4Group == 0, "{}: {} inputs are not whole groups of {}", spec.name,
            cols, kInt4Group);
  auto make = [staged, fill_bf16, rows, cols, fp8] {
    std::vector<bf16_t> b(static_cast<size_t>(rows * cols));
    fill_bf16(b.data());
    std::vector<float> w(b.size());
    for (size_t i = 0; i < b.size(); ++i) w[i] = bf16_to_f32(b[i]);
    fp8 ? fp8_cast(w, rows, cols, *staged) : int4_pack(w, rows, cols, *staged);
  };
  auto copy_values = [staged, make](void* dst, size_t n) {
    make();
    std::memcpy(dst, staged->values.data(), n);
    staged->values = {};
  };
  auto copy_scales = [staged](void* dst, size_t n) {
    std::memcpy(dst, staged->scales.data(), n);
    staged->scales = {};
  };
  const std::string prefix = spec.name.substr(0, spec.name.size() - 7);  // without ".weight"
  if (fp8) {
    out.push_back({spec.name, DType::F8_E4M3, spec.shape, copy_values});
    out.push_back({spec.name + "_scale_inv",
                   DType::F32,
                   {(rows + kFp8Block - 1) / kFp8Block, (cols + kFp8Block - 1) / kFp8Block},
                   copy_scales});
    return;
  }
  out.push_back({prefix + ".weight_packed", DType::I32, {rows, cols / 8}, copy_values});
  out.push_back({prefix + ".weight_scale", DType::BF16, {rows, cols / kInt4Group}, copy_scales});
  out.push_back(
      {prefix + ".weight_shape", DType::I32, {2}, [rows, cols](void* dst, size_t) {
         const int32_t shape[2] = {static_cast<int32_t>(rows), static_cast<int32_t>(cols)};
         std::memcpy(dst, shape, 8);
       }});
}

}  // namespace epserve
