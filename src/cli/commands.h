// The subcommands of the epserve executable. Each register_* adds its subcommand and its flags
// to the app and returns what to run when that subcommand is chosen.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace epserve::cli {

struct Command {
  CLI::App* app;
  std::function<int()> run;
  // Flags the command does not register but abbreviations are matched against too (serve:
  // SGLang's unimplemented flags, so that a prefix ambiguous in SGLang is ambiguous here).
  std::vector<std::string> other_flag_names = {};
};

Command register_generate(CLI::App& app);
Command register_make_model(CLI::App& app);
Command register_bench_one_batch(CLI::App& app);
Command register_eplb(CLI::App& app);
Command register_serve(CLI::App& app);
Command register_tokenize(CLI::App& app);
Command register_perplexity(CLI::App& app);
Command register_plan(CLI::App& app);
Command register_router(CLI::App& app);

std::vector<Command> all_commands(CLI::App& app);

// argv without the program name, with the chosen command's abbreviated flags written out
// (argparse's allow_abbrev, as SGLang's launch scripts rely on). Throws on an ambiguous one.
std::vector<std::string> expand_abbreviations(const std::vector<Command>& commands,
                                              std::vector<std::string> args);

// A command's JSON result: on stdout, or into the file `output` names (--output).
void write_json_output(const nlohmann::json& result, const std::string& output);

}  // namespace epserve::cli
