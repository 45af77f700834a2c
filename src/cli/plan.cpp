// epserve plan: the memory a checkpoint needs per rank for several world sizes, from its
// config.json (and its safetensors index's total_size as a cross-check), without reading weights.
#include <cstdio>
#include <filesystem>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "io/model_config.h"
#include "model/memory_plan.h"

namespace epserve::cli {

Command register_plan(CLI::App& app) {
  struct Options {
    std::string model_path;
    std::vector<int> world_sizes = {8, 16, 32};
    int redundant = 0;
  };
  auto o = std::make_shared<Options>();
  CLI::App* sub = app.add_subcommand(
      "plan", "Weight and KV memory per rank for W ranks, from config.json only (no weights read)");
  sub->add_option("--model-path", o->model_path, "Directory with config.json")->required();
  sub->add_option("--world-sizes", o->world_sizes, "Rank counts (default 8 16 32)");
  sub->add_option("--ep-num-redundant-experts", o->redundant, "Extra expert slots per layer");
  return Command{
      sub, [o] {
        for (int w : o->world_sizes) EPS_CHECK(w > 0, "--world-sizes: {} is not a rank count", w);
        EPS_CHECK(o->redundant >= 0, "--ep-num-redundant-experts must be >= 0, got {}",
                  o->redundant);
        const ModelConfig c = load_model_config(o->model_path);
        const WeightBytes b = checkpoint_weight_bytes(c);
        const double gib = 1024.0 * 1024.0 * 1024.0;
        std::printf("%s: %s, %d layers, %d routed experts (top-%d), quantization %s\n",
                    o->model_path.c_str(), c.architecture.c_str(), c.num_layers, c.moe.num_experts,
                    c.moe.top_k, c.quant.describe().c_str());
        std::printf(
            "weights as stored: %.1f GiB (routed experts %.1f, attention + "
            "dense + shared %.1f, embeddings + lm_head + norms + routers %.1f)\n",
            b.total() / gib, b.routed_experts / gib, b.sharded / gib, b.replicated / gib);
        const auto index = std::filesystem::path(o->model_path) / "model.safetensors.index.json";
        if (std::filesystem::exists(index)) {
          auto j = nlohmann::json::parse(read_text_file(index.string()));
          if (j.contains("metadata") && j["metadata"].contains("total_size")) {
            const double total = j["metadata"]["total_size"].get<double>();
            std::printf("index total_size: %.1f GiB (computed / index: %.3f)\n", total / gib,
                        b.total() / total);
          }
        }
        std::printf(
            "KV cache (fp32): %.1f KiB per token on each rank of an attention "
            "group\n",
            kv_bytes_per_token(c) / 1024.0);
        std::printf(
            "| W | DP attention + deepep (ep = W): GiB per rank | TP attention "
            "over W + deepep: GiB per rank |\n|---|---|---|\n");
        for (int w : o->world_sizes) {
          const RankMemory m = rank_memory(c, w, o->redundant);
          std::printf("| %d | %.1f | %.1f |\n", w, m.dp_attention_bytes / gib,
                      m.tp_attention_bytes / gib);
        }
        return 0;
      }};
}

}  // namespace epserve::cli
