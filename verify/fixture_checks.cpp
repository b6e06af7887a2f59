#include "verify/fixture_checks.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <set>

#include "verify/bounds.hpp"

namespace fs = std::filesystem;

namespace transmamba {

namespace {
// How close a comparison is to failing (> 1: failed); infinite when not finite or the shapes differ.
double severity(const Comparison& c) {
  if (!c.finite || !c.shape_matches) return INFINITY;
  return c.bound > 0 ? c.rel_norm / c.bound : c.rel_norm;
}

// The bound for a stored tensor of this dtype (DESIGN.md section 7): F64 is held to the double bound, F32 to
// the CUDA fp32 bounds (forward, gradients), BF16 to the bf16 ceiling.
double bound_for(const std::string& dtype, const std::string& name) {
  if (dtype == "F64") return bounds::kExact;
  if (dtype == "F32") return name.rfind("grad.", 0) == 0 ? bounds::kCudaFp32Gradient : bounds::kCudaFp32Forward;
  return bounds::kBf16Ceiling;
}

// Compares every output, stage and gradient of the recomputation f with the stored file: got = the file,
// ref = the double reference. Strict (a fixture of the catalogue): every one must be there, in F64; else
// the absent ones are listed and each is held to the bound of its dtype.
void compare_stored(const RecomputedFixture& f, const SafetensorsFile& stored, FixtureReport& r) {
  for (const std::string& name : f.results) {  // pipeline order: the first stage that differs is nearest the bug
    if (!f.strict && !stored.has(name)) {
      r.absent.push_back(name);
      continue;
    }
    const Mat<double> got = f.read(stored, name);
    const std::string& dtype = stored.at(name).dtype;
    r.comparisons.push_back(compare(name, got, f.reference(name), bound_for(dtype, name)));
    r.dtypes[name] = dtype;
    r.views[name] = {f.layouts.at(name).shape, f.layouts.at(name).cols};
  }
}

// Checks a fixture of the catalogue against its definition (check_fixture()).
FixtureReport check_against_definition(const SafetensorsFile& stored, const FixtureSpec& spec) {
  const RecomputedFixture f = recompute_fixture(stored, spec);
  FixtureReport r;
  r.kind = spec.kind;
  r.config = spec.config_json().dump();
  compare_stored(f, stored, r);
  return r;
}

}  // namespace

std::vector<Comparison> check_fixture(const SafetensorsFile& stored, const FixtureSpec& spec) {
  return check_against_definition(stored, spec).comparisons;
}

bool FixtureReport::passed() const {
  return error.empty() && !comparisons.empty() &&
         std::all_of(comparisons.begin(), comparisons.end(), [](const Comparison& c) { return c.passed(); });
}

Comparison FixtureReport::worst() const {
  Comparison w;
  w.bound = bounds::kExact;
  for (const Comparison& c : comparisons)
    if (w.name.empty() || severity(c) > severity(w)) w = c;
  return w;
}

std::string FixtureReport::element(const Comparison& c) const {
  const auto it = views.find(c.name);
  if (it == views.end()) return "[" + std::to_string(c.worst_row) + ", " + std::to_string(c.worst_col) + "]";
  const std::vector<int64_t>& shape = it->second.first;
  int64_t flat = int64_t(c.worst_row) * it->second.second + int64_t(c.worst_col);
  std::vector<int64_t> index(shape.size());
  for (std::size_t i = shape.size(); i-- > 0;) {
    index[i] = shape[i] > 0 ? flat % shape[i] : 0;
    flat = shape[i] > 0 ? flat / shape[i] : 0;
  }
  return shape_str(index);
}

std::string FixtureReport::describe(const Comparison& c) const {
  const auto dt = dtypes.find(c.name);
  const std::string dtype = dt == dtypes.end() ? "" : " " + dt->second;
  char buf[512];
  if (!c.finite)
    std::snprintf(buf, sizeof buf, "%s%s: NaN or Inf at %s (file %.9g, reference %.9g) FAIL", c.name.c_str(),
                  dtype.c_str(), element(c).c_str(), c.worst_got, c.worst_ref);
  else
    std::snprintf(buf, sizeof buf, "%s%s: rel %.2e %s %.0e, max abs %.2e at %s (file %.9g, reference %.9g) %s",
                  c.name.c_str(), dtype.c_str(), c.rel_norm, c.rel_norm <= c.bound ? "<=" : ">", c.bound, c.max_abs,
                  element(c).c_str(), c.worst_got, c.worst_ref, c.passed() ? "ok" : "FAIL");
  return buf;
}

FixtureReport check_fixture_file(const std::string& dir, const FixtureSpec& spec) {
  const auto start = std::chrono::steady_clock::now();
  FixtureReport r;
  const std::string path = (fs::path(dir) / spec.file_name()).string();
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    r.file = spec.file_name();
    r.error = path + ": missing (tm-fixtures --out " + dir + " writes it)";
    return r;
  }
  try {
    r = check_against_definition(read_safetensors(path), spec);
  } catch (const SafetensorsError& e) {
    r.error = e.what();
  }
  r.file = spec.file_name();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

FixtureReport check_fixture_path(const std::string& path) {
  const auto start = std::chrono::steady_clock::now();
  FixtureReport r;
  try {
    const SafetensorsFile stored = read_safetensors(path);
    const RecomputedFixture f = recompute_by_schema(stored, fs::path(path).stem().string());
    r.kind = f.spec.kind;
    r.config = f.spec.config_json().dump();
    compare_stored(f, stored, r);
    for (const auto& kv : stored.tensors)
      if (!f.file.has(kv.first)) r.ignored.push_back(kv.first);
    if (r.comparisons.empty())
      throw SafetensorsError(stored.source + ": nothing to compare: the file holds no output, stage or gradient of kind '" +
                             r.kind + "' (fixtures/SCHEMA.md)");
  } catch (const SafetensorsError& e) {
    r.comparisons.clear();
    r.error = e.what();
  }
  r.file = fs::path(path).filename().string();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

std::vector<FixtureReport> check_fixture_dir(const std::string& dir, bool require_catalogue) {
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) throw SafetensorsError(dir + ": cannot read the fixtures directory: " + ec.message());
  std::set<std::string> files;
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (ec) throw SafetensorsError(dir + ": cannot read the fixtures directory: " + ec.message());
    if (it->path().extension() == ".safetensors") files.insert(it->path().filename().string());
  }
  std::vector<FixtureReport> reports;
  for (const FixtureSpec& spec : fixture_specs()) {
    if (files.erase(spec.file_name()) || require_catalogue) reports.push_back(check_fixture_file(dir, spec));
  }
  for (const std::string& file : files) reports.push_back(check_fixture_path((fs::path(dir) / file).string()));
  std::sort(reports.begin(), reports.end(), [](const FixtureReport& a, const FixtureReport& b) { return a.file < b.file; });
  return reports;
}

}  // namespace transmamba
