#include "cli/commands.h"

namespace epserve::cli {

std::vector<Command> all_commands(CLI::App& app) {
  std::vector<Command> commands;
  return commands;
}

}  // namespace epserve::cli
