// config.json of a Hugging Face model directory, parsed into one typed struct for the
// architectures epserve runs: DeepseekV3ForCausalLM (DeepSeek-V3/R1, Kimi-K2),
// Qwen3MoeForCausalLM and Qwen3VLMoeForConditionalGeneration (its text_config fills the language
// model's fields, its vision_config VisionConfig). Unknown architectures and missing fields are
// errors naming them.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "io/quant_config.h"

namespace epserve {

enum class Arch { kDeepseekV3, kQwen3Moe, kQwen3VlMoe };

struct RopeConfig {
  double theta = 10000.0;
  std::string type = "default";  // "default" or "yarn"
  double factor = 1.0;
  int original_max_position_embeddings = 0;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double mscale = 0.0;            // 0: absent
  double mscale_all_dim = 0.0;    // 0: absent
  double attention_factor = 0.0;  // 0: derived from factor and the mscales
  bool truncate = true;
  // DeepSeek-V3 stores rotary dims interleaved (x0, y0, x1, y1, ...); Qwen3 uses halves.
  bool interleave = false;
  // Qwen3-VL's multimodal rotary (rope_scaling.mrope_section): the rotary frequencies split
  // into t/h/w parts; empty for 1-D rotary. Interleaved: frequency i takes h when i % 3 == 1
  // and i < 3 * section[1], w when i % 3 == 2 and i < 3 * section[2], else t.
  std::vector<int> mrope_section;
  bool mrope_interleaved = false;
};

// Qwen3-VL's vision tower (vision_config) and the token ids that place images in a prompt.
struct VisionConfig {
  int depth = 0;
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_heads = 0;
  int in_channels = 3;
  int patch_size = 16;
  int temporal_patch_size = 2;
  int spatial_merge_size = 2;
  int out_hidden_size = 0;
  int num_position_embeddings = 0;
  double rope_theta = 10000.0;
  std::vector<int> deepstack_visual_indexes;  // vision blocks feeding language layers 0, 1, ...
  int image_token_id = -1;
  int video_token_id = -1;
  int vision_start_token_id = -1;
  int vision_end_token_id = -1;
  // Floats per image token out of the vision tower: the merger's row, then one per DeepStack
  // feature.
  int64_t embed_width() const {
    return static_cast<int64_t>(out_hidden_size) *
           (1 + static_cast<int64_t>(deepstack_visual_indexes.size()));
  }
  // Floats in one row of pixel values: channels * temporal_patch * patch * patch.
  int64_t patch_dim() const {
    return static_cast<int64_t>(in_channels) * temporal_patch_size * patch_size * patch_size;
  }
};

struct MlaConfig {
  int q_lora_rank = 0;  // 0: q_proj directly from hidden (config value null)
  int kv_lora_rank = 0;
  int qk_nope_head_dim = 0;
  int qk_rope_head_dim = 0;
  int v_head_dim = 0;
  int qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
};

enum class ScoringFunc { kSoftmax, kSigmoid };

struct MoeConfig {
  int num_experts = 0;  // routed experts
  int top_k = 0;
  int moe_intermediate_size = 0;
  int num_shared_experts = 0;
  int n_group = 1;
  int topk_group = 1;
  ScoringFunc scoring = ScoringFunc::kSoftmax;
  bool norm_topk_prob = false;
  double routed_scaling_factor = 1.0;
  bool has_correction_bias = false;  // DeepSeek's noaux_tc e_score_correction_bias
};

struct ModelConfig {
  Arch arch = Arch::kDeepseekV3;
  std::string architecture;  // the HF class name
  std::string model_type;
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;  // dense MLP layers
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;  // GQA head size; for MLA the q/k head size (nope + rope)
  double rms_norm_eps = 1e-6;
  int max_position_embeddings = 0;
  bool tie_word_embeddings = false;
  int bos_token_id = -1;
  std::vector<int> eos_token_ids;
  RopeConfig rope;
  MlaConfig mla;  // DeepSeek-V3 only
  MoeConfig moe;
  VisionConfig vision;             // Qwen3-VL only (depth 0 otherwise)
  QuantConfig quant;               // quantization_config (none for BF16 checkpoints)
  std::vector<bool> layer_is_moe;  // per layer: routed experts (true) or a dense MLP (false)
  std::string source;              // the config.json path, for messages

  bool is_mla() const { return arch == Arch::kDeepseekV3; }
  bool has_vision() const { return vision.depth > 0; }
  int num_moe_layers() const;
  int first_moe_layer() const;
};

ModelConfig parse_model_config(const nlohmann::json& json, const std::string& source);
// config.json of `model_dir`; eos_token_ids also gets the ids that generation_config.json lists
// (SGLang stops on both, as transformers' generate does).
ModelConfig load_model_config(const std::string& model_dir);
// Adds generation_config.json's eos_token_id (an id or a list) to config.eos_token_ids.
void add_generation_eos(ModelConfig& config, const std::string& model_dir);
// Throws unless model_dir is a directory, saying what it is instead (missing, or a file).
void check_model_dir(const std::string& model_dir);

}  // namespace epserve
