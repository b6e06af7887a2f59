#!/usr/bin/env python3
"""Python interop of the golden fixtures (DESIGN.md section 9; layout: fixture_format/fixtures.hpp).

Opens every fixtures/*.safetensors with the `safetensors` package (safe_open, framework "numpy"), checks
each tensor's dtype (float64; token ids int64) and shape against the config in its __metadata__ and the tables
of fixtures/SCHEMA.md, and recomputes, in NumPy
and independently of the C++ reference:
  - S0 (E5) with a plain loop over the prefix, for every file that stores it (converter, layer):
        S0[h] = sum_{s<P} (prod_{r=s+1}^{P-1} a[r,h]) dt[s,h] x[s,h] (outer) B[s,g],  a = exp(dt A), g = h // (H/G)
  - y and the final state of a scan (E6) with the recurrence, for every scan file;
  - a model's loss from its logits and tokens (mean next-token cross-entropy);
  - for a decode run, that each KV cache after prefill is the start of the one after the last token.
Each is compared with the stored tensor: relative norm error <= 1e-12 (as verify/compare.hpp measures it).

    python3 tests/test_fixtures.py [FIXTURES_DIR]     (default: fixtures/ beside tests/)
    python3 tests/test_fixtures.py --check-with TM_VERIFY

The second form is the other direction: this file's NumPy scan and converter write fixtures of their own
(fixtures/SCHEMA.md: kind and config in the metadata, inputs and outputs, no gradients; float64 and float32)
under names of this test's choosing, and `TM_VERIFY --check` must pass them; the same files with one output
element changed must be refused (exit 1), naming the tensor and the element.

Exit 0: all passed; 1: a check failed; 77: NumPy or safetensors is missing (ctest reports it as skipped;
tools/install-deps.sh installs numpy==1.26.4 safetensors==0.4.5).
"""
import json
import math
import os
import re
import subprocess
import sys
import tempfile

SKIP = 77
try:
    import numpy as np
    from safetensors import safe_open
    from safetensors.numpy import save_file
except ImportError as e:
    print(f"skipped: {e} (tools/install-deps.sh installs numpy==1.26.4 safetensors==0.4.5)")
    sys.exit(SKIP)

BOUND = 1e-12
FORMAT_VERSION = "1"
METADATA_KEYS = {"format_version", "fixture", "kind", "description", "config", "seed", "generator"}
SCHEMA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "SCHEMA.md")


def schema_tables():
    """kind -> [(name, [dimension names], dtype)] from fixtures/SCHEMA.md's generated tables: the one table of
    the tensors (tm-fixtures schema prints it from the C++ kinds; tests/test_fixtures.cpp holds the file to it)."""
    kinds, kind = {}, None
    with open(SCHEMA) as f:
        for line in f:
            m = re.match(r"### Kind `(\w+)`", line)
            if m:
                kind = kinds.setdefault(m.group(1), [])
                continue
            m = re.match(r"\| `([^`]+)` \| \w+ \| \[([^\]]*)\] \| (\w+) \|", line)
            if m and kind is not None:
                kind.append((m.group(1), [d for d in m.group(2).split(", ") if d], m.group(3)))
    return kinds


def expected_shapes(kind, c):
    """name -> (shape, dtype) of every tensor a fixture of this kind stores, from its config: the schema's
    dimension names evaluated as its legend says (per-layer names once per layer)."""
    D, E, H, G, N, W, Q, T = (c[k] for k in ("D", "E", "H", "G", "N", "W", "chunk", "T"))
    P = c.get("P")  # a model and a decode run have one per layer, c["transpoints"]
    T0 = c.get("prompt", 0)
    size = {"T": T, "P": P, "D": D, "E": E, "H": H, "p": E // H, "G": G, "N": N, "W": W, "W-1": W - 1,
            "conv": E + 2 * G * N, "zxbcdt": 2 * E + 2 * G * N + H, "V": c.get("V"), "F": c.get("F"),
            "prompt": T0, "T-prompt": T - T0,
            "chunks": math.ceil(T / Q) if kind == "scan_chunked" else math.ceil((T - (P or 0)) / Q)}
    tables = schema_tables()
    if kind not in tables:
        raise ValueError(f"unknown kind '{kind}' (fixtures/SCHEMA.md has {sorted(tables)})")
    shapes = {}
    for name, dims, dtype in tables[kind]:
        if c.get("tie_embeddings") and name in ("param.head", "grad.d_head"):
            continue
        for l in range(c["n_layers"]) if "<l>" in name else [None]:
            P_l = c["transpoints"][l] if l is not None else None
            # The KV cache holds the tokens < min(position, P); a layer frees it at its first scan-mode token.
            n_kv = min(T0, P_l) if name.startswith("stage.prefill.") else (T if P_l is not None and T - 1 < P_l else 0)
            sizes = {**size, "n_kv": n_kv}
            shapes[name.replace("<l>", str(l))] = (tuple(sizes[d] for d in dims), dtype)
    return shapes


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
            shape, dtype = want[name]
            dtype = {"F64": np.float64, "I64": np.int64}[dtype]
            if t[name].dtype != dtype:
                failures.append(f"tensor '{name}': dtype {t[name].dtype}, fixtures store {np.dtype(dtype).name}")
            if t[name].shape != shape:
                failures.append(f"tensor '{name}': shape {list(t[name].shape)}, the config gives {list(shape)}")
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


