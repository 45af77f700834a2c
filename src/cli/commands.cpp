#include "cli/commands.h"

#include <fstream>
#include <iostream>

#include "core/error.h"
#include "server/server_args.h"

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
  commands.push_back(register_plan(app));
  commands.push_back(register_router(app));
  return commands;
}

std::vector<std::string> expand_abbreviations(const std::vector<Command>& commands,
                                              std::vector<std::string> args) {
  if (args.empty()) return args;
  for (const Command& command : commands) {
    if (command.app->get_name() != args[0]) continue;
    std::vector<std::string> names = long_flag_names(*command.app);
    names.insert(names.end(), command.other_flag_names.begin(), command.other_flag_names.end());
    std::vector<std::string> rest =
        expand_flag_abbreviations(std::vector<std::string>(args.begin() + 1, args.end()), names);
    std::copy(rest.begin(), rest.end(), args.begin() + 1);
  }
  return args;
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
