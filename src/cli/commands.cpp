#include "cli/commands.h"

namespace epserve::cli {

std::vector<Command> all_commands(CLI::App& app) {
  std::vector<Command> commands;
  commands.push_back(register_generate(app));
  commands.push_back(register_make_model(app));
  commands.push_back(register_bench_one_batch(app));
  commands.push_back(register_eplb(app));
  commands.push_back(register_serve(app));
  commands.push_back(register_tokenize(app));
  commands.push_back(register_perplexity(app));
  return commands;
}

}  // namespace epserve::cli
