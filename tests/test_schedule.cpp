// Tests of reference/schedule.hpp: TransPoint schedules and the cost model (DESIGN.md section 5).
#include <catch2/catch.hpp>
#include <rapidcheck/catch.h>

#include <string>
#include <vector>

#include "reference/config.hpp"
#include "reference/schedule.hpp"

using namespace transmamba;

namespace {

// Takes a list of ints; returns it as "a,b,c".
std::string join(const std::vector<int>& v) {
  std::string s;
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}

}  // namespace

// ---- named schedules ------------------------------------------------------------------------------------

TEST_CASE("schedule: named schedules are the paper's lists (PAPER.md section 2.2, Table 6)", "[schedule]") {
  const std::vector<std::pair<std::string, std::vector<int>>> paper = {
      {"V1", {2048}},
      {"V2", {4096}},
      {"V3", {6144}},
      {"V4", {3072, 4096, 5120}},
      {"V5", {2048, 3072, 4096}},
      {"V6", {512, 1024, 2048}},
      {"V7", {2048, 4096, 6144}},
      {"V8", {0, 1024, 2048, 6144, 8192}},
      {"V9", {0, 128, 256, 512, 1024, 2048, 4096, 8192}},
  };
  for (const auto& [name, list] : paper) {
    INFO(name);
    const Schedule s = parse_schedule(name);
    CHECK(s.name == name);
    CHECK_FALSE(s.relative);
    CHECK(s.points == list);
    CHECK(s.transpoints(static_cast<int>(list.size()), 8192) == list);
  }
  CHECK(named_schedules() == std::vector<std::string>{"V1", "V2", "V3", "V4", "V5", "V6", "V7", "V8", "V9",
                                                      "transformer", "mamba"});
  // V9 is the paper's final schedule: mean 2032 (PAPER.md section 2.2).
  const auto v9 = parse_schedule("V9").transpoints(8, 8192);
  double sum = 0;
  for (int P : v9) sum += P;
  CHECK(sum / 8 == 2032.0);
}

TEST_CASE("schedule: names are case-insensitive and spaces around them are ignored", "[schedule]") {
  CHECK(parse_schedule("v9").points == parse_schedule("V9").points);
  CHECK(parse_schedule(" V4 ").points == parse_schedule("V4").points);
  CHECK(parse_schedule("Transformer").transpoint(3, 100) == 100);
  CHECK(parse_schedule("MAMBA").transpoint(3, 100) == 0);
}

TEST_CASE("schedule: transformer is every P = T and mamba every P = 0, at any T", "[schedule]") {
  for (int T : {0, 1, 7, 1000, 8192, 100000}) {
    INFO("T = " << T);
    CHECK(parse_schedule("transformer").transpoints(5, T) == std::vector<int>(5, T));
    CHECK(parse_schedule("mamba").transpoints(5, T) == std::vector<int>(5, 0));
  }
}

// ---- cycling and clamping -------------------------------------------------------------------------------

TEST_CASE("schedule: a schedule cycles over the layers (PAPER.md section 2.1: V4 over 6 layers)", "[schedule]") {
  CHECK(parse_schedule("V4").transpoints(6, 8192) == std::vector<int>{3072, 4096, 5120, 3072, 4096, 5120});
  const Schedule v9 = parse_schedule("V9");
  CHECK(v9.transpoint(8, 8192) == 0);
  CHECK(v9.transpoint(15, 8192) == 8192);
  CHECK(v9.transpoint(8 * 100 + 5, 8192) == 2048);
  CHECK(v9.transpoints(0, 8192).empty());
}

