// The command-line convention of every tool here (tm-verify, tm-fixtures, tm-cost, tm-decode): CLI11 parses,
// --help prints the usage and exits 0, a usage error prints CLI11's message to stderr and exits 2.
#pragma once

#include <CLI/CLI.hpp>

#include <optional>
#include <string>

namespace transmamba {

// A whole-number flag's check, run on the text before CLI11 converts it, so that a bad value is named with what
// is valid: "--cases: must be a whole number >= 1, got -5" (CLI11's own range check prints "[1 - 1.79769e+308]").
inline CLI::Validator whole_number(long long min) {
  const std::string valid = "must be a whole number >= " + std::to_string(min);
  return CLI::Validator(
      [min, valid](std::string& text) -> std::string {
        const bool negative = !text.empty() && text[0] == '-';
        const std::size_t digits = text.find_first_not_of("0123456789", negative ? 1 : 0);
        if (text.size() > (negative ? 1u : 0u) && digits == std::string::npos && text.size() <= 19) {
          const long long v = std::stoll(text);
          if (v >= min) return "";
        } else if (!negative && text.size() == 20 && digits == std::string::npos && min <= 0) {
          return "";  // 20 digits: an unsigned 64-bit value (a seed); CLI11 rejects what does not fit
        }
        return valid + ", got " + text;
      },
      "INT>=" + std::to_string(min));
}

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
