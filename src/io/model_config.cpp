#include "io/model_config.h"

#include <algorithm>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mapped_file.h"

namespace epserve {
namespace {

using nlohmann::json;

class Fields {
 public:
  Fields(const json& j, const std::string& source) : j_(j), source_(source) {}

  const json& require(const char* key) const {
    auto it = j_.find(key);
    EPS_CHECK(it != j_.end() && !it->is_null(), "{}: missing field '{}'", source_, key);
    return *it;
  }
  int integer(const char* key) const {
    const json& v = require(key);
    EPS_CHECK(v.is_number_integer(), "{}: field '{}' must be an integer, found {}", source_, key,
              v.dump());
    return v.get<int>();
  }
  int integer_or(const char* key, int fallback) const { return has(key) ? integer(key) : fallback; }
  double number(const char* key) const {
    const json& v = require(key);
    EPS_CHECK(v.is_number(), "{}: field '{}' must be a number, found {}", source_, key, v.dump());
    return v.get<double>();
  }
  double number_or(const char* key, double fallback) const {
    return has(key) ? number(key) : fallback;
  }
  bool boolean(const char* key) const {
    const json& v = require(key);
    EPS_CHECK(v.is_boolean(), "{}: field '{}' must be true or false, found {}", source_, key,
              v.dump());
    return v.get<bool>();
  }
  bool boolean_or(const char* key, bool fallback) const {
    return has(key) ? boolean(key) : fallback;
  }
  std::string string_or(const char* key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    const json& v = require(key);
    EPS_CHECK(v.is_string(), "{}: field '{}' must be a string, found {}", source_, key, v.dump());
    return v.get<std::string>();
  }
  bool has(const char* key) const {
    auto it = j_.find(key);
    return it != j_.end() && !it->is_null();
  }

