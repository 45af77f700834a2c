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

// A rank also holds MLA's F32 copy of the FP8 kv_b_proj (61 layers x 128 heads x 256 rows x 512
// columns x 4 bytes = 3.81 GiB per attention group), split like the heads; INT4 Kimi-K2 keeps
// kv_b_proj in BF16 and has none.
TEST(MemoryPlan, RankMemoryCountsTheAbsorbedCopyOfAnFp8KvB) {
  const ModelConfig ds = load_model_config(data_dir() + "/configs/deepseek_v3");
  const ModelConfig kimi = load_model_config(data_dir() + "/configs/kimi_k2_thinking");
  const double gib = 1024.0 * 1024.0 * 1024.0;
  for (int w : {8, 16}) {
    const WeightBytes b = checkpoint_weight_bytes(ds);
    const double experts = b.routed_experts / w;
    const RankMemory m = rank_memory(ds, w, 0);
    EXPECT_NEAR((m.dp_attention_bytes - b.replicated - b.sharded - experts) / gib, 3.8125, 1e-3);
    EXPECT_NEAR((m.tp_attention_bytes - b.replicated - b.sharded / w - experts) / gib, 3.8125 / w,
                1e-3);
    const WeightBytes k = checkpoint_weight_bytes(kimi);
    EXPECT_NEAR(rank_memory(kimi, w, 0).dp_attention_bytes,
                k.replicated + k.sharded + k.routed_experts / w, 1.0);
  }
}

}  // namespace
}  // namespace epserve
