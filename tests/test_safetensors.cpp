// Tests of fixture_format/safetensors: round trips, typed accessors, every validation error, truncation, atomic writes.
#include "fixture_format/safetensors.hpp"

#include <catch2/catch.hpp>
#include <rapidcheck/catch.h>

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include "tests/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace transmamba;
using Catch::Matchers::Contains;

namespace {

const char* const kSrc = "fixtures/bad.safetensors";

// A file from a header text and a data buffer (the header is used verbatim, no padding).
std::vector<uint8_t> raw_file(const std::string& header, const std::vector<uint8_t>& buffer = {}) {
  std::vector<uint8_t> out(8 + header.size() + buffer.size());
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(n >> (8 * i));
  for (std::size_t i = 0; i < header.size(); ++i) out[8 + i] = static_cast<uint8_t>(header[i]);
  for (std::size_t i = 0; i < buffer.size(); ++i) out[8 + header.size() + i] = buffer[i];
  return out;
}

// The message of the SafetensorsError that parsing throws; fails the test when nothing or something else is thrown.
std::string parse_error(const std::vector<uint8_t>& bytes) {
  try {
    parse_safetensors(bytes.data(), bytes.size(), kSrc);
  } catch (const SafetensorsError& e) {
    return e.what();
  }
  FAIL("no SafetensorsError thrown");
  return "";
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_text(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary);
  out << s;
}

SafetensorsFile small_file() {
  SafetensorsFile f;
  f.metadata["format"] = "1";
  f.metadata["config"] = R"({"T": 4})";
  f.put_doubles("x", {1.0, -2.5, 3.25, 0.0, 1e-300, 7.0}, {2, 3}, "F64");
  f.put_doubles("h", {0.5, 1.5}, {2}, "BF16");
  f.put_ints("steps", {3}, {}, "I32");
  return f;
}

const std::vector<std::string> kDtypes = {"F64", "F32", "BF16", "I64", "I32"};

// Any ASCII printable string, sometimes with a multi-byte UTF-8 character.
rc::Gen<std::string> gen_text() {
  return rc::gen::oneOf(rc::gen::container<std::string>(rc::gen::inRange<char>(32, 127)),
                        rc::gen::map(rc::gen::container<std::string>(rc::gen::inRange<char>(32, 127)),
                                     [](std::string s) { return s + "\xc3\xa9\xe2\x88\x91"; }));
}

}  // namespace

TEST_CASE("safetensors: dtype sizes", "[safetensors]") {
  CHECK(safetensors_dtype_size("F64") == 8);
  CHECK(safetensors_dtype_size("F32") == 4);
  CHECK(safetensors_dtype_size("BF16") == 2);
  CHECK(safetensors_dtype_size("I64") == 8);
  CHECK(safetensors_dtype_size("I32") == 4);
  CHECK(safetensors_dtype_size("F16") == 0);
  CHECK(safetensors_dtype_size("") == 0);
}

TEST_CASE("safetensors: round trip of random files", "[safetensors]") {
  rc::prop("serialize -> parse gives the same tensors, metadata and bytes", [] {
    SafetensorsFile f;
    const auto meta = *rc::gen::container<std::map<std::string, std::string>>(
        rc::gen::resize(8, gen_text()), rc::gen::resize(20, gen_text()));
    f.metadata = meta;
    const int count = *rc::gen::inRange(0, 6);
    for (int i = 0; i < count; ++i) {
      std::string name = *rc::gen::resize(10, gen_text());
      if (name == "__metadata__") name += "_";
      SafetensorsTensor t;
      t.dtype = *rc::gen::elementOf(kDtypes);
      const int rank = *rc::gen::inRange(0, 5);  // 0-d scalars included
      for (int r = 0; r < rank; ++r) t.shape.push_back(*rc::gen::inRange<int64_t>(0, 5));  // empty dims included
      const std::size_t n = static_cast<std::size_t>(t.numel()) * safetensors_dtype_size(t.dtype);
      t.bytes = *rc::gen::container<std::vector<uint8_t>>(n, rc::gen::arbitrary<uint8_t>());
      f.put(name, t);
    }
    const std::vector<uint8_t> bytes = serialize_safetensors(f);
    uint64_t hlen = 0;
    for (int i = 0; i < 8; ++i) hlen |= static_cast<uint64_t>(bytes[i]) << (8 * i);
    RC_ASSERT(hlen % 8 == 0);
    std::size_t data_bytes = 0;
    for (const auto& kv : f.tensors) data_bytes += kv.second.bytes.size();
    RC_ASSERT(bytes.size() == 8 + hlen + data_bytes);

    const SafetensorsFile g = parse_safetensors(bytes.data(), bytes.size(), "mem");
    RC_ASSERT(g == f);
    RC_ASSERT(g.metadata == f.metadata);
    RC_ASSERT(serialize_safetensors(g) == bytes);
  });
}