TEST_CASE("schedule: named V-schedules stay absolute and are clamped to T, and @rel scales them", "[schedule]") {
  CHECK(parse_schedule("V9").transpoints(8, 1000) == std::vector<int>{0, 128, 256, 512, 1000, 1000, 1000, 1000});
  CHECK(parse_schedule("V9").transpoints(8, 16384) == std::vector<int>{0, 128, 256, 512, 1024, 2048, 4096, 8192});
  const Schedule rel = parse_schedule("V9@rel");
  CHECK(rel.relative);
  CHECK(rel.name == "V9@rel");
  CHECK(rel.transpoints(8, 1024) == std::vector<int>{0, 16, 32, 64, 128, 256, 512, 1024});
  CHECK(rel.transpoints(8, 8192) == parse_schedule("V9").points);
  CHECK(rel.transpoints(8, 16384) == std::vector<int>{0, 256, 512, 1024, 2048, 4096, 8192, 16384});
  CHECK(parse_schedule("v4@REL").transpoints(3, 8192) == std::vector<int>{3072, 4096, 5120});
  // to_relative of an explicit list, with its own reference length; entries above it become 1.
  const Schedule r = to_relative(parse_schedule("0,50,100,200"), 100);
  CHECK(r.fractions == std::vector<double>{0.0, 0.5, 1.0, 1.0});
  CHECK(r.transpoints(4, 10) == std::vector<int>{0, 5, 10, 10});
  CHECK(to_relative(r).fractions == r.fractions);  // already relative: unchanged
}

TEST_CASE("schedule: absolute lists parse, cycle and clamp", "[schedule]") {
  const Schedule s = parse_schedule("0,128,256");
  CHECK_FALSE(s.relative);
  CHECK(s.points == std::vector<int>{0, 128, 256});
  CHECK(s.transpoints(5, 8192) == std::vector<int>{0, 128, 256, 0, 128});
  CHECK(s.transpoints(3, 200) == std::vector<int>{0, 128, 200});
  CHECK(s.transpoints(3, 0) == std::vector<int>{0, 0, 0});
  CHECK(parse_schedule(" 5 , 7 ").points == std::vector<int>{5, 7});
  CHECK(parse_schedule("2147483647").transpoint(0, 10) == 10);
}

TEST_CASE("schedule: relative lists scale with T and round halves away from zero", "[schedule]") {
  const Schedule s = parse_schedule("0,0.25,0.5");
  CHECK(s.relative);
  CHECK(s.fractions == std::vector<double>{0.0, 0.25, 0.5});
  CHECK(s.transpoints(3, 8192) == std::vector<int>{0, 2048, 4096});
  CHECK(s.transpoints(4, 100) == std::vector<int>{0, 25, 50, 0});
  CHECK(s.transpoints(3, 10) == std::vector<int>{0, 3, 5});  // 2.5 -> 3
  CHECK(s.transpoints(3, 1) == std::vector<int>{0, 0, 1});   // 0.25 -> 0, 0.5 -> 1
  CHECK(parse_schedule("0.333").transpoint(0, 3) == 1);      // 0.999 -> 1
  // One '.' makes the whole list relative: "1" is then the fraction 1 (P = T), "0" is 0.
  CHECK(parse_schedule("0,1,0.5").transpoints(3, 64) == std::vector<int>{0, 64, 32});
  CHECK(parse_schedule(".5,1.").transpoints(2, 64) == std::vector<int>{32, 64});
  CHECK(parse_schedule("1.0").transpoint(0, 777) == 777);
}

TEST_CASE("schedule: transpoint rejects a negative layer or T", "[schedule]") {
  const Schedule s = parse_schedule("V9");
  CHECK_THROWS_AS(s.transpoint(-1, 8192), std::invalid_argument);
  CHECK_THROWS_AS(s.transpoint(0, -1), std::invalid_argument);
  CHECK_THROWS_AS(s.transpoints(-1, 8192), std::invalid_argument);
  CHECK_THROWS_AS(Schedule{}.transpoint(0, 10), std::invalid_argument);
}

TEST_CASE("schedule: describe names the schedule and its list", "[schedule]") {
  CHECK(parse_schedule("V9").describe() ==
        "V9 [0,128,256,512,1024,2048,4096,8192] (absolute, clamped to [0,T], cycled over layers)");
  CHECK(parse_schedule("0,0.25,0.5").describe() == "0,0.25,0.5 [0,0.25,0.5] (fractions of T, P = round(f*T), cycled over layers)");
  CHECK(parse_schedule("transformer").describe().find("transformer [1]") == 0);
}

// ---- malformed input ------------------------------------------------------------------------------------

