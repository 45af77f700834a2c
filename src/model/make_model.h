// Random-weight models in the exact Hugging Face format (config.json + safetensors), for tests
// and benchmarks: `epserve make-model`. Presets give a shape; flags override single fields.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace epserve {

struct MakeModelOptions {
  std::string arch = "deepseek_v3";  // deepseek_v3 | qwen3_moe
  std::string preset = "tiny";       // tiny | small | bench
  std::optional<int> hidden_size, num_layers, num_experts, top_k, vocab_size, moe_intermediate_size,
      intermediate_size, num_heads, first_k_dense_replace;
  uint64_t seed = 0;
  // Scale of the random weights: a matrix [out, in] gets N(0, (init_scale / sqrt(in))^2).
  double init_scale = 1.0;
  // Skews expert popularity through a Zipf-like e_score_correction_bias, so some experts are
  // chosen far more often (0: no skew). DeepSeek-V3 only: Qwen3 has no correction bias.
  double router_skew = 0.0;
  size_t max_shard_bytes = size_t{4} << 30;
  // "" (BF16), "fp8" or "int4": see model/make_model_quant.h.
  std::string quantization;
};

// The config.json the options describe (validated by parsing it as epserve would).
nlohmann::json make_model_config(const MakeModelOptions& options);

// Writes config.json, generation_config.json and the safetensors files into `dir`.
void make_model(const MakeModelOptions& options, const std::string& dir);

}  // namespace epserve