TEST_CASE("safetensors: disk round trip and exact header text", "[safetensors]") {
  TempDir dir;
  const fs::path p = dir.path / "a.safetensors";
  const SafetensorsFile f = small_file();
  write_safetensors_atomic(p.string(), f);
  const SafetensorsFile g = read_safetensors(p.string());
  CHECK(g == f);
  CHECK(g.source == p.string());
  CHECK(dir.entries() == std::vector<std::string>{"a.safetensors"});

  SafetensorsFile one;
  one.metadata["k"] = "v";
  one.put_doubles("a", {1.0}, {}, "F64");
  const std::vector<uint8_t> bytes = serialize_safetensors(one);
  const std::string expect_json = R"({"__metadata__":{"k":"v"},"a":{"dtype":"F64","shape":[],"data_offsets":[0,8]}})";
  const std::size_t padded = (expect_json.size() + 7) / 8 * 8;
  REQUIRE(bytes.size() == 8 + padded + 8);
  CHECK(bytes[0] == padded);
  CHECK(std::string(bytes.begin() + 8, bytes.begin() + 8 + padded) ==
        expect_json + std::string(padded - expect_json.size(), ' '));
  CHECK(std::vector<uint8_t>(bytes.end() - 8, bytes.end()) ==
        std::vector<uint8_t>{0, 0, 0, 0, 0, 0, 0xf0, 0x3f});  // 1.0 little-endian

  SafetensorsFile empty;
  const std::vector<uint8_t> eb = serialize_safetensors(empty);
  CHECK(eb.size() == 16);
  CHECK(parse_safetensors(eb.data(), eb.size(), "e") == empty);
}

