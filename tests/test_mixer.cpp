#include "reference/mixer.hpp"

#include "cuda/bf16.hpp"

#include "tests/check_support.hpp"

using namespace transmamba;

TEST_CASE("mixer.backward_fd", "[mixer][gradient]") { require_check("mixer.backward_fd"); }
TEST_CASE("mixer.exactness", "[mixer][property]") { require_check("mixer.exactness"); }
TEST_CASE("mixer.mamba_limit", "[mixer][property]") { require_check("mixer.mamba_limit"); }
TEST_CASE("mixer.attention_limit", "[mixer][property]") { require_check("mixer.attention_limit"); }
TEST_CASE("mixer.causality", "[mixer][property]") { require_check("mixer.causality"); }
TEST_CASE("mixer.ladder", "[mixer][ladder]") { require_check("mixer.ladder"); }
TEST_CASE("mixer.float_vs_double", "[mixer][property]") { require_check("mixer.float_vs_double"); }

TEST_CASE("mixer: bad input gets an error naming the problem", "[mixer][errors]") {
  const MixerConfig cfg{4, 8, 2, 1, 3, 2, 4};
  const auto prm = MixerParams<double>::init(cfg, 1);
  const Mat<double> u = Mat<double>::Random(5, 4);
  CHECK_THROWS_WITH(mixer_forward(prm, u, 6), "TransPoint P=6 is outside [0, T=5]");
  CHECK_THROWS_WITH(mixer_forward(prm, u, -1), "TransPoint P=-1 is outside [0, T=5]");
  CHECK_THROWS_WITH(mixer_forward(prm, Mat<double>(Mat<double>::Random(5, 3)), 2), "u: expected shape [5, 4], got [5, 3]");
  CHECK_THROWS_WITH(mixer_forward(prm, Mat<double>(0, 4), 0), Catch::Contains("at least one token"));
  Mat<double> nan_u = u;
  nan_u(2, 1) = std::nan("");
  CHECK_THROWS_WITH(mixer_forward(prm, nan_u, 2), "u: contains NaN or Inf");
  const auto f = mixer_forward(prm, u, 2);
  CHECK_THROWS_WITH(mixer_backward(prm, f, Mat<double>(Mat<double>::Zero(4, 4))), "d_out: expected shape [5, 4], got [4, 4]");
}

TEST_CASE("mixer: with storage rounding, every tensor the bf16 layer stores is bf16, and nothing else changes", "[mixer][bf16]") {
  const MixerConfig cfg{4, 8, 2, 1, 4, 2, 4};  // D, E, H, G, N, W, chunk
  const auto prm = MixerParams<float>::init(cfg, 3);
  const Mat<float> u = Mat<float>::Random(9, cfg.D);
  const Mat<float> d_out = Mat<float>::Random(9, cfg.D);
  auto to_bf16 = [](const Mat<float>& m) -> Mat<float> {
    return m.unaryExpr([](float v) { return gpu::to_float(gpu::to_bf16(v)); });
  };
  auto is_bf16 = [&](const Mat<float>& m) { return m == to_bf16(m); };
  for (int P : {0, 4, 9}) {
    CAPTURE(P);
    const StorageRounding<float> store = to_bf16;
    const MixerForward<float> f = mixer_forward(prm, u, P, store);
    for (const Mat<float>* m : {&f.z, &f.xBC_in, &f.dt_raw, &f.xBC, &f.y, &f.y_normed, &f.out}) CHECK(is_bf16(*m));
    CHECK_FALSE(is_bf16(f.dt));      // fp32 on the device: not rounded
    CHECK_FALSE(is_bf16(f.final_state));
    const MixerGrads<float> g = mixer_backward(prm, f, d_out, store);
    CHECK(is_bf16(g.d_u));
    CHECK(is_bf16(g.d_zxbcdt));
    CHECK_FALSE(is_bf16(g.d_params.W_in));  // parameter gradients stay fp32
    // No rounding: the plain reference, bit for bit.
    const MixerForward<float> plain = mixer_forward(prm, u, P), identity = mixer_forward(prm, u, P, StorageRounding<float>{});
    CHECK(plain.out == identity.out);
    CHECK((f.out - plain.out).norm() <= 2e-2 * plain.out.norm());  // rounding moved it, by bf16's order
    CHECK(f.out != plain.out);
  }
}
