#!/usr/bin/env python3
"""tm-bench's command line and its PyTorch baseline script, with the standard library only (ctest tm_bench_cli).

    python3 tests/test_tm_bench.py BUILD/tm-bench

- usage errors exit 2; the timing run without a GPU exits 1 saying so; --dtype bf16 (the default) times the bf16
  layer in the test mode (the refusal while a build has no bf16 layer: test_bench.cpp's timing_refusal);
- the test mode (--backend emulated, a tiny layer on the CPU emulation): exit 0, the table, and the JSON's
  structure (every P, each kernel family, the V9 mean and its ratio recomputed from the JSON's own medians);
  --plot writes the PNG or says why not;
- --baseline: without PyTorch it refuses (exit 1); with it (never the case on the CI machine), the whole
  baseline runs on the CPU and its fields are checked;
- tools/bench/torch_layer.py: --dry-run reads a safetensors file written here (no torch), a wrong shape or a
  missing file exits 2, and without PyTorch a real run exits 3.
"""
import array
import importlib.util
import json
import os
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tools", "bench", "torch_layer.py")
# p = 16 and N = 16: sizes the attention kernels take; T = 16, Q = 8: two scan chunks at P = 0.
TINY = ["--T", "16", "--D", "8", "--E", "32", "--H", "2", "--G", "1", "--N", "16", "--W", "4", "--Q", "8"]
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, **kw)


def usage_and_refusals(bench, tmp):
    for bad in (["--reps", "0"], ["--P", "99"], ["--dtype", "fp16"], ["--backend", "tpu"], ["--warmup", "-1"]):
        r = run([bench] + TINY + bad)
        check(r.returncode == 2, f"tm-bench {' '.join(bad)}: usage error, exit 2 (got {r.returncode})")
    existing = os.path.join(tmp, "exists.json")
    open(existing, "w").close()
    r = run([bench, "--backend", "emulated", "--dtype", "fp32", "--json", existing] + TINY)
    check(r.returncode == 2 and "not overwritten" in r.stderr, "--json onto an existing file: exit 2")
    r = run([bench, "--T", "64"])
    check(r.returncode == 1 and ("no GPU" in r.stderr or "bf16 layer is not built yet" in r.stderr),
          f"timing run without a GPU: exit 1 with the reason ({r.stderr.strip()[:120]})")
    r = run([bench, "--backend", "emulated", "--P", "0,8", "--reps", "1", "--warmup", "0", "--layer-only"] + TINY)
    check(r.returncode == 0 and "bf16 activations" in r.stdout and "P = 8: layer forward" in r.stdout,
          f"--dtype bf16 (the default): the bf16 layer's test mode runs, exit 0 (got {r.returncode}: {r.stderr.strip()[-200:]})")
    r = run([bench, "--plan", "--T", "1024"])
    check(r.returncode == 0 and "V9 mean" in r.stdout, "--plan still prints the cost model")


def emulated_run(bench, tmp):
    js, png = os.path.join(tmp, "bench.json"), os.path.join(tmp, "bench.png")
    r = run([bench, "--backend", "emulated", "--dtype", "fp32", "--P", "0,8,16", "--reps", "2", "--warmup", "1",
             "--json", js, "--plot", png] + TINY)
    check(r.returncode == 0, f"test mode: exit 0 (got {r.returncode}: {r.stderr.strip()[-300:]})")
    if r.returncode != 0:
        return
    check("P = 8: layer forward" in r.stdout and "V9 mean" in r.stdout and "attention" in r.stdout, "the table")
    j = json.load(open(js))
    check([p["P"] for p in j["P"]] == [0, 8, 16], "JSON: one entry per P")
    check(j["backend"] == "emulated" and j["dtype"] == "fp32" and j["T"] == 16 and j["reps"] == 2, "JSON: the run's header")
    families = ["in_proj", "conv", "step_size", "attention", "converter", "scan", "norm", "out_proj"]
    for p in j["P"]:
        names = [k["name"] for k in p["kernels"]]
        want = [f for f in families if f != "attention" or p["P"] > 0]
        check(names == want, f"JSON P={p['P']}: kernel families {names}")
        for key in ("forward", "forward_backward"):
            s = p[key]
            check(s["reps"] == 2 and s["min_ms"] <= s["median_ms"] <= s["max_ms"], f"JSON P={p['P']} {key}: stats")
        k = p["kernels"][0]
        check(k["forward_flops"] == 2 * 16 * 8 * (2 * 32 + 2 * 16 + 2) and k["forward_tflops"] >= 0,
              f"JSON P={p['P']}: in_proj's FLOPs from kernel_cost.hpp")
    # V9 at T = 16 clamps to 0, 16, 16, 16, 16, 16, 16, 16.
    f = {p["P"]: p["forward"]["median_ms"] for p in j["P"]}
    mean = (f[0] + 7 * f[16]) / 8
    v9 = j["V9_mean"]
    check(abs(v9["forward_ms"] - mean) <= 1e-9 * mean and abs(v9["ratio_to_P_eq_T_forward"] - mean / f[16]) <= 1e-9,
          "JSON: V9 mean and ratio from the medians")
    check(os.path.exists(png) or "no plot" in r.stderr, "--plot: a PNG, or why not")
    check(os.path.exists(png + ".dat"), "--plot: the data file")


