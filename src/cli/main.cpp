// epserve: the command line. Each subcommand lives in its own file and registers itself here.
// Errors reach the user as one line on stderr and a non-zero exit status.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>

#include "cli/commands.h"
#include "core/error.h"
#include "kernels/cpu/cpu_features.h"

int main(int argc, char** argv) {
  CLI::App app{"epserve: an expert-parallel serving engine for Mixture-of-Experts models"};
  app.set_version_flag("--version", EPSERVE_VERSION);
  app.require_subcommand(1);
  std::vector<epserve::cli::Command> commands = epserve::cli::all_commands(app);
  std::vector<std::string> args;
  try {
    args = epserve::cli::expand_abbreviations(commands,
                                              std::vector<std::string>(argv + 1, argv + argc));
  } catch (const epserve::Error& e) {
    std::fprintf(stderr, "epserve: error: %s\n", e.what());
    return 2;  // argparse's status for a usage error
  }
  std::vector<const char*> expanded = {argv[0]};
  for (const std::string& arg : args) expanded.push_back(arg.c_str());
  try {
    app.parse(static_cast<int>(expanded.size()), expanded.data());
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    // A bad EPSERVE_CPU_FEATURES fails here, before any work, in one line.
    epserve::cpu_features();
    for (auto& command : commands) {
      if (command.app->parsed()) return command.run();
    }
  } catch (const epserve::Error& e) {
    std::fprintf(stderr, "epserve: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "epserve: error: %s\n", e.what());
    return 1;
  }
  return 1;
}
