// `epserve eplb plan`: the offline EPLB planner. Reads token counts per (layer, logical expert)
// (or a recorder dump), places the experts onto the physical slots with the chosen algorithm and
// writes the placement as JSON; prints the balancedness per layer before (trivial placement) and
// after. With --output the JSON goes to that file and the table to stdout; without it the JSON
// goes to stdout and the table to stderr.
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "core/error.h"
#include "eplb/balancedness.h"
#include "eplb/placement.h"
#include "eplb/planner_io.h"

namespace epserve::cli {
namespace {

struct PlanOptions {
  std::string input;
  std::string output;
  int num_physical = 0;
  int num_gpus = 0;
  int num_nodes = 1;
  int num_groups = 0;
  std::string algorithm = "auto";
};

int run_plan(const PlanOptions& o) {
  using namespace epserve::eplb;
  EplbAlgorithm algorithm = parse_eplb_algorithm(o.algorithm);
  ExpertLoad load = expert_load_from_json(read_json_file(o.input), o.input);
  PlacementConfig config{o.num_physical, o.num_gpus, o.num_nodes, o.num_groups};
  EplbAlgorithm resolved = resolve_eplb_algorithm(algorithm, config);
  const bool hierarchical = resolved == EplbAlgorithm::kDeepseekHierarchical ||
                            resolved == EplbAlgorithm::kMinmaxHierarchical;
  validate_placement_config(config, load.num_logical, hierarchical);

  Placement placement = plan_placement(load, config, algorithm);
  std::vector<double> after = balancedness_per_layer(load, placement, config.num_gpus);
  std::vector<double> before = balancedness_per_layer(
      load, trivial_placement(load.num_layers, load.num_logical, config.num_physical),
      config.num_gpus);
  std::string json_text = placement_to_json(placement, config, resolved, after).dump() + "\n";

  std::FILE* table = stdout;
  if (o.output.empty()) {
    table = stderr;
    std::fwrite(json_text.data(), 1, json_text.size(), stdout);
  } else {
    std::ofstream file(o.output, std::ios::binary);
    EPS_CHECK(file, "cannot write --output {}", o.output);
    file << json_text;
    EPS_CHECK(file.good(), "writing --output {} failed", o.output);
  }
  std::fprintf(table,
               "eplb plan: %d layers x %d logical experts -> %d slots on %d GPUs (%d nodes, "
               "%d groups), algorithm %s\n",
               load.num_layers, load.num_logical, config.num_physical, config.num_gpus,
               config.num_nodes, config.num_groups,
               std::string(eplb_algorithm_name(resolved)).c_str());
  std::fprintf(table, "%6s %10s %10s\n", "layer", "before", "after");
  for (int l = 0; l < load.num_layers; ++l) {
    std::fprintf(table, "%6d %10.4f %10.4f\n", l, before[l], after[l]);
  }
  std::fprintf(table, "%6s %10.4f %10.4f\n", "mean", mean_balancedness(before),
               mean_balancedness(after));
  if (!o.output.empty()) std::fprintf(table, "wrote %s\n", o.output.c_str());
  return 0;
}

}  // namespace

Command register_eplb(CLI::App& app) {
  CLI::App* eplb = app.add_subcommand("eplb", "Expert-parallel load balancer tools");
  eplb->require_subcommand(1);
  CLI::App* plan = eplb->add_subcommand(
      "plan", "Place logical experts onto physical slots from recorded token counts");
  auto o = std::make_shared<PlanOptions>();
  plan->add_option("--input", o->input,
                   "JSON with logical_count [layers][experts], or a recorder dump "
                   "[buffer][layers][experts]")
      ->required();
  plan->add_option("--num-physical-experts", o->num_physical,
                   "physical expert slots in total (logical experts + redundant ones)")
      ->required();
  plan->add_option("--num-gpus", o->num_gpus, "ranks holding the slots (the EP size)")->required();
  plan->add_option("--num-nodes", o->num_nodes, "nodes the ranks are spread over")
      ->capture_default_str();
  plan->add_option("--num-groups", o->num_groups,
                   "expert groups (the model's n_group); 0 = none, which means the global policy");
  plan->add_option("--algorithm", o->algorithm,
                   "auto, deepseek, deepseek_hierarchical, deepseek_global, minmax, "
                   "minmax_hierarchical or minmax_global")
      ->capture_default_str();
  plan->add_option("--output", o->output, "write the placement JSON here (default: stdout)");
  return {eplb, [plan, o]() -> int {
            EPS_CHECK(plan->parsed(), "eplb: unknown subcommand; run `epserve eplb --help`");
            return run_plan(*o);
          }};
}

}  // namespace epserve::cli