TEST_CASE("schedule: every malformed schedule throws with a message naming it and the accepted forms", "[schedule]") {
  const std::vector<std::string> bad = {
      "",        " ",        "V0",          "V10",       "foo",       "transformer@rel", "V9@abs",   "V9@",
      "1,2,",    ",1",       "1,,2",        ",",         "-1",        "0,-128",          "-0.5",     "1.5",
      "0.5,1.5", "0,2,0.5",  "abc,1",       "1e3",       "0x10",      "+1",              "1 2",      "12a",
      ".",       "0.5.1",    "1..2",        "2147483648", "99999999999", "0;128",        "0 ,, 1",   "nan",
      "inf",     "0.5,",     "[0,128]",     "V9,V1",
  };
  for (const std::string& s : bad) {
    INFO("schedule text: '" << s << "'");
    CHECK_THROWS_AS(parse_schedule(s), std::invalid_argument);
    CHECK_THROWS_WITH(parse_schedule(s), Catch::Contains("schedule '" + s + "'") && Catch::Contains("expected"));
  }
  CHECK_THROWS_WITH(parse_schedule("V10"), Catch::Contains("unknown name 'V10'") &&
                                               Catch::Contains("V1..V9") && Catch::Contains("(0,128,256)") &&
                                               Catch::Contains("(0,0.25,0.5)"));
  CHECK_THROWS_WITH(parse_schedule("0,-128"), Catch::Contains("'-128' is negative"));
  CHECK_THROWS_WITH(parse_schedule("1,2,"), Catch::Contains("entry 3 is empty"));
  CHECK_THROWS_WITH(parse_schedule("0.5,1.5"), Catch::Contains("'1.5' is a fraction outside [0,1]"));
  CHECK_THROWS_WITH(parse_schedule("99999999999"), Catch::Contains("too large"));
}

// ---- properties (RapidCheck) ----------------------------------------------------------------------------

TEST_CASE("schedule: property: absolute lists give P in 0..T and layer l uses entry l mod len", "[schedule][property]") {
  rc::prop("absolute list round-trips through text, cycles and clamps", [] {
    const auto list = *rc::gen::nonEmpty(rc::gen::container<std::vector<int>>(rc::gen::inRange(0, 20001)));
    const int T = *rc::gen::inRange(0, 20001);
    const int n_layers = *rc::gen::inRange(0, 64);
    const Schedule s = parse_schedule(join(list));
    RC_ASSERT(!s.relative);
    RC_ASSERT(s.points == list);
    const std::vector<int> P = s.transpoints(n_layers, T);
    RC_ASSERT(P.size() == static_cast<std::size_t>(n_layers));
    for (int l = 0; l < n_layers; ++l) {
      RC_ASSERT(P[l] >= 0);
      RC_ASSERT(P[l] <= T);
      RC_ASSERT(P[l] == std::min(list[l % list.size()], T));
    }
  });
}

TEST_CASE("schedule: property: relative lists give P = round(f T) in 0..T", "[schedule][property]") {
  rc::prop("fractions k/1000 scale with T", [] {
    const auto thousandths =
        *rc::gen::nonEmpty(rc::gen::container<std::vector<int>>(rc::gen::inRange(0, 1001)));
    const int T = *rc::gen::inRange(0, 100001);
    std::string text;
    for (std::size_t i = 0; i < thousandths.size(); ++i) {
      const int k = thousandths[i];
      std::string digits = std::to_string(k);
      digits = std::string(3 - std::min<std::size_t>(3, digits.size()), '0') + digits;  // "007"
      text += (i ? "," : "") + (k == 1000 ? std::string("1.000") : "0." + digits);
    }
    const Schedule s = parse_schedule(text);
    RC_ASSERT(s.relative);
    const int n_layers = static_cast<int>(2 * thousandths.size());
    const std::vector<int> P = s.transpoints(n_layers, T);
    for (int l = 0; l < n_layers; ++l) {
      const long long k = thousandths[l % thousandths.size()];
      RC_ASSERT(P[l] >= 0);
      RC_ASSERT(P[l] <= T);
      // Exact integer rounding of k*T/1000, halves up: |k*T/1000 - P| <= 1/2, so |2*(k*T) - 2000*P| <= 1000.
      const long long diff = 2 * k * T - 2000LL * P[l];
      RC_ASSERT(diff <= 1000);
      RC_ASSERT(diff >= -1000);
    }
  });
}

