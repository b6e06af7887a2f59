// Named checks and the one runner that runs them, from ctest (tests/) and from tm-verify alike.
//
// A check is a RapidCheck property: each call draws one random case with RapidCheck generators (which
// shrink, shapes first) and returns the comparisons (verify/compare.hpp) that case produced. The runner
// runs it for a number of cases from a seed, fails on the first comparison over its bound, shrinks it,
// and reports the worst comparison seen over all passing cases.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "verify/compare.hpp"

namespace transmamba {

struct Check {
  std::string name;         // "suite.what", e.g. "ssm.forms_equal"
  std::string description;  // one line: what is compared with what
  int default_cases = 100;  // cases of a default run (the expensive gradient checks run fewer)
  std::function<std::vector<Comparison>()> property;
  // An opt-in check runs only when named (tm-verify --suite with its full name or its family, ctest by name),
  // never in a run of every check or of a backend or suite: the paper-size check, minutes on a GPU.
  bool opt_in = false;

  std::string suite() const { return name.substr(0, name.find('.')); }
  // A kernel check of the bf16 kernels is named "<backend>.<family>.bf16" (e.g. "emulated.attention.bf16");
  // every other check runs in fp32 (or double, the CPU checks).
  std::string dtype() const {
    const std::string suffix = ".bf16";
    const bool bf16 = name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    return bf16 ? "bf16" : "fp32";
  }
  // The name without its suite and dtype suffix: "attention" for "emulated.attention.bf16" and "cuda.attention".
  std::string family() const {
    const std::string rest = name.substr(name.find('.') + 1);
    return dtype() == "bf16" ? rest.substr(0, rest.size() - 5) : rest;
  }
};

struct CheckReport {
  std::string name;
  int cases = 0;           // cases that ran and passed
  bool passed = false;
  Comparison worst;        // the comparison closest to (or furthest over) its bound
  std::string failure;     // RapidCheck's message with the shrunk counterexample, when failed
  std::uint64_t seed = 0;  // the seed this run used: the same seed and cases replay it
};

// Runs check for `cases` cases (0: its default) from seed.
CheckReport run_check(const Check& check, std::uint64_t seed, int cases = 0);

// The catalogue: every CPU check of the project, in a fixed order.
const std::vector<Check>& cpu_checks();
// The check with this name in catalogue; throws std::invalid_argument listing the names when there is none.
const Check& find_check(const std::string& name, const std::vector<Check>& catalogue = cpu_checks());

// Parts of the catalogue, one per reference component (verify/checks_*.cpp).
std::vector<Check> ssm_checks();
std::vector<Check> converter_checks();
std::vector<Check> attention_checks();
std::vector<Check> component_checks();
std::vector<Check> mixer_checks();
std::vector<Check> model_checks();

}  // namespace transmamba
