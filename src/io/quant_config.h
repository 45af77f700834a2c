// The checkpoint's weight quantization, from config.json's `quantization_config` (or the older
// `compression_config`), read as SGLang reads it:
//  - quant_method "fp8" with weight_block_size [rows, cols]: DeepSeek-V3's block-scaled FP8
//    (`*.weight` float8_e4m3fn + `*.weight_scale_inv` fp32 per block);
//  - quant_method "compressed-tensors", format "pack-quantized", weights num_bits 4, integer,
//    strategy group: Kimi-K2-Thinking's W4A16 (`*.weight_packed` int32, `*.weight_scale`,
//    `*.weight_shape`); the `ignore` list names the layers left unquantized.
// Other methods and schemes are errors that name them. resolve_quantization_flag applies
// SGLang's `--quantization` rule on top.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace epserve {

enum class QuantMethod { kNone, kFp8Block, kInt4Pack };

struct QuantConfig {
  QuantMethod method = QuantMethod::kNone;
  std::string quant_method;  // as config.json spells it ("fp8", "compressed-tensors"), or ""
  // kFp8Block: weight_block_size.
  int block_rows = 128;
  int block_cols = 128;
  // kInt4Pack: the weights' scheme.
  int num_bits = 4;
  int group_size = 32;
  bool symmetric = true;
  std::vector<std::string> ignore;  // layer names, or "re:" + a regular expression

  bool quantized() const { return method != QuantMethod::kNone; }
  // True when `layer` (a module name such as "model.layers.3.self_attn.o_proj") is listed in
  // `ignore` (a "re:" entry matches from the start of the name, as Python's re.match).
  bool is_ignored(const std::string& layer) const;
  // "fp8 (e4m3, 128x128 blocks)", "compressed-tensors (int4, group 32, symmetric)" or "none".
  std::string describe() const;
};

// `config` is the whole config.json; `source` names it in errors.
QuantConfig parse_quant_config(const nlohmann::json& config, const std::string& source);
// config.json of a model directory (no quantization when it has none).
QuantConfig load_quant_config(const std::string& model_dir);

// SGLang's `--quantization` against the checkpoint: empty means the checkpoint's own method; the
// checkpoint's method itself is accepted; anything else is refused with one line saying why
// (a different method than the checkpoint's, online quantization of an unquantized checkpoint,
// or a method epserve does not implement).
void resolve_quantization_flag(const QuantConfig& checkpoint, const std::string& flag);

}  // namespace epserve
