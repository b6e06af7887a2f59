#!/usr/bin/env python3
"""Python interop of the golden fixtures (DESIGN.md section 9; layout: verify/fixtures.hpp).

Opens every fixtures/*.safetensors with the `safetensors` package (safe_open, framework "numpy"), checks
each tensor's dtype (float64; token ids int64) and shape against the config in its __metadata__, and recomputes, in NumPy
and independently of the C++ reference:
  - S0 (E5) with a plain loop over the prefix, for every file that stores it (converter, layer):
        S0[h] = sum_{s<P} (prod_{r=s+1}^{P-1} a[r,h]) dt[s,h] x[s,h] (outer) B[s,g],  a = exp(dt A), g = h // (H/G)
  - y and the final state of a scan (E6) with the recurrence, for every scan file;
  - a model's loss from its logits and tokens (mean next-token cross-entropy);
  - for a decode run, that each KV cache after prefill is the start of the one after the last token.
Each is compared with the stored tensor: relative norm error <= 1e-12 (as verify/compare.hpp measures it).

    python3 tests/test_fixtures.py [FIXTURES_DIR]     (default: fixtures/ beside tests/)

Exit 0: all passed; 1: a check failed; 77: NumPy or safetensors is missing (ctest reports it as skipped;
tools/install-deps.sh installs numpy==1.26.4 safetensors==0.4.5).
"""
import json
import math
import os
import sys

SKIP = 77
try:
    import numpy as np
    from safetensors import safe_open
except ImportError as e:
    print(f"skipped: {e} (tools/install-deps.sh installs numpy==1.26.4 safetensors==0.4.5)")
    sys.exit(SKIP)

BOUND = 1e-12
FORMAT_VERSION = "1"
METADATA_KEYS = {"format_version", "fixture", "kind", "description", "config", "seed", "generator"}
PARAMS = ["W_in", "conv_w", "conv_b", "dt_bias", "A_log", "D_skip", "norm_w", "W_out"]


def mixer_param_shapes(c):
    D, E, H, G, N, W = (c[k] for k in ("D", "E", "H", "G", "N", "W"))
    shapes = {"W_in": (D, 2 * E + 2 * G * N + H), "conv_w": (E + 2 * G * N, W), "conv_b": (E + 2 * G * N,),
              "dt_bias": (H,), "A_log": (H,), "D_skip": (H,), "norm_w": (E,), "W_out": (E, D)}
    assert sorted(shapes) == sorted(PARAMS)
    return shapes


def model_param_shapes(c):
    """The ModelParams names (reference/model.hpp, for_each) and shapes."""
    D, V, F = c["D"], c["V"], c["F"]
    shapes = {"embedding": (V, D)}
    for l in range(c["n_layers"]):
        shapes[f"blocks.{l}.mixer_norm_w"] = (D,)
        shapes.update({f"blocks.{l}.mixer.{k}": v for k, v in mixer_param_shapes(c).items()})
        shapes.update({f"blocks.{l}.mlp_norm_w": (D,), f"blocks.{l}.W_gate": (D, F), f"blocks.{l}.W_up": (D, F),
                       f"blocks.{l}.W_down": (F, D)})
    shapes["final_norm_w"] = (D,)
    if not c["tie_embeddings"]:
        shapes["head"] = (D, V)
    return shapes


