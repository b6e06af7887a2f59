// The Memory Converter's host API (cuda/converter.hpp): its arguments checked under its own name, then the scan.
#include "cuda/converter.hpp"

namespace transmamba::gpu {

namespace {
template <class S>
void check_inputs(const char* fn, const ScanShape& s, const View<const S>& x, const View<const float>& dt,
                  const View<const float>& A, const View<const S>& B) {
  scan_plan(s);  // the shape itself
  check_view(fn, "x", x, s.Bt, s.L, std::int64_t(s.H) * s.p);
  check_view(fn, "dt", dt, s.Bt, s.L, s.H);
  check_view(fn, "A", A, 1, 1, s.H);
  check_view(fn, "B", B, s.Bt, s.L, std::int64_t(s.G) * s.N);
}

// Consecutive pieces of a workspace buffer.
struct Carve {
  float* next;
  View<float> take(std::size_t n) {
    const View<float> v{next, n, 0, 0};
    next += n;
    return v;
  }
};

// The scan forward over the prefix from a zero state, its final state into S0, its stages into the workspace's
// first forward_workspace floats.
template <class S>
void run_forward(const Stream& stream, const ScanShape& s, const ConverterPlan& plan, const View<const S>& x,
                 const View<const float>& dt, const View<const float>& A, const View<const S>& B, const View<float>& S0,
                 Carve& ws, View<float>* start_states) {
  ScanForwardT<S> f{s, x, dt, A, B, {}, {}, {}, S0, {}, {}, {}};
  f.chunk_states = ws.take(plan.scan.state_values);
  f.start_states = ws.take(plan.scan.state_values);
  f.chunk_decays = ws.take(plan.scan.chunk_decays);
  if (start_states) *start_states = f.start_states;
  ssm_chunked_forward(stream, f);
}

template <class S>
void forward(const Stream& stream, const ConverterForwardT<S>& a) {
  const char* fn = "memory_converter_forward";
  const ScanShape& s = a.shape;
  check_inputs(fn, s, a.x, a.dt, a.A, a.B);
  const ConverterPlan plan = converter_plan(s);
  check_view(fn, "S0", a.S0, s.Bt, std::int64_t(s.H) * s.p, s.N);
  check_view(fn, "workspace", a.workspace, 1, 1, std::int64_t(plan.forward_workspace));
  Carve ws{a.workspace.data};
  run_forward(stream, s, plan, a.x, a.dt, a.A, a.B, a.S0, ws, nullptr);
}

template <class S>
void backward(const Stream& stream, const ConverterBackwardT<S>& a) {
  const char* fn = "memory_converter_backward";
  const ScanShape& s = a.shape;
  check_inputs(fn, s, a.x, a.dt, a.A, a.B);
  const ConverterPlan plan = converter_plan(s);
  const std::int64_t HP = std::int64_t(s.H) * s.p;
  check_view(fn, "d_S0", a.d_S0, s.Bt, HP, s.N);
  check_view(fn, "d_x", a.d_x, s.Bt, s.L, HP);
  check_view(fn, "d_dt", a.d_dt, s.Bt, s.L, s.H);
  check_view(fn, "d_B", a.d_B, s.Bt, s.L, std::int64_t(s.G) * s.N);
  check_view(fn, "d_A", a.d_A, 1, 1, s.H);
  check_view(fn, "workspace", a.workspace, 1, 1, std::int64_t(plan.backward_workspace));
  Carve ws{a.workspace.data};
  View<float> start_states;
  run_forward(stream, s, plan, a.x, a.dt, a.A, a.B, ws.take(std::size_t(s.Bt) * HP * s.N), ws, &start_states);
  ScanBackwardT<S> b{};
  b.shape = s;
  b.x = a.x, b.dt = a.dt, b.A = a.A, b.B = a.B;
  b.start_states = start_states;
  b.d_final_state = a.d_S0;
  b.d_x = a.d_x, b.d_dt = a.d_dt, b.d_B = a.d_B, b.d_A = a.d_A;
  b.workspace = ws.take(plan.scan.backward_workspace);
  ssm_chunked_backward(stream, b);
}
}  // namespace

void memory_converter_forward(const Stream& stream, const ConverterForward& a) { forward(stream, a); }
void memory_converter_forward(const Stream& stream, const ConverterForwardBf16& a) { forward(stream, a); }
void memory_converter_backward(const Stream& stream, const ConverterBackward& a) { backward(stream, a); }
void memory_converter_backward(const Stream& stream, const ConverterBackwardBf16& a) { backward(stream, a); }

}  // namespace transmamba::gpu
