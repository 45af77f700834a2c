// The expert distribution recorder's own cost per forward pass, in stat mode: begin_pass, the
// top-k report of every MoE layer and end_pass (fold to logical experts, ring buffer), for a
// DeepSeek-V3-shaped pass by default (58 MoE layers of 61, 256 experts in 288 slots over 32
// ranks, top-8). The limit printed beside it is one plain pass over the same top-k ids that
// adds them up (the least any counter must do: read every id once); the ratio says how far the
// recorder is from it. Compare the figure with a decode step's time (bench-one-batch).
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

#include <CLI/CLI.hpp>

#include "eplb/recorder.h"

using namespace epserve;

int main(int argc, char** argv) {
  int layers = 61, dense = 3, experts = 256, slots = 288, ranks = 32, top_k = 8, tokens = 128;
  int repeats = 200;
  CLI::App app{"expert distribution recorder cost per forward pass"};
  app.add_option("--layers", layers);
  app.add_option("--dense-layers", dense);
  app.add_option("--experts", experts);
  app.add_option("--slots", slots);
  app.add_option("--ranks", ranks);
  app.add_option("--top-k", top_k);
  app.add_option("--tokens", tokens, "tokens of the pass on this rank");
  app.add_option("--repeats", repeats);
  CLI11_PARSE(app, argc, argv);

  std::mt19937 rng(1);
  std::vector<int32_t> ids(static_cast<size_t>(layers) * tokens * top_k);
  for (auto& id : ids) id = static_cast<int32_t>(rng() % slots);
  std::vector<int32_t> map(static_cast<size_t>(layers) * slots);
  for (size_t i = 0; i < map.size(); ++i) map[i] = static_cast<int32_t>(i % slots % experts);
  ForwardBatch batch;
  batch.token_ids.assign(tokens, 1);
  batch.positions.assign(tokens, 0);

  eplb::ExpertDistributionRecorder recorder(eplb::RecorderMode::kStat, 1000,
                                            {layers, experts, slots, ranks}, 0);
  recorder.start();
  auto pass = [&](int64_t id) {
    recorder.begin_pass(id, batch);
    for (int l = dense; l < layers; ++l) {
      recorder.on_topk(l, ids.data() + static_cast<size_t>(l) * tokens * top_k, 0, tokens, top_k);
    }
    recorder.end_pass(map);
  };
  using clock = std::chrono::steady_clock;
  double best_pass = 1e30, best_sum = 1e30;
  int64_t sink = 0;
  for (int r = 0; r < repeats; ++r) {
    auto t0 = clock::now();
    pass(r);
    auto t1 = clock::now();
    int64_t sum = 0;
    for (int l = dense; l < layers; ++l) {
      const int32_t* p = ids.data() + static_cast<size_t>(l) * tokens * top_k;
      for (int i = 0; i < tokens * top_k; ++i) sum += p[i];
    }
    auto t2 = clock::now();
    sink += sum;
    best_pass = std::min(best_pass, std::chrono::duration<double, std::micro>(t1 - t0).count());
    best_sum = std::min(best_sum, std::chrono::duration<double, std::micro>(t2 - t1).count());
  }
  std::printf(
      "shape: %d layers (%d dense), %d experts in %d slots over %d ranks, %d tokens x "
      "top-%d per pass (best of %d)\n",
      layers, dense, experts, slots, ranks, tokens, top_k, repeats);
  std::printf("recorder (stat) per pass: %.1f us\n", best_pass);
  std::printf("limit, one read of the same ids: %.1f us (checksum %lld)\n", best_sum,
              static_cast<long long>(sink % 1000));
  std::printf("ratio recorder / limit: %.1f\n", best_pass / best_sum);
  return 0;
}
