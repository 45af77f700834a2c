#include "io/quant_config.h"

#include <array>
#include <filesystem>
#include <regex>
#include <string_view>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mapped_file.h"

namespace epserve {
namespace {

// SGLang's QUANTIZATION_METHODS (srt/layers/quantization/__init__.py) that epserve does not run.
constexpr auto kOtherSglangMethods = std::to_array<std::string_view>(
    {"blockwise_int8", "modelopt",  "modelopt_fp8", "modelopt_fp4", "petit_nvfp4", "w8a8_int8",
     "w8a8_fp8",       "awq",       "awq_marlin",   "bitsandbytes", "gguf",        "gptq",
     "gptq_marlin",    "moe_wna16", "qoq",          "w4afp8",       "mxfp4",       "auto-round",
     "fbgemm_fp8",     "marlin",    "quark",        "modelslim"});

const nlohmann::json* find_quant_json(const nlohmann::json& config) {
  for (const char* key : {"quantization_config", "compression_config"}) {
    auto it = config.find(key);
    if (it != config.end() && !it->is_null()) return &*it;
  }
  return nullptr;
}

void parse_fp8(const nlohmann::json& q, const std::string& source, QuantConfig& out) {
  std::string fmt_name = q.value("fmt", "e4m3");
  EPS_CHECK(fmt_name == "e4m3", "{}: quantization_config.fmt '{}' is not supported (only e4m3)",
            source, fmt_name);
  auto block = q.find("weight_block_size");
  EPS_CHECK(block != q.end() && block->is_array() && block->size() == 2 &&
                (*block)[0].is_number_integer() && (*block)[1].is_number_integer() &&
                (*block)[0].get<int>() > 0 && (*block)[1].get<int>() > 0,
            "{}: quant_method fp8 without weight_block_size [rows, cols] (per-tensor FP8 is not "
            "supported; DeepSeek-V3 uses [128, 128])",
            source);
  out.method = QuantMethod::kFp8Block;
  out.block_rows = (*block)[0].get<int>();
  out.block_cols = (*block)[1].get<int>();
  std::string scheme = q.value("activation_scheme", "dynamic");
  EPS_CHECK(scheme == "dynamic",
            "{}: fp8 activation_scheme '{}' is not supported (only dynamic: activations stay fp32)",
            source, scheme);
}

void parse_compressed_tensors(const nlohmann::json& q, const std::string& source,
                              QuantConfig& out) {
  auto groups = q.find("config_groups");
  EPS_CHECK(groups != q.end() && groups->is_object() && groups->size() == 1,
            "{}: compressed-tensors quantization_config needs exactly one entry in config_groups "
            "(found {})",
            source, groups == q.end() ? 0 : groups->size());
  const nlohmann::json& group = groups->begin().value();
  const std::string where = fmt::format("{}: config_groups.{}", source, groups->begin().key());
  std::string format = group.contains("format") && group["format"].is_string()
                           ? group["format"].get<std::string>()
                           : q.value("format", std::string());
  EPS_CHECK(format == "pack-quantized",
            "{}: compressed-tensors format '{}' is not supported (only pack-quantized)", where,
            format);
  auto acts = group.find("input_activations");
  EPS_CHECK(acts == group.end() || acts->is_null(),
            "{}: quantized input activations are not supported (only weight-only W4A16)", where);
  auto w = group.find("weights");
  EPS_CHECK(w != group.end() && w->is_object(), "{}: no 'weights' scheme", where);
  out.num_bits = w->value("num_bits", 0);
  out.symmetric = w->value("symmetric", false);
  std::string type = w->value("type", "int");
  std::string strategy = w->value("strategy", "");
  EPS_CHECK(out.num_bits == 4 && type == "int" && out.symmetric && strategy == "group",
            "{}: weights scheme num_bits {} type {} symmetric {} strategy '{}' is not supported "
            "(only 4-bit symmetric int, strategy group)",
            where, out.num_bits, type, out.symmetric, strategy);
  auto gs = w->find("group_size");
  EPS_CHECK(
      gs != w->end() && gs->is_number_integer() && gs->get<int>() > 0 && gs->get<int>() % 8 == 0,
      "{}: weights group_size must be a positive multiple of 8", where);
  out.group_size = gs->get<int>();
  auto actorder = w->find("actorder");
  EPS_CHECK(actorder == w->end() || actorder->is_null() || *actorder == false,
            "{}: activation reordering (actorder) is not supported", where);
  out.method = QuantMethod::kInt4Pack;
  if (auto ig = q.find("ignore"); ig != q.end() && ig->is_array()) {
    for (const auto& e : *ig) {
      EPS_CHECK(e.is_string(), "{}: quantization_config.ignore holds a non-string", source);
      out.ignore.push_back(e.get<std::string>());
    }
  }
}

}  // namespace

bool QuantConfig::is_ignored(const std::string& layer) const {
  for (const std::string& entry : ignore) {
    if (entry.rfind("re:", 0) == 0) {
      std::regex re(entry.substr(3), std::regex::ECMAScript);
      if (std::regex_search(layer, re, std::regex_constants::match_continuous)) return true;
    } else if (entry == layer) {
      return true;
    }
  }
  return false;
}

std::string QuantConfig::describe() const {
  switch (method) {
    case QuantMethod::kFp8Block:
      return fmt::format("fp8 (e4m3, {}x{} blocks)", block_rows, block_cols);
    case QuantMethod::kInt4Pack:
      return fmt::format("compressed-tensors (int4 pack-quantized, group {}, symmetric)",
                         group_size);
    case QuantMethod::kNone:
      break;
  }
  return "none";
}

QuantConfig parse_quant_config(const nlohmann::json& config, const std::string& source) {
  QuantConfig out;
  const nlohmann::json* q = find_quant_json(config);
  if (q == nullptr) return out;
  EPS_CHECK(q->is_object() && q->contains("quant_method") && (*q)["quant_method"].is_string(),
            "{}: quantization_config has no quant_method", source);
  out.quant_method = (*q)["quant_method"].get<std::string>();
  if (out.quant_method == "fp8") {
    parse_fp8(*q, source, out);
  } else if (out.quant_method == "compressed-tensors") {
    parse_compressed_tensors(*q, source, out);
  } else {
    EPS_THROW(
        "{}: quantization_config.quant_method '{}' is not supported (epserve reads fp8 "
        "block-scaled and compressed-tensors pack-quantized int4 checkpoints)",
        source, out.quant_method);
  }
  return out;
}

QuantConfig load_quant_config(const std::string& model_dir) {
  const std::string path = (std::filesystem::path(model_dir) / "config.json").string();
  if (!std::filesystem::exists(path)) return {};
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(read_text_file(path));
  } catch (const nlohmann::json::exception& e) {
    EPS_THROW("{}: not valid JSON: {}", path, e.what());
  }
  return parse_quant_config(json, path);
}

void resolve_quantization_flag(const QuantConfig& checkpoint, const std::string& flag) {
  if (flag.empty()) return;
  const bool known = flag == "fp8" || flag == "compressed-tensors";
  bool other = false;
  for (std::string_view m : kOtherSglangMethods) other = other || flag == m;
  EPS_CHECK(known || other,
            "--quantization {}: unknown quantization method (epserve runs fp8 and "
            "compressed-tensors checkpoints; omit the flag to use the checkpoint's)",
            flag);
  if (checkpoint.quantized()) {
    EPS_CHECK(flag == checkpoint.quant_method,
              "--quantization {}: the quantization method specified in the model config ({}) "
              "does not match the quantization method specified in the `quantization` argument "
              "({})",
              flag, checkpoint.quant_method, flag);
    return;
  }
  EPS_THROW(
      "--quantization {}: the checkpoint is not quantized, and quantizing it while loading "
      "(SGLang's online {} quantization) is not implemented in this build of epserve; use "
      "`epserve make-model --quantization` for a quantized copy, or omit the flag",
      flag, flag);
}

}  // namespace epserve