TEST_CASE("safetensors: typed accessors", "[safetensors]") {
  SafetensorsFile f;
  f.source = "acc.safetensors";
  const std::vector<double> v = {1.0, -0.5, 3.0e10, 1.0 / 3.0, -0.0, 65504.0};
  f.put_doubles("f64", v, {2, 3});
  f.put_doubles("f32", v, {6}, "F32");
  f.put_doubles("bf16", v, {3, 2}, "BF16");
  f.put_ints("i64", {-(int64_t(1) << 62), 0, 7}, {3});
  f.put_ints("i32", {std::numeric_limits<int32_t>::min(), 5}, {1, 2}, "I32");

  CHECK(f.doubles("f64") == v);
  const std::vector<double> f32 = f.doubles("f32");
  for (std::size_t i = 0; i < v.size(); ++i) CHECK(f32[i] == static_cast<double>(static_cast<float>(v[i])));
  const std::vector<double> bf = f.doubles("bf16");
  CHECK(bf[0] == 1.0);
  CHECK(bf[1] == -0.5);
  CHECK(bf[3] == 0.333984375);  // 1/3 rounded to 8 significant bits
  CHECK(std::signbit(bf[4]));
  CHECK(bf[5] == 65536.0);  // 65504 = 1.99902 * 2^15 rounds up
  CHECK(f.ints("i64") == std::vector<int64_t>{-(int64_t(1) << 62), 0, 7});
  CHECK(f.ints("i32") == std::vector<int64_t>{std::numeric_limits<int32_t>::min(), 5});
  CHECK(f.doubles("i32", /*allow_int=*/true) == std::vector<double>{-2147483648.0, 5.0});

  CHECK_THROWS_WITH(f.doubles("i64"), Contains("acc.safetensors") && Contains("tensor 'i64'") && Contains("float"));
  CHECK_THROWS_WITH(f.ints("f64"), Contains("acc.safetensors") && Contains("tensor 'f64'") && Contains("integer"));
  CHECK_THROWS_WITH(f.at("nope"), Contains("acc.safetensors") && Contains("no tensor 'nope'"));
  CHECK_THROWS_WITH(f.meta("nope"), Contains("acc.safetensors") && Contains("'nope'"));
  CHECK_THROWS_WITH(f.put_ints("big", {int64_t(1) << 40}, {1}, "I32"), Contains("tensor 'big'") && Contains("I32"));
  CHECK_THROWS_WITH(f.put_doubles("n", {1.0, 2.0}, {3}), Contains("tensor 'n'") && Contains("[3]"));
  CHECK_THROWS_WITH(f.put_doubles("n", {1.0}, {1}, "I64"), Contains("tensor 'n'"));
  CHECK_THROWS_AS(f.put("__metadata__", f.at("f64")), SafetensorsError);

  // Matrices: [T, H, p] reads as [T, H*p]; scalars as 1x1; vectors as columns.
  SafetensorsMatrix m(2, 3);
  m << 1, 2, 3, 4, 5, 6;
  f.put_matrix("m", m);
  CHECK(f.at("m").shape == std::vector<int64_t>{2, 3});
  CHECK(f.matrix("m") == m);
  f.put_matrix("m3", m, {2, 1, 3});
  CHECK(f.matrix("m3") == m);
  CHECK(f.matrix("m3", 3, 2).row(0) == Eigen::RowVector2d(1, 2));
  CHECK_THROWS_WITH(f.matrix("m3", 4, 2), Contains("tensor 'm3'") && Contains("[4, 2]"));
  CHECK_THROWS_WITH(f.put_matrix("bad", m, {5}), Contains("tensor 'bad'"));
  Eigen::MatrixXd colmajor = m;  // a column-major argument is accepted too
  f.put_matrix("cm", colmajor);
  CHECK(f.doubles("cm") == std::vector<double>{1, 2, 3, 4, 5, 6});
  CHECK(f.matrix("f64").rows() == 2);
  f.put_doubles("s", {4.0}, {});
  CHECK(f.matrix("s") == SafetensorsMatrix::Constant(1, 1, 4.0));
  CHECK(f.matrix("f32").cols() == 1);
  f.put_doubles("e", {}, {0, 4});
  CHECK(f.matrix("e").rows() == 0);
  CHECK(f.matrix("e").cols() == 4);
}

TEST_CASE("safetensors: BF16 and F32 conversion round to nearest even", "[safetensors]") {
  auto bf16_neighbours = [](double d, double& lo, double& hi) {
    // Bracket d by consecutive bf16 values (d finite, |d| < 3e38).
    float f = static_cast<float>(d);
    uint32_t b;
    std::memcpy(&b, &f, 4);
    b &= 0xFFFF0000u;
    float t;
    std::memcpy(&t, &b, 4);
    double a = t;
    uint32_t b2 = b + 0x10000u;
    std::memcpy(&t, &b2, 4);
    double c = t;
    uint32_t b0 = b - 0x10000u;
    std::memcpy(&t, &b0, 4);
    double z = t;
    // pick the bracketing pair among z, a, c
    if ((a <= d && d <= c) || (c <= d && d <= a)) lo = a, hi = c;
    else lo = z, hi = a;
  };
  rc::prop("put_doubles(BF16) gives the nearest bf16 value, ties to even", [&] {
    const double mant = *rc::gen::inRange(-1000000000, 1000000000) / 1e9;
    const int ex = *rc::gen::inRange(-130, 127);
    const double d = std::ldexp(1.0 + std::fabs(mant), ex) * (mant < 0 ? -1 : 1);
    SafetensorsFile f;
    f.put_doubles("b", {d}, {}, "BF16");
    const double r = f.doubles("b")[0];
    double lo = 0, hi = 0;
    bf16_neighbours(d, lo, hi);
    RC_ASSERT((r == lo || r == hi));
    RC_ASSERT(std::fabs(r - d) <= std::fabs(lo - d));
    RC_ASSERT(std::fabs(r - d) <= std::fabs(hi - d));
  });
  SafetensorsFile f;
  f.put_doubles("b", {1.0 + std::ldexp(1.0, -8), 1.0 + 3 * std::ldexp(1.0, -8),
                      1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -40), 1e300, -1e300, NAN, 3.0e38},
                {7}, "BF16");
  const std::vector<double> r = f.doubles("b");
  CHECK(r[0] == 1.0);                            // tie -> even
  CHECK(r[1] == 1.0 + std::ldexp(1.0, -6));      // tie -> even (up)
  CHECK(r[2] == 1.0 + std::ldexp(1.0, -7));      // just above the tie (double rounding via float would give 1.0)
  CHECK(std::isinf(r[3]));
  CHECK(r[3] > 0);
  CHECK(std::isinf(r[4]));
  CHECK(r[4] < 0);
  CHECK(std::isnan(r[5]));
  CHECK(std::isfinite(r[6]));
  // Above FLT_MAX (ulp 2^104): below the tie at FLT_MAX + 2^103 stays FLT_MAX, the tie and above give inf.
  const double fmax = std::numeric_limits<float>::max();
  f.put_doubles("f", {1e300, -1e300, fmax + std::ldexp(1.0, 102), fmax + std::ldexp(1.0, 103), -fmax, 0.1}, {6},
                "F32");
  const std::vector<double> q = f.doubles("f");
  CHECK(std::isinf(q[0]));
  CHECK(std::isinf(q[1]));
  CHECK(q[1] < 0);
  CHECK(q[2] == fmax);
  CHECK(std::isinf(q[3]));
  CHECK(q[4] == -fmax);
  CHECK(q[5] == static_cast<double>(0.1f));
}

