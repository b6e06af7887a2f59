#include "verify/harness.hpp"

#include <rapidcheck.h>
#include <rapidcheck/detail/TestListenerAdapter.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <sstream>
#include <stdexcept>

namespace transmamba {

namespace {
// How close a comparison is to failing (> 1: failed): rel_norm / bound, or the error over the reference's
// own error where that is smaller; infinite when not finite or the shapes differ.
double severity(const Comparison& c) {
  if (!c.finite || !c.shape_matches) return INFINITY;
  const double by_rel = c.bound > 0 ? c.rel_norm / c.bound : c.rel_norm;
  return c.abs_floor > 0 ? std::min(by_rel, c.abs_norm / c.abs_floor) : by_rel;
}

// RapidCheck loads its global configuration (RC_PARAMS) at first use and announces it on stderr, with a random
// global seed of its own. run_check passes its seed to every check, so that line would only mislead (it used
// to appear in the middle of tm-verify's table): load the configuration once with stderr silenced.
void load_rapidcheck_configuration_quietly() {
  static const bool loaded = [] {
    std::ostringstream sink;
    std::streambuf* const stderr_buf = std::cerr.rdbuf(sink.rdbuf());
    (void)rc::detail::configuration();
    std::cerr.rdbuf(stderr_buf);
    return true;
  }();
  (void)loaded;
}
}  // namespace

CheckReport run_check(const Check& check, std::uint64_t seed, int cases) {
  load_rapidcheck_configuration_quietly();
  CheckReport report;
  report.name = check.name;
  report.seed = seed;
  bool have_worst = false;
  auto testable = [&] {
    for (const Comparison& c : check.property()) {
      if (!have_worst || severity(c) > severity(report.worst)) report.worst = c, have_worst = true;
      if (!c.passed()) RC_FAIL(c.report());
    }
  };
  rc::detail::TestParams params;
  params.seed = seed;
  params.maxSuccess = cases > 0 ? cases : check.default_cases;
  rc::detail::TestMetadata metadata;
  metadata.id = metadata.description = check.name;
  // A listener of our own: RapidCheck's default one would print an RC_PARAMS "reproduce" string at exit;
  // tm-verify prints its own replay command (--suite, --seed, --cases) instead.
  rc::detail::TestListenerAdapter listener;
  const rc::detail::TestResult result = rc::detail::checkTestable(testable, metadata, params, listener);
  if (result.is<rc::detail::SuccessResult>()) {
    report.passed = true;
    report.cases = result.get<rc::detail::SuccessResult>().numSuccess;
  } else {
    std::ostringstream os;
    rc::detail::printResultMessage(result, os);
    report.failure = os.str();
    if (result.is<rc::detail::FailureResult>()) report.cases = result.get<rc::detail::FailureResult>().numSuccess;
  }
  return report;
}

const std::vector<Check>& cpu_checks() {
  static const std::vector<Check> all = [] {
    std::vector<Check> v;
    for (auto part : {ssm_checks, converter_checks, attention_checks, component_checks, mixer_checks, model_checks})
      for (Check& c : part()) v.push_back(std::move(c));
    return v;
  }();
  return all;
}

const Check& find_check(const std::string& name, const std::vector<Check>& catalogue) {
  std::string names;
  for (const Check& c : catalogue) {
    if (c.name == name) return c;
    names += (names.empty() ? "" : ", ") + c.name;
  }
  throw std::invalid_argument("no check named '" + name + "'; the checks are: " + names);
}

}  // namespace transmamba
