#include "model/make_model.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>

#include "core/error.h"
#include "core/splitmix.h"
#include "core/thread_pool.h"
#include "io/model_config.h"
#include "io/safetensors_writer.h"
#include "model/make_model_quant.h"
#include "model/tensor_specs.h"
#include "tokenizer/family_files.h"

namespace epserve {
namespace {

using nlohmann::json;

struct Preset {
  int hidden, layers, heads, kv_heads, head_dim, inter, moe_inter, experts, top_k, n_group,
      topk_group, first_dense, vocab, q_lora, kv_lora, nope, rope, v;
};

Preset preset_for(const std::string& arch, const std::string& name) {
  bool ds = arch == "deepseek_v3";
  if (name == "tiny") {
    return ds ? Preset{64, 3, 4, 4, 0, 128, 32, 16, 4, 4, 2, 1, 1024, 32, 32, 16, 8, 16}
              : Preset{64, 3, 4, 2, 16, 128, 32, 16, 4, 1, 1, 0, 1024, 0, 0, 0, 0, 0};
  }
  if (name == "small") {
    return ds ? Preset{256, 4, 8, 8, 0, 768, 128, 32, 4, 4, 2, 1, 1024, 128, 64, 32, 16, 32}
              : Preset{256, 4, 8, 4, 32, 768, 128, 32, 4, 1, 1, 0, 1024, 0, 0, 0, 0, 0};
  }
  if (name == "bench") {
    return ds ? Preset{2048, 6, 16, 16, 0, 5632, 768, 32, 4, 4, 2, 1, 32768, 768, 256, 64, 32, 64}
              : Preset{2048, 6, 16, 4, 128, 5632, 768, 32, 4, 1, 1, 0, 32768, 0, 0, 0, 0, 0};
  }
  EPS_THROW("--preset '{}' is not one of tiny, small, bench", name);
}

double uniform01(uint64_t& state) {
  return (static_cast<double>(splitmix64_next(state) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

uint64_t name_seed(const std::string& name, uint64_t seed) {
  uint64_t h = 1469598103934665603ull ^ seed;
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ull;
  return h;
}

// Fills n bf16 values with mean + N(0, std^2), deterministically from the seed, in parallel
// chunks whose seeds depend only on their index.
void fill_normal_bf16(bf16_t* dst, int64_t n, double mean, double std, uint64_t seed) {
  constexpr int64_t kChunk = 1 << 16;
  int64_t chunks = (n + kChunk - 1) / kChunk;
  ThreadPool::global().parallel_for(chunks, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      uint64_t state = seed ^ (0xd1b54a32d192ed03ull * static_cast<uint64_t>(c + 1));
      int64_t end = std::min(n, (c + 1) * kChunk);
      for (int64_t i = c * kChunk; i < end; ++i) {
        double u1 = uniform01(state);
        double u2 = uniform01(state);
        double z = std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
        dst[i] = f32_to_bf16(static_cast<float>(mean + std * z));
      }
    }
  });
}

}  // namespace

json make_model_config(const MakeModelOptions& o) {
  EPS_CHECK(o.arch == "deepseek_v3" || o.arch == "qwen3_moe",
            "--arch '{}' is not one of deepseek_v3, qwen3_moe", o.arch);
  EPS_CHECK(o.router_skew == 0.0 || o.arch == "deepseek_v3",
            "--router-skew needs --arch deepseek_v3 (it sets e_score_correction_bias)");
  EPS_CHECK(o.router_skew >= 0.0, "--router-skew must not be negative");
  Preset p = preset_for(o.arch, o.preset);
  int hidden = o.hidden_size.value_or(p.hidden);
  int heads = o.num_heads.value_or(p.heads);
  int experts = o.num_experts.value_or(p.experts);
  json c;
  c["vocab_size"] = o.vocab_size.value_or(p.vocab);
  c["hidden_size"] = hidden;
  c["intermediate_size"] = o.intermediate_size.value_or(p.inter);
  c["moe_intermediate_size"] = o.moe_intermediate_size.value_or(p.moe_inter);
  c["num_hidden_layers"] = o.num_layers.value_or(p.layers);
  c["num_attention_heads"] = heads;
  c["num_experts_per_tok"] = o.top_k.value_or(p.top_k);
  c["max_position_embeddings"] = 4096;
  c["rms_norm_eps"] = 1e-6;
  c["hidden_act"] = "silu";
  c["initializer_range"] = 0.02;
  c["tie_word_embeddings"] = false;
  c["attention_bias"] = false;
  c["attention_dropout"] = 0.0;
  c["use_cache"] = true;
  c["torch_dtype"] = "bfloat16";
  c["bos_token_id"] = 0;
  if (o.arch == "deepseek_v3") {
    c["architectures"] = {"DeepseekV3ForCausalLM"};
    c["model_type"] = "deepseek_v3";
    c["eos_token_id"] = 1;
    c["num_key_value_heads"] = heads;
    c["q_lora_rank"] = p.q_lora;
    c["kv_lora_rank"] = p.kv_lora;
    c["qk_nope_head_dim"] = p.nope;
    c["qk_rope_head_dim"] = p.rope;
    c["v_head_dim"] = p.v;
    c["n_routed_experts"] = experts;
    c["n_shared_experts"] = 1;
    c["n_group"] = experts % p.n_group == 0 ? p.n_group : 1;
    c["topk_group"] = experts % p.n_group == 0 ? p.topk_group : 1;
    c["topk_method"] = "noaux_tc";
    c["scoring_func"] = "sigmoid";
    c["norm_topk_prob"] = true;
    c["routed_scaling_factor"] = 2.5;
    c["first_k_dense_replace"] = o.first_k_dense_replace.value_or(p.first_dense);
    c["moe_layer_freq"] = 1;
    c["rope_theta"] = 10000.0;
    c["rope_scaling"] = {
        {"type", "yarn"},       {"factor", 4.0},  {"original_max_position_embeddings", 1024},
        {"beta_fast", 32},      {"beta_slow", 1}, {"mscale", 1.0},
        {"mscale_all_dim", 1.0}};
  } else {
    c["architectures"] = {"Qwen3MoeForCausalLM"};
    c["model_type"] = "qwen3_moe";
    c["eos_token_id"] = 2;
    c["num_key_value_heads"] = p.kv_heads;
    c["head_dim"] = p.head_dim;
    c["num_experts"] = experts;
    c["norm_topk_prob"] = true;
    c["decoder_sparse_step"] = 1;
    c["mlp_only_layers"] = json::array();
    c["rope_theta"] = 1000000.0;
    c["rope_scaling"] = nullptr;
    c["use_sliding_window"] = false;
    c["sliding_window"] = nullptr;
  }
  EPS_CHECK(c["vocab_size"].get<int>() >= 1024,
            "--vocab-size {} is smaller than the family tokenizer's 1024 ids",
            c["vocab_size"].get<int>());
  check_make_model_quantization(o.quantization);
  if (!o.quantization.empty()) c["quantization_config"] = make_model_quant_config(o.quantization);
  parse_model_config(c, "make-model");  // the same checks a load would make
  return c;
}

void make_model(const MakeModelOptions& o, const std::string& dir) {
  json config_json = make_model_config(o);
  ModelConfig config = parse_model_config(config_json, "make-model");
  std::filesystem::create_directories(dir);
  {
    std::ofstream f(dir + "/config.json");
    f << config_json.dump(2) << "\n";
    std::ofstream g(dir + "/generation_config.json");
    g << json{{"bos_token_id", config_json["bos_token_id"]},
              {"eos_token_id", config_json["eos_token_id"]},
              {"do_sample", false}}
             .dump(2)
      << "\n";
    EPS_CHECK(f.good() && g.good(), "{}: cannot write config files", dir);
  }
  std::vector<TensorToWrite> tensors;
  for (const TensorSpec& spec : model_tensor_specs(config)) {
    TensorToWrite t{spec.name, DType::BF16, spec.shape, nullptr};
    uint64_t seed = name_seed(spec.name, o.seed);
    int64_t n = shape_numel(spec.shape);
    switch (spec.role) {
      case TensorRole::kMatrix: {
        double std = o.init_scale / std::sqrt(static_cast<double>(spec.shape[1]));
        t.fill = [n, std, seed](void* dst, size_t) {
          fill_normal_bf16(static_cast<bf16_t*>(dst), n, 0.0, std, seed);
        };
        if (make_model_quantizes(o.quantization, spec.name)) {
          add_quantized_matrix(tensors, o.quantization, spec, [fill = t.fill, n](bf16_t* dst) {
            fill(dst, static_cast<size_t>(n) * 2);
          });
          continue;
        }
        break;
      }
      case TensorRole::kEmbedding:
        t.fill = [n, seed](void* dst, size_t) {
          fill_normal_bf16(static_cast<bf16_t*>(dst), n, 0.0, 1.0, seed);
        };
        break;
      case TensorRole::kNorm:
        t.fill = [n, seed](void* dst, size_t) {
          fill_normal_bf16(static_cast<bf16_t*>(dst), n, 1.0, 0.1, seed);
        };
        break;
      case TensorRole::kRouterBias: {
        t.dtype = DType::F32;
        double skew = o.router_skew;
        uint64_t perm_seed = o.seed;
        t.fill = [n, skew, perm_seed](void* dst, size_t) {
          // Expert e gets bias -skew * log(1 + rank(e)) / log(1 + n): a Zipf-like preference
          // for a seed-dependent order of the experts.
          std::vector<int64_t> rank(n);
          for (int64_t i = 0; i < n; ++i) rank[i] = i;
          uint64_t state = perm_seed;
          for (int64_t i = n - 1; i > 0; --i) {
            std::swap(rank[i], rank[splitmix64_next(state) % static_cast<uint64_t>(i + 1)]);
          }
          float* b = static_cast<float*>(dst);
          for (int64_t e = 0; e < n; ++e) {
            b[e] = static_cast<float>(-skew * std::log1p(static_cast<double>(rank[e])) /
                                      std::log1p(static_cast<double>(n)));
          }
        };
        break;
      }
    }
    tensors.push_back(std::move(t));
  }
  write_model_safetensors(dir, tensors, o.max_shard_bytes);
  // The family's small trained tokenizer (1024 ids, the family's special tokens and chat
  // template), so that any made model can be served with text.
  tokenizer::write_family_tokenizer_files(*tokenizer::tokenizer_family_from_name(o.arch), dir);
}

}  // namespace epserve