// ---- cost model -----------------------------------------------------------------------------------------

TEST_CASE("schedule: cost: P = 0 is pure Mamba2 (no attention, no converter, no KV cache)", "[schedule][cost]") {
  const MixerConfig cfg = MixerConfig::paper();
  const LayerCost c = layer_cost(cfg, 8192, 0);
  CHECK(c.P == 0);
  CHECK(c.attention_flops == 0);
  CHECK(c.converter_flops == 0);
  CHECK(c.kv_cache_bytes == 0);
  CHECK(c.scan_flops > 0);
  CHECK(c.state_bytes == 48.0 * 64 * 128 * 4);  // 1.5 MiB: PAPER.md section 5, 393k fp32 values
}

TEST_CASE("schedule: cost: P = T is pure attention (no scan, no converter, the state is still kept)", "[schedule][cost]") {
  const MixerConfig cfg = MixerConfig::paper();
  const LayerCost c = layer_cost(cfg, 8192, 8192);
  CHECK(c.scan_flops == 0);
  CHECK(c.converter_flops == 0);
  CHECK(c.attention_flops > 0);
  CHECK(c.kv_cache_bytes == 8192.0 * (8 * 128 + 3072) * 2);  // 64 MiB of bf16 keys and values
  CHECK(c.state_bytes == layer_cost(cfg, 8192, 0).state_bytes);
  // Above T clamps to T.
  const LayerCost over = layer_cost(cfg, 8192, 10000);
  CHECK(over.P == 8192);
  CHECK(over.mixer_flops() == c.mixer_flops());
  CHECK(layer_cost(cfg, 8192, -5).P == 0);
}

TEST_CASE("schedule: cost: attention grows quadratically in P, scan linearly in T - P", "[schedule][cost]") {
  const MixerConfig cfg = MixerConfig::paper();
  const int T = 1 << 20;
  for (int P : {4096, 16384, 65536}) {
    INFO("P = " << P);
    const double r = layer_cost(cfg, T, 2 * P).attention_flops / layer_cost(cfg, T, P).attention_flops;
    CHECK(r == Approx(4.0).epsilon(1e-3));
  }
  const double s1 = layer_cost(cfg, T, T - 1000).scan_flops, s2 = layer_cost(cfg, T, T - 2000).scan_flops;
  CHECK(s2 == Approx(2 * s1));
  // The converter is linear in P.
  CHECK(layer_cost(cfg, T, 2000).converter_flops == Approx(2 * layer_cost(cfg, T, 1000).converter_flops));
}

TEST_CASE("schedule: cost: a brute-force count of the loops equals the formulas", "[schedule][cost]") {
  const MixerConfig cfg{16, 32, 4, 2, 8, 4, 16};  // p = 8, 2 heads per group
  REQUIRE_NOTHROW(cfg.validate());
  const int T = 23;
  for (int P = 0; P <= T; ++P) {
    INFO("P = " << P);
    // E4: per group a score per causal pair (N multiply-adds), per head a weighted value per pair (p).
    double pairs = 0, attention_ma = 0;
    for (int t = 0; t < P; ++t)
      for (int s = 0; s <= t; ++s) {
        pairs += 1;
        for (int g = 0; g < cfg.G; ++g) attention_ma += cfg.N;
        for (int h = 0; h < cfg.H; ++h) attention_ma += cfg.p();
      }
    CHECK(pairs == P * (P + 1) / 2);
    // E6: per scan token and head, the update touches p*N state entries and the output reads them again.
    double scan_ma = 0;
    for (int t = P; t < T; ++t)
      for (int h = 0; h < cfg.H; ++h)
        for (int i = 0; i < cfg.p(); ++i)
          for (int n = 0; n < cfg.N; ++n) scan_ma += 2;
    // E5: one state update per prefix token, needed only when scan tokens follow.
    double converter_ma = 0;
    if (P < T)
      for (int s = 0; s < P; ++s) converter_ma += static_cast<double>(cfg.H) * cfg.p() * cfg.N;
    const LayerCost c = layer_cost(cfg, T, P, 4);
    CHECK(c.attention_flops == 2 * attention_ma);
    CHECK(c.scan_flops == 2 * scan_ma);
    CHECK(c.converter_flops == 2 * converter_ma);
    CHECK(c.kv_cache_bytes == static_cast<double>(P) * (cfg.G * cfg.N + cfg.E) * 4);
    CHECK(c.state_bytes == static_cast<double>(cfg.H) * cfg.p() * cfg.N * 4);
  }
}

