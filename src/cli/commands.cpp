#include "cli/commands.h"

#include <fstream>
#include <iostream>

#include "core/error.h"

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

void write_json_output(const nlohmann::json& result, const std::string& output) {
  if (output.empty()) {
    std::cout << result.dump() << "\n";
    return;
  }
  std::ofstream f(output);
  EPS_CHECK(f.good(), "--output: cannot write {}", output);
  f << result.dump() << "\n";
}

}  // namespace epserve::cli
