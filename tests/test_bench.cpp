// tm-bench's cost model (tools/bench/kernel_cost.hpp): the FLOPs and bytes of each kernel counted by hand on a
// small layer, the edges P = 0 and P = T, and the floor's arithmetic.
#include <catch2/catch.hpp>

#include <string>

#include "tools/bench/kernel_cost.hpp"

using namespace transmamba;
using namespace transmamba::bench;

namespace {
const KernelCost& kernel(const std::vector<KernelCost>& ks, const std::string& name) {
  for (const KernelCost& k : ks)
    if (k.name == name) return k;
  FAIL("no kernel " << name);
  return ks.front();
}
}  // namespace

TEST_CASE("kernel costs: the FLOPs of each kernel counted by hand", "[bench]") {
  // D 4, E 8 (H 2 x p 4), G 1, N 4, W 2, Q 4; one sequence of T 6 tokens, P 3: zxbcdt has 2·8 + 2·4 + 2 = 26
  // columns, xBC 16; attention's causal pairs 3·4/2 = 6; the scan's 3 tokens are one chunk of 6 pairs.
  const MixerConfig c{4, 8, 2, 1, 4, 2, 4};
  const auto ks = layer_kernel_costs(c, 1, 6, 3, 2);
  CHECK(kernel(ks, "in_proj").forward.flops == 2 * 6 * 4 * 26);
  CHECK(kernel(ks, "in_proj").backward.flops == 4 * 6 * 4 * 26);
  CHECK(kernel(ks, "in_proj").forward.bytes == (6 * 4 + 4 * 26 + 6 * 26) * 2);
  CHECK(kernel(ks, "conv").forward.flops == 2 * 6 * 16 * 2);
  CHECK(kernel(ks, "attention").forward.flops == 2 * 6 * 4 + 2 * 6 * 8);           // scores once per group + values
  CHECK(kernel(ks, "attention").backward.flops == 3 * (2 * 6 * 4) + 2 * (2 * 6 * 8));
  CHECK(kernel(ks, "converter").forward.flops == 2 * 3 * 8 * 4);
  CHECK(kernel(ks, "scan").forward.flops == 2 * 6 * (4 + 8) + 4 * 3 * 8 * 4);
  CHECK(kernel(ks, "out_proj").forward.flops == 2 * 6 * 8 * 4);
  CHECK(kernel(ks, "norm").forward.flops == 0);
  // Two sequences: twice every activation term, the parameters once.
  const auto two = layer_kernel_costs(c, 2, 6, 3, 2);
  CHECK(kernel(two, "in_proj").forward.flops == 2 * kernel(ks, "in_proj").forward.flops);
  CHECK(kernel(two, "in_proj").forward.bytes == (2 * 6 * 4 + 4 * 26 + 2 * 6 * 26) * 2);
}

TEST_CASE("kernel costs: no attention at P = 0, no scan at P = T; chunks' causal pairs", "[bench]") {
  const MixerConfig c = MixerConfig::paper();
  const auto mamba = layer_kernel_costs(c, 1, 8192, 0, 2), transformer = layer_kernel_costs(c, 1, 8192, 8192, 2);
  CHECK(kernel(mamba, "attention").forward.flops == 0);
  CHECK(kernel(mamba, "attention").forward.bytes == 0);
  CHECK(kernel(mamba, "converter").forward.bytes == 0);
  CHECK(kernel(transformer, "scan").forward.flops == 0);
  CHECK(kernel(transformer, "scan").forward.bytes == 0);
  // The paper's attention at P = 8192: 8192·8193/2 pairs x 2 x (8 groups x 128 + 3072) FLOPs.
  CHECK(kernel(transformer, "attention").forward.flops == Approx(8192.0 * 8193 / 2 * 2 * (8 * 128 + 3072)).epsilon(1e-15));
  CHECK(chunk_pairs(10, 4) == 2 * 10 + 3);  // chunks of 4, 4, 2 tokens
  CHECK(chunk_pairs(0, 4) == 0);
  for (const auto& ks : {mamba, transformer})
    for (const KernelCost& k : ks) {
      CHECK(k.backward.flops >= k.forward.flops);
      CHECK(k.backward.bytes >= k.forward.bytes);
    }
}

TEST_CASE("kernel costs: the floor is the slower of compute and memory", "[bench]") {
  const Device d = h100_sxm();
  CHECK(Work{989e12, 0}.floor_s(d) == Approx(1.0));
  CHECK(Work{0, 3.35e12}.floor_s(d) == Approx(1.0));
  CHECK(Work{989e12, 2 * 3.35e12}.floor_s(d) == Approx(2.0));
}
