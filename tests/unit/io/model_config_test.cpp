#include "io/model_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mapped_file.h"
#include "support/temp_dir.h"

namespace epserve {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

std::string fixture(const std::string& name) {
  return std::string(EPSERVE_SOURCE_DIR) + "/tests/data/models/" + name;
}

std::string error_of(const json& j) {
  try {
    parse_model_config(j, "config.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

json deepseek_json() {
  return json::parse(read_text_file(fixture("deepseek_v3_tiny") + "/config.json"));
}

TEST(ModelConfig, DeepseekHubSpelling) {
  ModelConfig c = load_model_config(fixture("deepseek_v3_tiny"));
  EXPECT_EQ(c.arch, Arch::kDeepseekV3);
  EXPECT_EQ(c.mla.q_lora_rank, 48);
  EXPECT_EQ(c.head_dim, 32);  // nope + rope, whatever "head_dim" says
  EXPECT_EQ(c.rope.type, "yarn");
  EXPECT_TRUE(c.rope.interleave);
  EXPECT_DOUBLE_EQ(c.rope.factor, 4.0);
  EXPECT_DOUBLE_EQ(c.rope.mscale_all_dim, 0.8);
  EXPECT_EQ(c.moe.num_experts, 16);
  EXPECT_EQ(c.moe.n_group, 4);
  EXPECT_EQ(c.moe.topk_group, 2);
  EXPECT_EQ(c.moe.scoring, ScoringFunc::kSigmoid);
  EXPECT_TRUE(c.moe.has_correction_bias);
  EXPECT_DOUBLE_EQ(c.moe.routed_scaling_factor, 2.5);
  EXPECT_EQ(c.layer_is_moe, (std::vector<bool>{false, true, true, true}));
  EXPECT_EQ(c.eos_token_ids, (std::vector<int>{1}));
}

TEST(ModelConfig, TransformersFiveSpellings) {
  ModelConfig ds = load_model_config(fixture("deepseek_v3_tiny_noqlora"));
  EXPECT_EQ(ds.mla.q_lora_rank, 0);
  EXPECT_EQ(ds.rope.type, "default");
  EXPECT_EQ(ds.moe.num_shared_experts, 2);
  ModelConfig qw = load_model_config(fixture("qwen3_moe_tiny"));
  EXPECT_EQ(qw.arch, Arch::kQwen3Moe);
  EXPECT_EQ(qw.moe.num_experts, 16);     // from num_local_experts
  EXPECT_DOUBLE_EQ(qw.rope.theta, 1e6);  // from rope_parameters
  EXPECT_FALSE(qw.rope.interleave);
  ModelConfig tied = load_model_config(fixture("qwen3_moe_tiny_sharded"));
  EXPECT_TRUE(tied.tie_word_embeddings);
}

TEST(ModelConfig, UnknownArchitectureIsNamed) {
  json j = deepseek_json();
  j["architectures"] = {"LlamaForCausalLM"};
  EXPECT_THAT(error_of(j), HasSubstr("architecture 'LlamaForCausalLM' is not supported"));
}

TEST(ModelConfig, MissingFieldIsNamed) {
  for (const char* field : {"kv_lora_rank", "hidden_size", "n_routed_experts", "norm_topk_prob",
                            "routed_scaling_factor", "architectures"}) {
    json j = deepseek_json();
    j.erase(field);
    if (std::string(field) == "n_routed_experts") {
      EXPECT_THAT(error_of(j), HasSubstr("missing field 'num_local_experts'"));
    } else {
      EXPECT_THAT(error_of(j), HasSubstr(std::string("missing field '") + field + "'"));
    }
  }
}

TEST(ModelConfig, WrongTypesAndInconsistentValues) {
  json j = deepseek_json();
  j["hidden_size"] = "64";
  EXPECT_THAT(error_of(j), HasSubstr("'hidden_size' must be an integer"));
  j = deepseek_json();
  j["n_group"] = 3;
  EXPECT_THAT(error_of(j), HasSubstr("n_group 3 must divide the 16 routed experts"));
  j = deepseek_json();
  j["rope_scaling"]["type"] = "longrope";
  EXPECT_THAT(error_of(j), HasSubstr("'longrope' is not supported"));
  j = deepseek_json();
  j["num_experts_per_tok"] = 17;
  EXPECT_THAT(error_of(j), HasSubstr("exceeds the 16 experts"));
}

TEST(ModelConfig, MalformedAndNonUtf8Files) {
  testing::TempDir dir;
  dir.write("config.json", "{\"architectures\": [\"DeepseekV3ForCausalLM\"");
  EXPECT_THROW(load_model_config(dir.path()), Error);
  dir.write("config.json", "{\"architectures\": [\"Deepseek\xff\"]}");
  try {
    load_model_config(dir.path());
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("not valid JSON (or not UTF-8)"));
    EXPECT_THAT(e.what(), HasSubstr(dir.file("config.json")));
  }
  testing::TempDir empty;
  EXPECT_THROW(load_model_config(empty.path()), Error);
}

TEST(ModelConfig, GenerationConfigEosIdsJoinTheConfigs) {
  testing::TempDir dir;
  dir.write("config.json", read_text_file(fixture("qwen3_moe_tiny") + "/config.json"));
  EXPECT_EQ(load_model_config(dir.path()).eos_token_ids, std::vector<int>({2}));
  dir.write("generation_config.json", R"({"eos_token_id": [2, 7, 9]})");
  EXPECT_EQ(load_model_config(dir.path()).eos_token_ids, std::vector<int>({2, 7, 9}));
  dir.write("generation_config.json", R"({"eos_token_id": 5})");
  EXPECT_EQ(load_model_config(dir.path()).eos_token_ids, std::vector<int>({2, 5}));
  dir.write("generation_config.json", "not json");  // ignored, as transformers does
  EXPECT_EQ(load_model_config(dir.path()).eos_token_ids, std::vector<int>({2}));
  dir.write("generation_config.json", R"({"eos_token_id": "x"})");
  EXPECT_THROW(load_model_config(dir.path()), Error);
  // An id outside the vocabulary would index past the logits: an error naming the file.
  for (const char* bad : {R"({"eos_token_id": -1})", R"({"eos_token_id": [2, 1000000]})"}) {
    dir.write("generation_config.json", bad);
    try {
      load_model_config(dir.path());
      ADD_FAILURE() << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("generation_config.json: eos_token_id"),
                std::string::npos)
          << e.what();
    }
  }
}

}  // namespace
}  // namespace epserve