TEST_CASE("safetensors: validation errors name the file and the tensor or field", "[safetensors]") {
  const std::vector<uint8_t> b32(32, 0), b8(8, 0), b16(16, 0);
  const auto hdr = [](const std::string& entries) { return "{" + entries + "}"; };

  SECTION("shorter than 8 bytes") {
    for (std::size_t n = 0; n < 8; ++n)
      CHECK_THAT(parse_error(std::vector<uint8_t>(n, 0)), Contains(kSrc) && Contains("shorter than"));
  }
  SECTION("header length larger than the file") {
    std::vector<uint8_t> f = raw_file("{}");
    f[0] = 200;
    CHECK_THAT(parse_error(f), Contains(kSrc) && Contains("header length 200") && Contains("larger than"));
  }
  SECTION("absurd header length") {
    std::vector<uint8_t> f = raw_file("{}");
    f[5] = 1;  // 2^40 + 2
    CHECK_THAT(parse_error(f), Contains(kSrc) && Contains("absurd"));
    std::vector<uint8_t> g = raw_file("{}");
    for (int i = 0; i < 8; ++i) g[i] = 0xff;
    CHECK_THAT(parse_error(g), Contains(kSrc) && Contains("absurd"));
  }
  SECTION("JSON that does not parse") {
    CHECK_THAT(parse_error(raw_file("{\"x\": ")), Contains(kSrc) && Contains("not valid JSON"));
    CHECK_THAT(parse_error(raw_file("")), Contains(kSrc) && Contains("not valid JSON"));
    CHECK_THAT(parse_error(raw_file(std::string("{}\0", 3))), Contains(kSrc) && Contains("NUL byte at offset 2"));
    CHECK_THAT(parse_error(raw_file(std::string("{}\0garbage", 10))), Contains(kSrc) && Contains("NUL"));
    CHECK_THAT(parse_error(raw_file("\xEF\xBB\xBF{}")), Contains(kSrc) && Contains("byte order mark"));
    CHECK_THAT(parse_error(raw_file("{\"\xff\": 1}")), Contains(kSrc) && Contains("not valid JSON"));
    CHECK_THAT(parse_error(raw_file(std::string(100, '[') + std::string(100, ']'))),
               Contains(kSrc) && Contains("deeper"));
  }
  SECTION("JSON that is not an object") {
    CHECK_THAT(parse_error(raw_file("[1, 2]")), Contains(kSrc) && Contains("not an object"));
    CHECK_THAT(parse_error(raw_file("3")), Contains(kSrc) && Contains("not an object"));
  }
  SECTION("tensor entry that is not an object") {
    CHECK_THAT(parse_error(raw_file(hdr(R"("x": [1, 2])"))),
               Contains(kSrc) && Contains("tensor 'x'") && Contains("not an object"));
  }
  SECTION("missing fields") {
    CHECK_THAT(parse_error(raw_file(hdr(R"("x": {"shape": [], "data_offsets": [0, 8]})"), b8)),
               Contains(kSrc) && Contains("tensor 'x'") && Contains("'dtype' is missing"));
    CHECK_THAT(parse_error(raw_file(hdr(R"("x": {"dtype": "F64", "data_offsets": [0, 8]})"), b8)),
               Contains(kSrc) && Contains("tensor 'x'") && Contains("'shape' is missing"));
    CHECK_THAT(parse_error(raw_file(hdr(R"("x": {"dtype": "F64", "shape": []})"), b8)),
               Contains(kSrc) && Contains("tensor 'x'") && Contains("'data_offsets' is missing"));
  }
  SECTION("wrong-typed fields") {
    CHECK_THAT(parse_error(raw_file(hdr(R"("x": {"dtype": 8, "shape": [], "data_offsets": [0, 8]})"), b8)),
               Contains(kSrc) && Contains("tensor 'x'") && Contains("'dtype' is number"));
    CHECK_THAT(parse_error(raw_file(hdr(R"("x": {"dtype": "F64", "shape": "1", "data_offsets": [0, 8]})"), b8)),
               Contains(kSrc) && Contains("tensor 'x'") && Contains("'shape' is string"));
    CHECK_THAT(parse_error(raw_file(hdr(R"("x": {"dtype": "F64", "shape": [1.0], "data_offsets": [0, 8]})"), b8)),
               Contains(kSrc) && Contains("tensor 'x'") && Contains("field 'shape': dim 0"));
    CHECK_THAT(parse_error(raw_file(hdr(R"("x": {"dtype": "F64", "shape": [[1]], "data_offsets": [0, 8]})"), b8)),
               Contains(kSrc) && Contains("tensor 'x'") && Contains("field 'shape': dim 0"));
    CHECK_THAT(parse_error(raw_file(hdr(R"("x": {"dtype": "F64", "shape": [], "data_offsets": [0]})"), b8)),
               Contains(kSrc) && Contains("tensor 'x'") && Contains("'data_offsets'"));
    CHECK_THAT(parse_error(raw_file(hdr(R"("x": {"dtype": "F64", "shape": [], "data_offsets": [0, "8"]})"), b8)),
               Contains(kSrc) && Contains("tensor 'x'") && Contains("'data_offsets'"));
    CHECK_THAT(parse_error(raw_file(hdr(R"("x": {"dtype": "F64", "shape": [], "data_offsets": [0, 8, 8]})"), b8)),
               Contains(kSrc) && Contains("tensor 'x'") && Contains("'data_offsets'"));
    CHECK_THAT(parse_error(raw_file(hdr(R"("x": {"dtype": "F64", "shape": [], "data_offsets": [-1, 8]})"), b8)),
               Contains(kSrc) && Contains("tensor 'x'") && Contains("'data_offsets'"));
    CHECK_THAT(parse_error(raw_file(hdr(R"("x": {"dtype": "F64", "shape": [], "data_offsets": {"a": 1}})"), b8)),
               Contains(kSrc) && Contains("tensor 'x'") && Contains("'data_offsets'"));
  }
  SECTION("unexpected field") {
    CHECK_THAT(
        parse_error(raw_file(hdr(R"("x": {"dtype": "F64", "shape": [], "data_offsets": [0, 8], "y": 1})"), b8)),
        Contains(kSrc) && Contains("tensor 'x'") && Contains("unexpected field 'y'"));
  }
  SECTION("unknown dtype") {
    CHECK_THAT(parse_error(raw_file(hdr(R"("x": {"dtype": "F16", "shape": [4], "data_offsets": [0, 8]})"), b8)),
               Contains(kSrc) && Contains("tensor 'x'") && Contains("unsupported dtype 'F16'"));
  }
  SECTION("negative, huge and overflowing dims") {
    CHECK_THAT(parse_error(raw_file(hdr(R"("x": {"dtype": "F64", "shape": [-1], "data_offsets": [0, 8]})"), b8)),
               Contains(kSrc) && Contains("tensor 'x'") && Contains("dim 0") && Contains("non-negative"));
    CHECK_THAT(parse_error(raw_file(hdr(R"("x": {"dtype": "F64", "shape": [1, 9223372036854775808],
                                        "data_offsets": [0, 8]})"),
                                    b8)),
               Contains(kSrc) && Contains("tensor 'x'") && Contains("dim 1") && Contains("too large"));
    CHECK_THAT(parse_error(raw_file(hdr(R"("x": {"dtype": "F64", "shape": [4294967296, 4294967296],
                                        "data_offsets": [0, 8]})"),
                                    b8)),
               Contains(kSrc) && Contains("tensor 'x'") && Contains("overflows"));
    CHECK_THAT(parse_error(raw_file(hdr(R"("x": {"dtype": "F64", "shape": [1152921504606846976, 8],
                                        "data_offsets": [0, 8]})"),
                                    b8)),
               Contains(kSrc) && Contains("tensor 'x'") && Contains("overflows"));
    CHECK_THAT(parse_error(raw_file(hdr(R"("x": {"dtype": "F64", "shape": [99999999999999999999],
                                        "data_offsets": [0, 8]})"),
                                    b8)),
               Contains(kSrc) && Contains("tensor 'x'") && Contains("dim 0"));
  }
  SECTION("offsets: begin > end, outside the buffer, wrong byte count") {
    CHECK_THAT(parse_error(raw_file(hdr(R"("x": {"dtype": "F64", "shape": [], "data_offsets": [8, 0]})"), b8)),
               Contains(kSrc) && Contains("tensor 'x'") && Contains("begin > end"));
    CHECK_THAT(parse_error(raw_file(hdr(R"("x": {"dtype": "F64", "shape": [], "data_offsets": [8, 16]})"), b8)),
               Contains(kSrc) && Contains("tensor 'x'") && Contains("outside the 8-byte data buffer"));
    CHECK_THAT(parse_error(raw_file(hdr(R"("x": {"dtype": "F64", "shape": [],
                                        "data_offsets": [0, 18446744073709551615]})"),
                                    b8)),
               Contains(kSrc) && Contains("tensor 'x'") && Contains("outside"));
    CHECK_THAT(parse_error(raw_file(hdr(R"("x": {"dtype": "F64", "shape": [2, 2], "data_offsets": [0, 12]})"),
                                    std::vector<uint8_t>(12))),
               Contains("fixtures/bad.safetensors: tensor 'x': data_offsets [0, 12] hold 12 bytes but shape [2, 2] "
                        "of F64 needs 32"));
  }
  SECTION("overlapping tensors") {
    CHECK_THAT(parse_error(raw_file(hdr(R"("a": {"dtype": "F64", "shape": [2], "data_offsets": [0, 16]},
                                           "b": {"dtype": "F64", "shape": [2], "data_offsets": [8, 24]})"),
                                    std::vector<uint8_t>(24))),
               Contains(kSrc) && Contains("tensor 'b'") && Contains("overlap tensor 'a'"));
    CHECK_THAT(parse_error(raw_file(hdr(R"("a": {"dtype": "F64", "shape": [2], "data_offsets": [0, 16]},
                                           "b": {"dtype": "F64", "shape": [0], "data_offsets": [8, 8]})"),
                                    b16)),
               Contains(kSrc) && Contains("tensor 'b'") && Contains("overlap"));
    CHECK_THAT(parse_error(raw_file(hdr(R"("a": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]},
                                           "b": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]})"),
                                    b8)),
               Contains(kSrc) && Contains("overlap"));
  }
  SECTION("gaps and trailing bytes") {
    CHECK_THAT(parse_error(raw_file(hdr(R"("a": {"dtype": "F64", "shape": [1], "data_offsets": [8, 16]})"), b16)),
               Contains(kSrc) && Contains("tensor 'a'") && Contains("gap"));
    CHECK_THAT(parse_error(raw_file(hdr(R"("a": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]},
                                           "b": {"dtype": "F64", "shape": [1], "data_offsets": [16, 24]})"),
                                    std::vector<uint8_t>(24))),
               Contains(kSrc) && Contains("tensor 'b'") && Contains("gap"));
    CHECK_THAT(parse_error(raw_file(hdr(R"("a": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]})"), b16)),
               Contains(kSrc) && Contains("data buffer") && Contains("trailing"));
    CHECK_THAT(parse_error(raw_file("{}", b8)), Contains(kSrc) && Contains("trailing"));
  }
  SECTION("__metadata__ not an object of strings") {
    CHECK_THAT(parse_error(raw_file(hdr(R"("__metadata__": "v")"))),
               Contains(kSrc) && Contains("__metadata__") && Contains("not an object"));
    CHECK_THAT(parse_error(raw_file(hdr(R"("__metadata__": null)"))),
               Contains(kSrc) && Contains("__metadata__") && Contains("not an object"));
    CHECK_THAT(parse_error(raw_file(hdr(R"("__metadata__": {"seed": 3})"))),
               Contains(kSrc) && Contains("__metadata__") && Contains("'seed'") && Contains("not a string"));
  }
  SECTION("duplicates") {
    CHECK_THAT(parse_error(raw_file(hdr(R"("a": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]},
                                           "a": {"dtype": "F64", "shape": [1], "data_offsets": [8, 16]})"),
                                    b16)),
               Contains(kSrc) && Contains("duplicate tensor name 'a'"));
    CHECK_THAT(parse_error(raw_file(hdr(R"("a": {"dtype": "F64", "dtype": "F32", "shape": [1],
                                                 "data_offsets": [0, 8]})"),
                                    b8)),
               Contains(kSrc) && Contains("tensor 'a'") && Contains("duplicate field 'dtype'"));
    CHECK_THAT(parse_error(raw_file(hdr(R"("__metadata__": {"k": "1", "k": "2"})"))),
               Contains(kSrc) && Contains("__metadata__") && Contains("duplicate key 'k'"));
    CHECK_THAT(parse_error(raw_file(hdr(R"("__metadata__": {}, "__metadata__": {})"))),
               Contains(kSrc) && Contains("duplicate '__metadata__'"));
  }
  SECTION("a valid hand-written file with padding and a 0-d tensor parses") {
    const std::vector<uint8_t> f =
        raw_file(hdr(R"("a": {"dtype": "I32", "shape": [], "data_offsets": [0, 4]},
                        "z": {"dtype": "BF16", "shape": [0, 3], "data_offsets": [4, 4]})") + "      ",
                 {7, 0, 0, 0});
    const SafetensorsFile g = parse_safetensors(f.data(), f.size(), kSrc);
    CHECK(g.ints("a") == std::vector<int64_t>{7});
    CHECK(g.doubles("z").empty());
  }
}

