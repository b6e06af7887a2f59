// Runs a named check of the catalogue (verify/harness.hpp) inside a Catch2 test. The seed is fixed so CI
// is reproducible; TM_SEED=<n> in the environment runs other cases.
#pragma once

#include <catch2/catch.hpp>

#include <cstdlib>

#include "verify/harness.hpp"

// catalogue: where to find the check (default: the CPU checks; the kernel tests pass kernel_checks(...)).
inline void require_check(const std::string& name,
                          const std::vector<transmamba::Check>& catalogue = transmamba::cpu_checks()) {
  const char* env = std::getenv("TM_SEED");
  const std::uint64_t seed = env ? std::strtoull(env, nullptr, 10) : 20261123;
  const transmamba::CheckReport r = transmamba::run_check(transmamba::find_check(name, catalogue), seed);
  INFO(name << " (seed " << seed << "): worst " << r.worst.report() << "\n" << r.failure);
  REQUIRE(r.passed);
  REQUIRE(r.cases > 0);
}