def expected_shapes(kind, c):
    """name -> shape of every tensor a fixture of this kind stores, from its config (verify/fixtures.hpp)."""
    D, E, H, G, N, W, Q, T = (c[k] for k in ("D", "E", "H", "G", "N", "W", "chunk", "T"))
    P = c.get("P")  # a model and a decode run have one per layer, c["transpoints"]
    p = E // H
    heads = lambda t: (t, H, p)
    groups = lambda t: (t, G, N)
    state = (H, p, N)
    states = lambda n: (n, H, p, N)
    if kind in ("model", "decode"):
        s = {"input.tokens": (T,)}
        s.update({f"param.{k}": v for k, v in model_param_shapes(c).items()})
    if kind == "model":
        s.update({f"grad.d_{k}": v for k, v in model_param_shapes(c).items()})
        s.update({"output.logits": (T, c["V"]), "output.loss": ()})
        for l in range(c["n_layers"]):
            s.update({f"stage.blocks.{l}.h_mid": (T, D), f"stage.blocks.{l}.h_out": (T, D),
                      f"stage.blocks.{l}.S0": state, f"stage.blocks.{l}.final_state": state})
        return s
    if kind == "decode":
        T0 = c["prompt"]
        s.update({"output.prefill_logits": (T0, c["V"]), "output.decode_logits": (T - T0, c["V"])})
        for l, P_l in enumerate(c["transpoints"]):
            # The KV cache holds the tokens < min(position, P); a layer frees it at its first scan-mode token.
            for prefix, cached in (("stage.prefill.", min(T0, P_l)), ("output.", T if T - 1 < P_l else 0)):
                at = f"{prefix}layers.{l}."
                s.update({at + "scan_state": state, at + "kv_B": groups(cached), at + "kv_x": heads(cached),
                          at + "conv_window": (W - 1, E + 2 * G * N)})
        return s
    if kind in ("scan_recurrent", "scan_quadratic", "scan_chunked"):
        inputs = {"x": heads(T), "dt": (T, H), "A": (H,), "B": groups(T), "C": groups(T), "S_init": state}
        s = {f"input.{k}": v for k, v in inputs.items()}
        s.update({f"grad.d_{k}": v for k, v in inputs.items()})
        s.update({"upstream.d_y": heads(T), "upstream.d_final_state": state,
                  "output.y": heads(T), "output.final_state": state})
        if kind == "scan_chunked":
            chunks = math.ceil(T / Q)
            s.update({"stage.chunk_states": states(chunks), "stage.start_states": states(chunks)})
        return s
    if kind == "converter":
        inputs = {"x": heads(P), "B": groups(P), "dt": (P, H), "A": (H,)}
        s = {f"input.{k}": v for k, v in inputs.items()}
        s.update({f"grad.d_{k}": v for k, v in inputs.items()})
        s.update({"upstream.d_S0": state, "output.S0": state})
        return s
    if kind == "layer":
        params = mixer_param_shapes(c)
        chunks = math.ceil((T - P) / Q)  # the chunks of the scan over tokens P..T-1
        s = {f"param.{k}": v for k, v in params.items()}
        s.update({f"grad.d_{k}": v for k, v in params.items()})
        s.update({"input.u": (T, D), "grad.d_u": (T, D), "upstream.d_out": (T, D), "output.out": (T, D),
                  "output.final_state": state, "stage.x": heads(T), "stage.B": groups(T), "stage.C": groups(T),
                  "stage.dt": (T, H), "stage.S0": state, "stage.chunk_states": states(chunks),
                  "stage.start_states": states(chunks), "stage.y": heads(T), "stage.y_normed": (T, E)})
        return s
    raise ValueError(f"unknown kind '{kind}': add its shapes to tests/test_fixtures.py")


def rel_error(got, ref):
    """||got - ref|| / ||ref|| (||got - ref|| when ref is all zero), as verify/compare.cpp."""
    diff = np.linalg.norm((got - ref).ravel())
    norm = np.linalg.norm(ref.ravel())
    return diff / norm if norm > 0 else diff


def converter_s0(x, B, dt, A, H, G):
    """E5 with a plain loop over the prefix: x [P,H,p], B [P,G,N], dt [P,H], A [H] -> S0 [H,p,N]."""
    P, _, p = x.shape
    N = B.shape[2]
    S0 = np.zeros((H, p, N))
    for h in range(H):
        g = h // (H // G)
        for s in range(P):
            decay = 1.0
            for r in range(s + 1, P):
                decay *= math.exp(dt[r, h] * A[h])
            S0[h] += decay * dt[s, h] * np.outer(x[s, h], B[s, g])
    return S0


def recurrent_scan(x, dt, A, B, C, S_init, H, G):
    """E6 token by token: S_t = a S_{t-1} + dt x (outer) B, y = S_t C -> y [T,H,p], final state [H,p,N]."""
    T = x.shape[0]
    S = S_init.copy()
    y = np.zeros_like(x)
    for t in range(T):
        for h in range(H):
            g = h // (H // G)
            S[h] = math.exp(dt[t, h] * A[h]) * S[h] + dt[t, h] * np.outer(x[t, h], B[t, g])
            y[t, h] = S[h] @ C[t, g]
    return y, S


def next_token_loss(logits, tokens):
    """Mean next-token cross-entropy over t < T-1 (0 for T = 1), as reference/model.hpp defines it."""
    T = logits.shape[0]
    if T == 1:
        return np.zeros(())
    losses = []
    for t in range(T - 1):
        m = logits[t].max()
        losses.append(m + math.log(np.exp(logits[t] - m).sum()) - logits[t, tokens[t + 1]])
    return np.array(sum(losses) / (T - 1))


