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

}  // namespace
}  // namespace epserve