 private:
  const json& j_;
  const std::string& source_;
};

void check_positive(const std::string& source, const char* key, int value) {
  EPS_CHECK(value > 0, "{}: field '{}' must be positive, found {}", source, key, value);
}

// Rotary settings come either as transformers 5's "rope_parameters" (rope_theta inside) or as
// the older "rope_scaling" object beside a top-level "rope_theta", which real checkpoints use.
RopeConfig parse_rope(const Fields& f, const json& j, const std::string& source) {
  RopeConfig rope;
  rope.theta = f.number_or("rope_theta", 10000.0);
  const char* key = "rope_scaling";
  if (auto p = j.find("rope_parameters"); p != j.end() && !p->is_null()) key = "rope_parameters";
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return rope;
  EPS_CHECK(it->is_object(), "{}: '{}' must be an object or null", source, key);
  Fields r(*it, source);
  rope.theta = r.number_or("rope_theta", rope.theta);
  std::string type = r.string_or("rope_type", r.string_or("type", "default"));
  if (auto m = it->find("mrope_section"); m != it->end() && !m->is_null()) {
    EPS_CHECK(m->is_array() && m->size() == 3, "{}: {}.mrope_section must be a list of 3 integers",
              source, key);
    for (const auto& v : *m) {
      EPS_CHECK(v.is_number_integer() && v.get<int>() >= 0,
                "{}: {}.mrope_section entries must be non-negative integers", source, key);
      rope.mrope_section.push_back(v.get<int>());
    }
    rope.mrope_interleaved = r.boolean_or("mrope_interleaved", false);
  }
  if (type == "default") return rope;
  EPS_CHECK(type == "yarn", "{}: {} type '{}' is not supported (supported: default, yarn)", source,
            key, type);
  rope.type = type;
  rope.original_max_position_embeddings = r.integer("original_max_position_embeddings");
  rope.factor = r.has("factor") ? r.number("factor")
                                : static_cast<double>(f.integer("max_position_embeddings")) /
                                      rope.original_max_position_embeddings;
  rope.beta_fast = r.number_or("beta_fast", 32.0);
  rope.beta_slow = r.number_or("beta_slow", 1.0);
  rope.mscale = r.number_or("mscale", 0.0);
  rope.mscale_all_dim = r.number_or("mscale_all_dim", 0.0);
  rope.attention_factor = r.number_or("attention_factor", 0.0);
  rope.truncate = r.boolean_or("truncate", true);
  return rope;
}

// The EOS ids of a config file; an id outside the vocabulary is an error naming the file.
std::vector<int> parse_eos(const json& j, const std::string& source, int vocab_size) {
  std::vector<int> out;
  auto it = j.find("eos_token_id");
  if (it == j.end() || it->is_null()) return out;
  if (it->is_number_integer()) {
    out.push_back(it->get<int>());
  } else {
    EPS_CHECK(it->is_array(), "{}: 'eos_token_id' must be an integer or a list", source);
    for (const auto& v : *it) {
      EPS_CHECK(v.is_number_integer(), "{}: 'eos_token_id' entries must be integers", source);
      out.push_back(v.get<int>());
    }
  }
  for (int id : out) {
    EPS_CHECK(id >= 0 && id < vocab_size,
              "{}: eos_token_id {} is outside the vocabulary (0..{}); fix the file", source, id,
              vocab_size - 1);
  }
  return out;
}

void parse_deepseek_v3(const Fields& f, ModelConfig& c) {
  c.arch = Arch::kDeepseekV3;
  c.intermediate_size = f.integer("intermediate_size");
  c.mla.q_lora_rank = f.has("q_lora_rank") ? f.integer("q_lora_rank") : 0;
  c.mla.kv_lora_rank = f.integer("kv_lora_rank");
  c.mla.qk_nope_head_dim = f.integer("qk_nope_head_dim");
  c.mla.qk_rope_head_dim = f.integer("qk_rope_head_dim");
  c.mla.v_head_dim = f.integer("v_head_dim");
  c.head_dim = c.mla.qk_head_dim();
  check_positive(c.source, "kv_lora_rank", c.mla.kv_lora_rank);
  check_positive(c.source, "qk_rope_head_dim", c.mla.qk_rope_head_dim);
  check_positive(c.source, "v_head_dim", c.mla.v_head_dim);
  EPS_CHECK(c.mla.qk_rope_head_dim % 2 == 0, "{}: 'qk_rope_head_dim' must be even", c.source);
  c.rope.interleave = f.boolean_or("rope_interleave", true);

  MoeConfig& m = c.moe;
  m.num_experts =
      f.has("n_routed_experts") ? f.integer("n_routed_experts") : f.integer("num_local_experts");
  m.top_k = f.integer("num_experts_per_tok");
  m.moe_intermediate_size = f.integer("moe_intermediate_size");
  m.num_shared_experts = f.integer_or("n_shared_experts", 0);
  m.n_group = f.integer_or("n_group", 1);
  m.topk_group = f.integer_or("topk_group", 1);
  m.norm_topk_prob = f.boolean("norm_topk_prob");
  m.routed_scaling_factor = f.number("routed_scaling_factor");
  std::string scoring = f.string_or("scoring_func", "sigmoid");
  EPS_CHECK(scoring == "sigmoid" || scoring == "softmax",
            "{}: scoring_func '{}' is not supported (sigmoid, softmax)", c.source, scoring);
  m.scoring = scoring == "sigmoid" ? ScoringFunc::kSigmoid : ScoringFunc::kSoftmax;
  std::string topk_method = f.string_or("topk_method", "noaux_tc");
  EPS_CHECK(
      topk_method == "noaux_tc" || topk_method == "greedy" || topk_method == "group_limited_greedy",
      "{}: topk_method '{}' is not supported (noaux_tc, greedy, group_limited_greedy)", c.source,
      topk_method);
  m.has_correction_bias = topk_method == "noaux_tc";
  int first_dense = f.integer_or("first_k_dense_replace", 0);
  int freq = f.integer_or("moe_layer_freq", 1);
  check_positive(c.source, "moe_layer_freq", freq);
  c.layer_is_moe.resize(c.num_layers);
  for (int i = 0; i < c.num_layers; ++i) {
    c.layer_is_moe[i] = m.num_experts > 0 && i >= first_dense && i % freq == 0;
  }
}

void parse_qwen3_moe(const Fields& f, const json& j, ModelConfig& c) {
  c.arch = Arch::kQwen3Moe;
  c.intermediate_size = f.integer("intermediate_size");
  c.head_dim = f.has("head_dim") ? f.integer("head_dim") : c.hidden_size / c.num_heads;
  EPS_CHECK(!f.boolean_or("attention_bias", false),
            "{}: attention_bias=true is not supported for Qwen3MoeForCausalLM", c.source);
  EPS_CHECK(!f.boolean_or("use_sliding_window", false),
            "{}: use_sliding_window=true is not supported", c.source);
  MoeConfig& m = c.moe;
  // Qwen's checkpoints say num_experts; transformers 5 writes its alias num_local_experts.
  m.num_experts = f.has("num_experts") ? f.integer("num_experts") : f.integer("num_local_experts");
  m.top_k = f.integer("num_experts_per_tok");
  m.moe_intermediate_size = f.integer("moe_intermediate_size");
  m.norm_topk_prob = f.boolean("norm_topk_prob");
  m.scoring = ScoringFunc::kSoftmax;
  int step = f.integer_or("decoder_sparse_step", 1);
  check_positive(c.source, "decoder_sparse_step", step);
  std::vector<int> mlp_only;
  if (auto it = j.find("mlp_only_layers"); it != j.end() && !it->is_null()) {
    EPS_CHECK(it->is_array(), "{}: 'mlp_only_layers' must be a list", c.source);
    for (const auto& v : *it) mlp_only.push_back(v.get<int>());
  }
  c.layer_is_moe.resize(c.num_layers);
  for (int i = 0; i < c.num_layers; ++i) {
    bool dense = std::find(mlp_only.begin(), mlp_only.end(), i) != mlp_only.end();
    c.layer_is_moe[i] = !dense && m.num_experts > 0 && (i + 1) % step == 0;
  }
}

std::vector<int> int_list(const json& j, const char* key, const std::string& source) {
  std::vector<int> out;
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return out;
  EPS_CHECK(it->is_array(), "{}: '{}' must be a list of integers", source, key);
  for (const auto& v : *it) {
    EPS_CHECK(v.is_number_integer(), "{}: '{}' must be a list of integers", source, key);
    out.push_back(v.get<int>());
  }
  return out;
}

// Qwen3VLMoeForConditionalGeneration: text_config is a Qwen3-MoE language model (the router
// always renormalises its top-k, as transformers' Qwen3VLMoeTextTopKRouter does), vision_config
// the vision tower; the vision token ids sit at the top level.
ModelConfig parse_qwen3_vl_moe(const json& j, const std::string& source) {
  Fields top(j, source);
  const json& text = top.require("text_config");
  const json& vision = top.require("vision_config");
  EPS_CHECK(text.is_object() && vision.is_object(),
            "{}: 'text_config' and 'vision_config' must be objects", source);
  json lm = text;
  lm["architectures"] = json::array({"Qwen3MoeForCausalLM"});
  if (!lm.contains("norm_topk_prob")) lm["norm_topk_prob"] = true;
  if (!lm.contains("tie_word_embeddings") && j.contains("tie_word_embeddings")) {
    lm["tie_word_embeddings"] = j["tie_word_embeddings"];
  }
  ModelConfig c = parse_model_config(lm, source + " (text_config)");
  c.source = source;
  c.arch = Arch::kQwen3VlMoe;
  c.architecture = "Qwen3VLMoeForConditionalGeneration";
  c.model_type = top.string_or("model_type", "qwen3_vl_moe");
  const RopeConfig& rope = c.rope;
  EPS_CHECK(rope.mrope_section.size() == 3 && rope.mrope_interleaved,
            "{}: text_config.rope_scaling must have mrope_section (3 integers) and "
            "mrope_interleaved true (Qwen3-VL's interleaved MRoPE)",
            source);
  EPS_CHECK(rope.mrope_section[0] + rope.mrope_section[1] + rope.mrope_section[2] == c.head_dim / 2,
            "{}: mrope_section {}+{}+{} must add up to head_dim / 2 = {}", source,
            rope.mrope_section[0], rope.mrope_section[1], rope.mrope_section[2], c.head_dim / 2);
  Fields v(vision, source + " (vision_config)");
  VisionConfig& vc = c.vision;
  vc.depth = v.integer("depth");
  vc.hidden_size = v.integer("hidden_size");
  vc.intermediate_size = v.integer("intermediate_size");
  vc.num_heads = v.integer("num_heads");
  vc.in_channels = v.integer_or("in_channels", 3);
  vc.patch_size = v.integer("patch_size");
  vc.temporal_patch_size = v.integer_or("temporal_patch_size", 2);
  vc.spatial_merge_size = v.integer_or("spatial_merge_size", 2);
  vc.out_hidden_size = v.integer("out_hidden_size");
  vc.num_position_embeddings = v.integer("num_position_embeddings");
  vc.rope_theta = 10000.0;
  if (auto p = vision.find("rope_parameters"); p != vision.end() && p->is_object()) {
    vc.rope_theta = Fields(*p, source).number_or("rope_theta", vc.rope_theta);
  }
  vc.deepstack_visual_indexes = int_list(vision, "deepstack_visual_indexes", source);
  std::string act = v.string_or("hidden_act", "gelu_pytorch_tanh");
  EPS_CHECK(act == "gelu_pytorch_tanh",
            "{}: vision_config.hidden_act '{}' is not supported (gelu_pytorch_tanh)", source, act);
  check_positive(source, "vision_config.depth", vc.depth);
  check_positive(source, "vision_config.num_heads", vc.num_heads);
  EPS_CHECK(vc.hidden_size % vc.num_heads == 0 && (vc.hidden_size / vc.num_heads) % 4 == 0,
            "{}: vision hidden_size {} must split into heads of a multiple of 4", source,
            vc.hidden_size);
  EPS_CHECK(vc.out_hidden_size == c.hidden_size,
            "{}: vision_config.out_hidden_size {} must equal the language model's hidden_size {}",
            source, vc.out_hidden_size, c.hidden_size);
  int side = 0;
  while ((side + 1) * (side + 1) <= vc.num_position_embeddings) ++side;
  EPS_CHECK(side * side == vc.num_position_embeddings,
            "{}: vision_config.num_position_embeddings {} is not a square", source,
            vc.num_position_embeddings);
  for (int idx : vc.deepstack_visual_indexes) {
    EPS_CHECK(idx >= 0 && idx < vc.depth, "{}: deepstack_visual_indexes entry {} is not a block",
              source, idx);
  }
  EPS_CHECK(static_cast<int>(vc.deepstack_visual_indexes.size()) <= c.num_layers,
            "{}: more DeepStack features than language-model layers", source);
  vc.image_token_id = top.integer("image_token_id");
  vc.video_token_id = top.integer_or("video_token_id", -1);
  vc.vision_start_token_id = top.integer("vision_start_token_id");
  vc.vision_end_token_id = top.integer_or("vision_end_token_id", -1);
  for (int id : {vc.image_token_id, vc.vision_start_token_id}) {
    EPS_CHECK(id >= 0 && id < c.vocab_size, "{}: vision token id {} is outside the vocabulary",
              source, id);
  }
  return c;
}

}  // namespace

int ModelConfig::num_moe_layers() const {
  int n = 0;
  for (bool b : layer_is_moe) n += b ? 1 : 0;
  return n;
}

int ModelConfig::first_moe_layer() const {
  for (int i = 0; i < num_layers; ++i) {
    if (layer_is_moe[i]) return i;
  }
  return num_layers;
}

ModelConfig parse_model_config(const json& j, const std::string& source) {
  EPS_CHECK(j.is_object(), "{}: config is not a JSON object", source);
  ModelConfig c;
  c.source = source;
  Fields f(j, source);
  const json& archs = f.require("architectures");
  EPS_CHECK(archs.is_array() && !archs.empty() && archs[0].is_string(),
            "{}: 'architectures' must be a non-empty list of names", source);
  c.architecture = archs[0].get<std::string>();
  if (c.architecture == "Qwen3VLMoeForConditionalGeneration") return parse_qwen3_vl_moe(j, source);
  c.model_type = f.string_or("model_type", "");
  c.vocab_size = f.integer("vocab_size");
  c.hidden_size = f.integer("hidden_size");
  c.num_layers = f.integer("num_hidden_layers");
  c.num_heads = f.integer("num_attention_heads");
  c.num_kv_heads = f.integer_or("num_key_value_heads", c.num_heads);
  c.rms_norm_eps = f.number("rms_norm_eps");
  c.max_position_embeddings = f.integer("max_position_embeddings");
  c.tie_word_embeddings = f.boolean_or("tie_word_embeddings", false);
  c.bos_token_id = f.integer_or("bos_token_id", -1);
  c.eos_token_ids = parse_eos(j, source, c.vocab_size);
  std::string act = f.string_or("hidden_act", "silu");
  EPS_CHECK(act == "silu", "{}: hidden_act '{}' is not supported (silu)", source, act);
  check_positive(source, "vocab_size", c.vocab_size);
  check_positive(source, "hidden_size", c.hidden_size);
  check_positive(source, "num_hidden_layers", c.num_layers);
  check_positive(source, "num_attention_heads", c.num_heads);
  check_positive(source, "num_key_value_heads", c.num_kv_heads);
  c.rope = parse_rope(f, j, source);
  c.quant = parse_quant_config(j, source);

  if (c.architecture == "DeepseekV3ForCausalLM") {
    parse_deepseek_v3(f, c);
  } else if (c.architecture == "Qwen3MoeForCausalLM") {
    parse_qwen3_moe(f, j, c);
    EPS_CHECK(c.num_heads % c.num_kv_heads == 0,
              "{}: num_attention_heads {} is not a multiple of num_key_value_heads {}", source,
              c.num_heads, c.num_kv_heads);
  } else {
    EPS_THROW(
        "{}: architecture '{}' is not supported (DeepseekV3ForCausalLM, "
        "Qwen3MoeForCausalLM, Qwen3VLMoeForConditionalGeneration)",
        source, c.architecture);
  }
  const MoeConfig& m = c.moe;
  if (m.num_experts > 0) {
    check_positive(source, "num_experts_per_tok", m.top_k);
    check_positive(source, "moe_intermediate_size", m.moe_intermediate_size);
    EPS_CHECK(m.top_k <= m.num_experts, "{}: num_experts_per_tok {} exceeds the {} experts", source,
              m.top_k, m.num_experts);
    EPS_CHECK(m.n_group > 0 && m.num_experts % m.n_group == 0,
              "{}: n_group {} must divide the {} routed experts", source, m.n_group, m.num_experts);
    EPS_CHECK(m.topk_group > 0 && m.topk_group <= m.n_group,
              "{}: topk_group {} must be between 1 and n_group {}", source, m.topk_group,
              m.n_group);
  }
  return c;
}

void check_model_dir(const std::string& model_dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::file_status st = fs::status(model_dir, ec);
  EPS_CHECK(fs::exists(st), "{}: model directory does not exist (--model-path)", model_dir);
  if (fs::is_directory(st)) return;
  fs::path parent = fs::absolute(model_dir, ec).parent_path();
  bool in_model_dir = fs::exists(parent / "config.json", ec);
  EPS_THROW(
      "{}: is a file, not a directory; --model-path takes a model directory (the one with "
      "config.json and the *.safetensors files){}",
      model_dir, in_model_dir ? fmt::format(", such as {}", parent.string()) : "");
}

ModelConfig load_model_config(const std::string& model_dir) {
  check_model_dir(model_dir);
  std::string path = (std::filesystem::path(model_dir) / "config.json").string();
  EPS_CHECK(std::filesystem::exists(path), "{}: config.json not found", path);
  std::string text = read_text_file(path);
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    EPS_THROW("{}: not valid JSON (or not UTF-8): {}", path, e.what());
  }
  ModelConfig config = parse_model_config(j, path);
  add_generation_eos(config, model_dir);
  return config;
}

void add_generation_eos(ModelConfig& config, const std::string& model_dir) {
  std::filesystem::path path = std::filesystem::path(model_dir) / "generation_config.json";
  if (!std::filesystem::exists(path)) return;
  // Like transformers (and so SGLang), a generation config that is not valid JSON is ignored.
  json j = json::parse(read_text_file(path.string()), nullptr, false);
  if (!j.is_object()) return;
  for (int id : parse_eos(j, path.string(), config.vocab_size)) {
    auto& ids = config.eos_token_ids;
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  }
}

}  // namespace epserve