def baseline(bench, tmp):
    has_torch = importlib.util.find_spec("torch") is not None
    js = os.path.join(tmp, "baseline.json")
    r = run([bench, "--backend", "emulated", "--dtype", "fp32", "--P", "0,8,16", "--reps", "1", "--warmup", "0",
             "--layer-only", "--baseline", "--json", js] + TINY)
    if not has_torch:
        check(r.returncode == 1 and "needs PyTorch" in r.stderr, "--baseline without PyTorch: exit 1, saying so")
        return
    check(r.returncode == 0, f"--baseline on the CPU: exit 0 ({r.stderr.strip()[-300:]})")
    if r.returncode == 0:
        j = json.load(open(js))
        check(all(p["baseline"]["rel_error"] <= p["baseline"]["bound"] for p in j["P"]), "baseline: outputs agree")
        check("baseline" in j["V9_mean"], "baseline: the V9 mean ratio")


def write_safetensors(path, tensors, meta):
    header, body = {"__metadata__": meta}, b""
    for name in sorted(tensors):
        shape, values = tensors[name]
        data = array.array("f", values).tobytes()
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(body), len(body) + len(data)]}
        body += data
    h = json.dumps(header).encode()
    h += b" " * ((-len(h)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + body)


def torch_script(tmp):
    D, E, H, G, N, W, Bt, T = 4, 8, 2, 1, 4, 2, 1, 5
    C, width = E + 2 * G * N, 2 * E + 2 * G * N + H
    shapes = {"W_in": [D, width], "conv_w": [C, W], "conv_b": [C], "dt_bias": [H], "A_log": [H], "D_skip": [H],
              "norm_w": [E], "W_out": [E, D], "u": [Bt, T, D], "d_out": [Bt, T, D], "out": [Bt, T, D]}
    tensors = {k: (s, [0.25] * eval("*".join(map(str, s)))) for k, s in shapes.items()}
    meta = {k: str(v) for k, v in dict(D=D, E=E, H=H, G=G, N=N, W=W, Q=4, Bt=Bt, T=T, P=2).items()}
    good = os.path.join(tmp, "good.safetensors")
    write_safetensors(good, tensors, meta)
    r = run([sys.executable, SCRIPT, "--input", good, "--dry-run"])
    ok = r.returncode == 0
    check(ok and json.loads(r.stdout)["tensors"]["W_in"] == [D, width] and json.loads(r.stdout)["config"]["P"] == 2,
          f"torch_layer.py --dry-run reads the file ({r.stderr.strip()[-200:]})")
    bad = os.path.join(tmp, "bad.safetensors")
    write_safetensors(bad, dict(tensors, W_out=([D, E], tensors["W_out"][1])), meta)
    r = run([sys.executable, SCRIPT, "--input", bad, "--dry-run"])
    check(r.returncode == 2 and "W_out" in r.stderr, "torch_layer.py: a wrong shape, exit 2 naming the tensor")
    r = run([sys.executable, SCRIPT, "--input", os.path.join(tmp, "none.safetensors"), "--dry-run"])
    check(r.returncode == 2 and "cannot read" in r.stderr, "torch_layer.py: a missing file, exit 2")
    r = run([sys.executable, SCRIPT, "--input", good, "--reps", "0"])
    check(r.returncode == 2, "torch_layer.py --reps 0: exit 2")
    if importlib.util.find_spec("torch") is None:
        r = run([sys.executable, SCRIPT, "--input", good, "--device", "cpu"])
        check(r.returncode == 3 and "PyTorch is not installed" in r.stderr, "torch_layer.py without PyTorch: exit 3")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    bench = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        usage_and_refusals(bench, tmp)
        emulated_run(bench, tmp)
        baseline(bench, tmp)
        torch_script(tmp)
    print(f"{len(failures)} failed" if failures else "all passed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
