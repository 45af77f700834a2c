#include "model/memory_plan.h"

#include <gtest/gtest.h>

#include "io/model_weights.h"

namespace epserve {
namespace {

std::string data_dir() {
  return std::string(EPSERVE_SOURCE_DIR) + "/tests/data";
}

// The plan's bytes, from config.json alone, are the bytes the quantized fixtures really store.
TEST(MemoryPlan, ComputedBytesEqualTheFilesOfEveryFormat) {
  for (const char* name : {"deepseek_v3_tiny", "deepseek_v3_tiny_fp8", "kimi_k2_tiny_int4"}) {
    const std::string dir = data_dir() + "/models/" + name;
    ModelWeights w = ModelWeights::open(dir);
    double stored = 0, experts = 0;
    for (const std::string& t : w.names()) {
      stored += static_cast<double>(w.nbytes(t));
      if (t.find(".mlp.experts.") != std::string::npos) experts += static_cast<double>(w.nbytes(t));
    }
    const WeightBytes b = checkpoint_weight_bytes(load_model_config(dir));
    EXPECT_EQ(b.total(), stored) << name;
    EXPECT_EQ(b.routed_experts, experts) << name;
  }
}

TEST(MemoryPlan, RealCheckpointsPerRank) {
  const ModelConfig ds = load_model_config(data_dir() + "/configs/deepseek_v3");
  const ModelConfig kimi = load_model_config(data_dir() + "/configs/kimi_k2_thinking");
  const double gib = 1024.0 * 1024.0 * 1024.0;
  // DeepSeek-V3's published files are 641 GiB with the MTP layer, which epserve does not load.
  EXPECT_NEAR(checkpoint_weight_bytes(ds).total() / gib, 626.9, 0.1);
  // Kimi-K2-Thinking's published files are about 594 GB.
  EXPECT_NEAR(checkpoint_weight_bytes(kimi).total() / 1e9, 594.2, 0.1);
  EXPECT_LT(rank_memory(ds, 32, 0).tp_attention_bytes, rank_memory(ds, 16, 0).tp_attention_bytes);
  EXPECT_GT(rank_memory(ds, 8, 32).dp_attention_bytes, rank_memory(ds, 8, 0).dp_attention_bytes);
}

// A rank also holds MLA's transposed W_uk of the FP8 kv_b_proj, in FP8 with its block scales
// (DeepSeek-V3's heads start on 128-row blocks): 61 layers x 128 heads x (512 x 128 codes + 4 x 1
// scales x 4 bytes) = 0.477 GiB per attention group, split like the heads; INT4 Kimi-K2 keeps
// kv_b_proj in BF16 and has none.
TEST(MemoryPlan, RankMemoryCountsTheTransposedWukOfAnFp8KvB) {
  const ModelConfig ds = load_model_config(data_dir() + "/configs/deepseek_v3");
  const ModelConfig kimi = load_model_config(data_dir() + "/configs/kimi_k2_thinking");
  const double gib = 1024.0 * 1024.0 * 1024.0;
  const double copy = 61.0 * 128 * (512 * 128 + 4 * 4);
  EXPECT_EQ(mla_absorb_copy_bytes(ds, 0, 128), copy);
  EXPECT_EQ(mla_absorb_copy_bytes(ds, 32, 64), copy / 4);
  EXPECT_NEAR(copy / gib, 0.4767, 1e-3);
  for (int w : {8, 16}) {
    const WeightBytes b = checkpoint_weight_bytes(ds);
    const double experts = b.routed_experts / w;
    const RankMemory m = rank_memory(ds, w, 0);
    EXPECT_NEAR(m.dp_attention_bytes - b.replicated - b.sharded - experts, copy, 1.0);
    EXPECT_NEAR(m.tp_attention_bytes - b.replicated - b.sharded / w - experts, copy / w, 1.0);
    const WeightBytes k = checkpoint_weight_bytes(kimi);
    EXPECT_NEAR(rank_memory(kimi, w, 0).dp_attention_bytes,
                k.replicated + k.sharded + k.routed_experts / w, 1.0);
  }
  // Heads whose W_uk rows straddle two 128-row blocks (nope 96, v 64: head 2 is rows 320..415)
  // are kept in F32; head 0 (rows 0..95, from a block boundary) and head 1 (rows 160..255, in one
  // block row) in FP8.
  ModelConfig odd = ds;
  odd.mla.qk_nope_head_dim = 96;
  odd.mla.v_head_dim = 64;
  const double fp8_head = 512.0 * 96 + 4 * 4, f32_head = 4.0 * 512 * 96;
  EXPECT_EQ(mla_absorb_copy_bytes(odd, 0, 1), 61 * fp8_head);
  EXPECT_EQ(mla_absorb_copy_bytes(odd, 1, 2), 61 * fp8_head);
  EXPECT_EQ(mla_absorb_copy_bytes(odd, 2, 3), 61 * f32_head);
}

}  // namespace
}  // namespace epserve
