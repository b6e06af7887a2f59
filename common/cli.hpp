// The command-line convention of every tool here (tm-verify, tm-fixtures, tm-cost, tm-decode): CLI11 parses,
// --help prints the usage and exits 0, a usage error prints CLI11's message to stderr and exits 2.
#pragma once

#include <CLI/CLI.hpp>

#include <optional>

namespace transmamba {

// Parses argv into app. Returns the exit code when the tool should stop now (0 after --help, 2 for bad
// usage), nothing when it should go on.
inline std::optional<int> parse_command_line(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);  // prints the message to stderr
    return 2;
  }
  return std::nullopt;
}

}  // namespace transmamba
