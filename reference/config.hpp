// The sizes of one TransMamba mixer layer (DESIGN.md section 1) and their checks.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace transmamba {

struct MixerConfig {
  int D = 16;      // model width d_model
  int E = 32;      // inner width d_inner = expand * D
  int H = 4;       // value heads; head dim p = E / H
  int G = 2;       // groups of Q/K (= C/B); head h reads group h / (H / G)
  int N = 8;       // state size = Q/K head dim (d_state)
  int W = 4;       // causal conv width
  int chunk = 16;  // SSD chunk size Q of the chunked scan

  int p() const { return E / H; }
  int heads_per_group() const { return H / G; }
  int group_of(int h) const { return h / heads_per_group(); }
  int conv_channels() const { return E + 2 * G * N; }        // xBC = [x | B | C]
  int in_proj_width() const { return 2 * E + 2 * G * N + H; }  // zxbcdt = [z | xBC | dt_raw]

  // The paper's configuration (PAPER.md section 1.2): D 1536, E 3072, H 48 x 64, G 8, N 128, W 4, Q 128.
  static MixerConfig paper() { return MixerConfig{1536, 3072, 48, 8, 128, 4, 128}; }

  // Throws std::invalid_argument naming the first field that does not fit.
  void validate() const {
    auto fail = [](const std::string& what) { throw std::invalid_argument("MixerConfig: " + what); };
    auto positive = [&](const char* name, int v) {
      if (v <= 0) fail(std::string(name) + " must be positive, got " + std::to_string(v));
    };
    positive("D", D);
    positive("E", E);
    positive("H", H);
    positive("G", G);
    positive("N", N);
    positive("W", W);
    positive("chunk", chunk);
    if (E % H != 0) fail("E % H must be 0 (head dim p = E / H), got E=" + std::to_string(E) + ", H=" + std::to_string(H));
    if (H % G != 0) fail("H % G must be 0 (heads per group), got H=" + std::to_string(H) + ", G=" + std::to_string(G));
  }

  std::string describe() const {
    std::ostringstream os;
    os << "D=" << D << " E=" << E << " H=" << H << " p=" << p() << " G=" << G << " N=" << N << " W=" << W
       << " Q=" << chunk;
    return os.str();
  }
};

}  // namespace transmamba