TEST_CASE("safetensors: writer rejects invalid tensors", "[safetensors]") {
  SafetensorsFile f;
  f.tensors["x"] = SafetensorsTensor{"F64", {2, 2}, std::vector<uint8_t>(12)};
  CHECK_THROWS_WITH(serialize_safetensors(f), Contains("<memory>") && Contains("tensor 'x'") && Contains("needs 32"));
  f.tensors["x"] = SafetensorsTensor{"F16", {2}, std::vector<uint8_t>(4)};
  CHECK_THROWS_WITH(serialize_safetensors(f), Contains("tensor 'x'") && Contains("unsupported dtype 'F16'"));
  f.tensors["x"] = SafetensorsTensor{"F64", {-1}, {}};
  CHECK_THROWS_WITH(serialize_safetensors(f), Contains("tensor 'x'") && Contains("negative"));
  f.tensors.clear();
  f.tensors["__metadata__"] = SafetensorsTensor{"F64", {}, std::vector<uint8_t>(8)};
  CHECK_THROWS_AS(serialize_safetensors(f), SafetensorsError);
  f.tensors.clear();
  f.metadata["k"] = "\xff";
  CHECK_THROWS_WITH(serialize_safetensors(f), Contains("UTF-8"));
}

TEST_CASE("safetensors: every truncation of a valid file fails cleanly", "[safetensors]") {
  const std::vector<uint8_t> full = serialize_safetensors(small_file());
  REQUIRE(parse_safetensors(full.data(), full.size(), "t") == small_file());
  for (std::size_t n = 0; n < full.size(); ++n) {
    std::vector<uint8_t> cut(full.begin(), full.begin() + n);  // exact-size heap block: ASan sees any overread
    INFO("length " << n << " of " << full.size());
    try {
      parse_safetensors(cut.data(), cut.size(), "cut.safetensors");
      FAIL("truncated file parsed");
    } catch (const SafetensorsError& e) {
      CHECK_THAT(std::string(e.what()), Contains("cut.safetensors: "));
    }
  }
  // Extra bytes at the end fail too.
  std::vector<uint8_t> longer = full;
  longer.push_back(0);
  CHECK_THAT(parse_error(longer), Contains("trailing"));
}