def write_own_fixtures(directory, dtype):
    """A recurrent scan and a Memory Converter computed here in NumPy, written as fixtures/SCHEMA.md says
    (inputs and outputs only), at a config none of the committed fixtures has. Returns {path: output name}."""
    rng = np.random.default_rng(2026)
    T, H, p, G, N = 7, 6, 3, 3, 2
    config = {"D": 4, "E": H * p, "H": H, "G": G, "N": N, "W": 3, "chunk": 4, "T": T, "P": 0}
    x, B, C = rng.normal(size=(T, H, p)), rng.normal(size=(T, G, N)), rng.normal(size=(T, G, N))
    dt = rng.uniform(0.05, 0.5, size=(T, H))
    A = -rng.uniform(0.5, 2.0, size=H)
    S_init = rng.normal(size=(H, p, N))
    cast = lambda arrays: {k: np.ascontiguousarray(v, dtype=dtype) for k, v in arrays.items()}
    scan_in = cast({"input.x": x, "input.dt": dt, "input.A": A, "input.B": B, "input.C": C, "input.S_init": S_init})
    # The outputs from the inputs as stored (float32 inputs rounded first), as another implementation would.
    y, final = recurrent_scan(*(scan_in[f"input.{k}"].astype(np.float64) for k in ("x", "dt", "A", "B", "C", "S_init")), H, G)
    conv_in = {k: v[:5] if v.ndim > 1 else v for k, v in scan_in.items() if k in ("input.x", "input.B", "input.dt", "input.A")}
    s0 = converter_s0(*(conv_in[f"input.{k}"].astype(np.float64) for k in ("x", "B", "dt", "A")), H, G)
    tag = np.dtype(dtype).name
    files = {
        os.path.join(directory, f"my_numpy_scan_{tag}.safetensors"):
            ("scan_recurrent", config, {**scan_in, **cast({"output.y": y, "output.final_state": final})}, "output.y"),
        os.path.join(directory, f"numpy converter {tag}.safetensors"):
            ("converter", {**config, "T": 5, "P": 5}, {**conv_in, **cast({"output.S0": s0})}, "output.S0"),
    }
    for path, (kind, cfg, tensors, _) in files.items():
        save_file(tensors, path, metadata={"kind": kind, "config": json.dumps(cfg), "generator": "tests/test_fixtures.py"})
    return {path: out for path, (_, _, _, out) in files.items()}


def check_with(tm_verify):
    """tm-verify --check passes this test's own fixtures and refuses them with one output element changed."""
    failures = []

    def run(*paths):
        r = subprocess.run([tm_verify, "--check", *paths], capture_output=True, text=True)
        return r.returncode, r.stdout + r.stderr

    with tempfile.TemporaryDirectory() as directory:
        for dtype in (np.float64, np.float32):
            for path, out in write_own_fixtures(directory, dtype).items():
                rc, text = run(path)
                print(text, end="")
                if rc != 0 or "absent, not compared" not in text:
                    failures.append(f"{path}: tm-verify --check exit {rc}, expected 0 with the absent gradients listed")
                # One element of the output changed by more than the bound of its dtype.
                with safe_open(path, framework="numpy") as f:
                    meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
                index = (3, 2, 1) if out == "output.y" else (4, 1, 0)
                tensors[out][index] += 1e-3 * max(1.0, abs(float(tensors[out][index])))
                save_file(tensors, path, metadata=meta)
                rc, text = run(path)
                print(text, end="")
                named = f"{out} {'F64' if dtype == np.float64 else 'F32'}: rel"
                where = "at [" + ", ".join(map(str, index)) + "]"
                if rc != 1 or named not in text or where not in text or "FAIL" not in text:
                    failures.append(f"{path} with {out}{list(index)} changed: tm-verify --check exit {rc}, expected 1 "
                                    f"naming '{named}' {where}")
    for f in failures:
        print("FAIL " + f)
    print(f"{len(failures)} problem(s)")
    return 1 if failures else 0


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--check-with":
        return check_with(sys.argv[2])
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
