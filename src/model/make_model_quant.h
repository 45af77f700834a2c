// make-model's quantized formats (`--quantization fp8|int4`): which matrices a format quantizes,
// the config.json quantization_config it declares, and the tensors written in its place, made
// from the BF16 random matrix the same seed would give:
//  - fp8: DeepSeek-V3's, every linear layer but the router gate and lm_head, as DeepSeek's block
//    cast (per 128x128 block s = amax / 448, q = e4m3(w / s), weight_scale_inv = s);
//  - int4: Kimi-K2-Thinking's compressed-tensors W4A16, the routed experts only (per group of 32
//    inputs s = bf16(amax / 7.5), q = clamp(round(w / s), -8, 7), packed lowest nibble first
//    with +8, as compressed-tensors' calculate_qparams / quantize / pack_to_int32).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/safetensors_writer.h"
#include "model/tensor_specs.h"

namespace epserve {

// Throws unless `quantization` is "", "fp8" or "int4".
void check_make_model_quantization(const std::string& quantization);
// The quantization_config for config.json (null for "").
nlohmann::json make_model_quant_config(const std::string& quantization);
bool make_model_quantizes(const std::string& quantization, const std::string& tensor_name);
// Appends the tensors that replace matrix `spec` (its BF16 values come from fill_bf16).
void add_quantized_matrix(std::vector<TensorToWrite>& out, const std::string& quantization,
                          const TensorSpec& spec, std::function<void(bf16_t*)> fill_bf16);

}  // namespace epserve