TEST_CASE("safetensors: read errors name the path", "[safetensors]") {
  TempDir dir;
  CHECK_THROWS_WITH(read_safetensors((dir.path / "missing.safetensors").string()),
                    Contains("missing.safetensors") && Contains("cannot open"));
  CHECK_THROWS_WITH(read_safetensors(dir.path.string()), Contains(dir.path.string()) && Contains("regular"));
  write_text(dir.path / "short.safetensors", "abc");
  CHECK_THROWS_WITH(read_safetensors((dir.path / "short.safetensors").string()),
                    Contains("short.safetensors") && Contains("shorter than"));
}

TEST_CASE("safetensors: atomic write leaves the target untouched on failure", "[safetensors]") {
  TempDir dir;
  const fs::path target = dir.path / "t.safetensors";
  write_text(target, "old contents");
  const SafetensorsFile good = small_file();

  SECTION("invalid tensor: nothing is written") {
    SafetensorsFile bad = good;
    bad.tensors["x"].bytes.pop_back();
    CHECK_THROWS_WITH(write_safetensors_atomic(target.string(), bad),
                      Contains(target.string()) && Contains("tensor 'x'"));
    CHECK(read_text(target) == "old contents");
    CHECK(dir.entries() == std::vector<std::string>{"t.safetensors"});
  }
  SECTION("the target is a directory") {
    const fs::path d = dir.path / "d.safetensors";
    fs::create_directory(d);
    CHECK_THROWS_WITH(write_safetensors_atomic(d.string(), good), Contains(d.string()) && Contains("rename"));
    CHECK(fs::is_directory(d));
    CHECK(fs::is_empty(d));
    CHECK(dir.entries() == std::vector<std::string>{"d.safetensors", "t.safetensors"});
  }
  SECTION("the directory does not exist") {
    const fs::path p = dir.path / "no" / "t.safetensors";
    CHECK_THROWS_WITH(write_safetensors_atomic(p.string(), good), Contains(p.string()) && Contains("temp file"));
    CHECK(dir.entries() == std::vector<std::string>{"t.safetensors"});
  }
  SECTION("the temp file's path is taken by a directory") {
    const fs::path tmp = dir.path / ("t.safetensors.tmp-" + std::to_string(::getpid()));
    fs::create_directory(tmp);
    CHECK_THROWS_WITH(write_safetensors_atomic(target.string(), good), Contains("temp file"));
    CHECK(read_text(target) == "old contents");
    CHECK(fs::is_directory(tmp));  // not ours: left alone
  }
  SECTION("a write fails half way (file size limit)") {
    struct rlimit old {};
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
    struct rlimit lim = old;
    lim.rlim_cur = 64;  // smaller than the file
    void (*old_handler)(int) = std::signal(SIGXFSZ, SIG_IGN);
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &lim) == 0);
    bool threw = false;
    std::string msg;
    try {
      write_safetensors_atomic(target.string(), good);
    } catch (const SafetensorsError& e) {
      threw = true;
      msg = e.what();
    }
    ::setrlimit(RLIMIT_FSIZE, &old);
    std::signal(SIGXFSZ, old_handler);
    CHECK(threw);
    CHECK_THAT(msg, Contains(target.string()) && Contains("write"));
    CHECK(read_text(target) == "old contents");
    CHECK(dir.entries() == std::vector<std::string>{"t.safetensors"});
  }
  SECTION("the directory is not writable (skipped as root, who may write anyway)") {
    if (::geteuid() == 0) {
      WARN("running as root: read-only directory check skipped");
      return;
    }
    fs::permissions(dir.path, fs::perms::owner_write | fs::perms::group_write | fs::perms::others_write,
                    fs::perm_options::remove);
    CHECK_THROWS_WITH(write_safetensors_atomic(target.string(), good), Contains("temp file"));
    fs::permissions(dir.path, fs::perms::owner_write, fs::perm_options::add);
    CHECK(read_text(target) == "old contents");
    CHECK(dir.entries() == std::vector<std::string>{"t.safetensors"});
  }
  SECTION("success replaces the target and leaves no temp file") {
    write_safetensors_atomic(target.string(), good);
    CHECK(read_safetensors(target.string()) == good);
    CHECK(dir.entries() == std::vector<std::string>{"t.safetensors"});
  }
}
