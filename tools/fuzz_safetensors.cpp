// libFuzzer target for the safetensors parser (fixture_format/safetensors.cpp); built and run by tools/run-fuzz.sh.
//
// Every input must either parse or throw transmamba::SafetensorsError (anything else escaping, a crash or a
// sanitizer report is a finding). What parses must survive serialize -> parse unchanged, byte for byte.
//
// Built with -DTM_FUZZ_SEED_GENERATOR instead, this file is a small program that writes a seed corpus of
// valid files: `fuzz_seed_gen DIR`.
#include "fixture_format/safetensors.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

using transmamba::SafetensorsError;
using transmamba::SafetensorsFile;

#ifndef TM_FUZZ_SEED_GENERATOR

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  SafetensorsFile f;
  try {
    f = transmamba::parse_safetensors(data, size, "fuzz-input");
  } catch (const SafetensorsError&) {
    return 0;  // cleanly rejected
  }
  // Accepted: the accessors work and the round trip is exact.
  for (const auto& [name, t] : f.tensors) {
    if (t.dtype == "I64" || t.dtype == "I32") {
      if (f.ints(name).size() != static_cast<size_t>(t.numel())) std::abort();
    } else {
      if (f.doubles(name).size() != static_cast<size_t>(t.numel())) std::abort();
      (void)f.matrix(name);
    }
  }
  const std::vector<uint8_t> bytes = transmamba::serialize_safetensors(f);
  const SafetensorsFile g = transmamba::parse_safetensors(bytes.data(), bytes.size(), "fuzz-roundtrip");
  if (g != f) std::abort();
  if (transmamba::serialize_safetensors(g) != bytes) std::abort();
  return 0;
}

#else  // seed generator

static void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  FILE* fp = std::fopen(path.c_str(), "wb");
  if (!fp || std::fwrite(b.data(), 1, b.size(), fp) != b.size() || std::fclose(fp) != 0) {
    std::perror(path.c_str());
    std::exit(1);
  }
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  std::vector<SafetensorsFile> seeds(5);
  seeds[0].put_doubles("x", {1.0, 2.0, 3.0, 4.0}, {2, 2});
  seeds[1].metadata["format"] = "1";
  seeds[1].metadata["seed"] = "42";
  seeds[1].put_doubles("a", {0.5}, {});
  seeds[1].put_doubles("b", {1.0, -1.0, 2.0}, {3}, "F32");
  seeds[1].put_ints("c", {7, -7}, {1, 2}, "I32");
  seeds[2].put_doubles("h", {0.25, 0.5, 0.75, 1.0, 1.25, 1.5}, {1, 2, 3}, "BF16");
  seeds[2].put_ints("n", {1, 2, 3}, {3});
  seeds[2].put_doubles("z", {}, {0, 4});
  seeds[3].metadata["config"] = R"({"T": 4, "D": 8})";
  // seeds[4]: empty file "{}" padded
  for (size_t i = 0; i < seeds.size(); ++i)
    write_bytes(dir + "/seed" + std::to_string(i) + ".safetensors", transmamba::serialize_safetensors(seeds[i]));
  std::printf("%zu seeds written to %s\n", seeds.size(), dir.c_str());
  return 0;
}

#endif