def check_file(path):
    """Returns a list of failures (empty: the file passed) and a one-line summary."""
    failures = []
    with safe_open(path, framework="numpy") as f:
        meta = f.metadata() or {}
        missing_keys = METADATA_KEYS - set(meta)
        if missing_keys:
            return [f"__metadata__: no key(s) {sorted(missing_keys)}"], ""
        if meta["format_version"] != FORMAT_VERSION:
            return [f"__metadata__ 'format_version' is '{meta['format_version']}', this test reads '{FORMAT_VERSION}'"], ""
        cfg = json.loads(meta["config"])
        kind = meta["kind"]
        want = expected_shapes(kind, cfg)
        names = set(f.keys())
        for name in sorted(set(want) - names):
            failures.append(f"no tensor '{name}'")
        for name in sorted(names - set(want)):
            failures.append(f"tensor '{name}': unexpected for kind '{kind}'")
        t = {}
        for name in sorted(names & set(want)):
            t[name] = f.get_tensor(name)
            dtype = np.int64 if name == "input.tokens" else np.float64
            if t[name].dtype != dtype:
                failures.append(f"tensor '{name}': dtype {t[name].dtype}, fixtures store {np.dtype(dtype).name}")
            if t[name].shape != tuple(want[name]):
                failures.append(f"tensor '{name}': shape {list(t[name].shape)}, the config gives {list(want[name])}")
        if failures:
            return failures, ""

    H, G = cfg["H"], cfg["G"]
    recomputed = []  # (what, got (stored), ref (NumPy))
    if kind == "converter":
        s0 = converter_s0(t["input.x"], t["input.B"], t["input.dt"], t["input.A"], H, G)
        recomputed.append(("output.S0", t["output.S0"], s0))
    if kind == "layer":
        P = cfg["P"]
        A = -np.exp(t["param.A_log"])
        s0 = converter_s0(t["stage.x"][:P], t["stage.B"][:P], t["stage.dt"][:P], A, H, G)
        recomputed.append(("stage.S0", t["stage.S0"], s0))
    if kind.startswith("scan_"):
        y, final = recurrent_scan(t["input.x"], t["input.dt"], t["input.A"], t["input.B"], t["input.C"],
                                  t["input.S_init"], H, G)
        recomputed += [("output.y", t["output.y"], y), ("output.final_state", t["output.final_state"], final)]
    if kind == "model":
        recomputed.append(("output.loss", t["output.loss"], next_token_loss(t["output.logits"], t["input.tokens"])))
    if kind == "decode":
        # The KV cache only grows while a layer attends: where the cache after the last token is not empty, the
        # prefill's is its first rows.
        for l in range(cfg["n_layers"]):
            for kv in ("kv_B", "kv_x"):
                before, after = t[f"stage.prefill.layers.{l}.{kv}"], t[f"output.layers.{l}.{kv}"]
                if after.shape[0] > 0:
                    recomputed.append((f"output.layers.{l}.{kv}[:prompt]", after[: before.shape[0]], before))
    summary = []
    for what, got, ref in recomputed:
        err = rel_error(got, ref)
        summary.append(f"{what} rel {err:.2e}")
        if not err <= BOUND:  # also fails on NaN
            failures.append(f"{what}: NumPy recomputation differs, rel {err:.2e} > {BOUND:.0e}")
    if not recomputed:
        failures.append(f"nothing recomputed for kind '{kind}'")
    return failures, f"{len(names)} tensors, " + ", ".join(summary)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    directory = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "fixtures")
    files = sorted(n for n in os.listdir(directory) if n.endswith(".safetensors"))
    if not files:
        print(f"FAIL: no *.safetensors files in {directory}")
        return 1
    failed = 0
    for name in files:
        path = os.path.join(directory, name)
        try:
            failures, summary = check_file(path)
        except Exception as e:  # a file safetensors cannot open, or bad metadata JSON
            failures, summary = [f"{type(e).__name__}: {e}"], ""
        if failures:
            failed += 1
            print(f"FAIL {path}")
            for f in failures:
                print(f"  {path}: {f}")
        else:
            print(f"ok   {name}: {summary}")
    print(f"{len(files) - failed} passed, {failed} failed (numpy {np.__version__})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