TEST_CASE("schedule: cost: schedule totals, the all-attention ratio and monotonicity", "[schedule][cost]") {
  const MixerConfig cfg = MixerConfig::paper();
  const int T = 8192, L = 32;
  const ScheduleCost tr = schedule_cost(parse_schedule("transformer"), cfg, T, L);
  CHECK(tr.ratio_to_transformer() == 1.0);
  CHECK(tr.attention_share == Approx(1.0));
  CHECK(tr.total.scan_flops == 0);

  const ScheduleCost ma = schedule_cost(parse_schedule("mamba"), cfg, T, L);
  CHECK(ma.total.attention_flops == 0);
  CHECK(ma.total.kv_cache_bytes == 0);
  CHECK(ma.attention_share == 0);
  CHECK(ma.ratio_to_transformer() < 0.1);  // 4 T E N vs T^2 (GN + E): about 0.047 here

  const ScheduleCost v9 = schedule_cost(parse_schedule("V9"), cfg, T, L);
  REQUIRE(v9.layers.size() == 32);
  double attention = 0, scan = 0, kv = 0;
  for (int l = 0; l < L; ++l) {
    CHECK(v9.layers[l].P == parse_schedule("V9").points[l % 8]);
    attention += v9.layers[l].attention_flops;
    scan += v9.layers[l].scan_flops;
    kv += v9.layers[l].kv_cache_bytes;
  }
  CHECK(v9.total.attention_flops == Approx(attention));
  CHECK(v9.total.scan_flops == Approx(scan));
  CHECK(v9.total.kv_cache_bytes == Approx(kv));
  CHECK(v9.total.state_bytes == L * 48.0 * 64 * 128 * 4);
  CHECK(v9.attention_share == Approx(2032.0 / 8192));
  CHECK(v9.ratio_to_transformer() > ma.ratio_to_transformer());
  CHECK(v9.ratio_to_transformer() < 1.0);
  // Cycling: 32 layers of V9 cost 4 times one cycle of 8.
  CHECK(v9.total.mixer_flops() == Approx(4 * schedule_cost(parse_schedule("V9"), cfg, T, 8).total.mixer_flops()));

  // More attention costs more: d/dP of the layer FLOPs is 2(GN+E)(P + 1/2) - 2EN > 0 for P >= 96 here.
  double previous = 0;
  for (int P = 2048; P <= T; P += 512) {
    const double f = layer_cost(cfg, T, P).mixer_flops();
    CHECK(f > previous);
    previous = f;
  }
}

TEST_CASE("schedule: cost: bad arguments throw", "[schedule][cost]") {
  const MixerConfig cfg = MixerConfig::paper();
  CHECK_THROWS_AS(layer_cost(cfg, 0, 0), std::invalid_argument);
  CHECK_THROWS_AS(layer_cost(cfg, 8192, 0, 0), std::invalid_argument);
  MixerConfig broken = cfg;
  broken.H = 5;  // E % H != 0
  CHECK_THROWS_AS(layer_cost(broken, 8192, 0), std::invalid_argument);
  CHECK_THROWS_AS(schedule_cost(parse_schedule("V9"), cfg, 8192, 0), std::invalid_argument);
  CHECK_THROWS_AS(projection_flops(cfg, 0), std::invalid_argument);
  // in_proj 2 T D (2E + 2GN + H) + conv 2 T (E + 2GN) W + out_proj 2 T E D, with the PAPER.md widths 8240 and 5120.
  CHECK(projection_flops(cfg, 8192) == 2.0 * 8192 * 1536 * 8240 + 2.0 * 8192 * 5120 * 4 + 2.0 * 8192 * 3072 * 1536);
}
