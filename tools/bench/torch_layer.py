#!/usr/bin/env python3
"""The TransMamba mixer layer in PyTorch as a careful user writes it: tm-bench --baseline's side by side.

    python3 tools/bench/torch_layer.py --input FILE.safetensors [--device cuda|cpu] [--dtype bf16|fp32]
                                       [--reps 20] [--warmup 3] [--bound 0.02] [--dry-run]

FILE (written by tm-bench, F32 tensors): the parameters W_in [D, 2E+2GN+H], conv_w [E+2GN, W], conv_b, dt_bias,
A_log, D_skip, norm_w, W_out [E, D]; u, d_out and tm-bench's own output out [Bt, T, D]; metadata D E H G N W Q
Bt T P. The layer (DESIGN.md section 2, E1-E8, as reference/mixer.hpp computes it):

  E1  zxbcdt = u W_in -> z [E] | xBC_in [E+2GN] | dt_raw [H]                  F.linear (cuBLAS)
  E2  xBC = SiLU(causal depthwise conv(xBC_in)) -> x [H, p] | B [G, N] | C [G, N]   F.conv1d, groups = channels
  E3  dt = softplus(dt_raw + dt_bias), A = -exp(A_log)                        fp32
  E4  t < P: y = softmax(C B^T / sqrt(N), causal) x per head, Q = C and K = B of head h's group g = h / (H/G)
      expanded to every head (repeat_interleave)                               F.scaled_dot_product_attention
      (q, k of head size N and v of p padded with zero columns to one size, as PyTorch's flash and cuDNN
      kernels take only q, k, v of equal head sizes; the scale stays 1 / sqrt(N))
  E5  S0[h] = sum_{s<P} exp(A[h] sum_{r>s} dt[r,h]) dt[s,h] x[s,h] (x) B[s,g]  (the converter; 0 when P = 0)
  E6  t >= P: the chunked scan (SSD) from S0, chunks of Q, + D_skip[h] x[t,h]   plain PyTorch (ssd_minimal's
      structure: intra-chunk, chunk states, state passing between chunks, state to output)
  E7  y_normed = RMSNorm_G(y) for t < P, RMSNorm_G(y * SiLU(z)) for t >= P: G groups of E/G channels, eps 1e-5
  E8  out = y_normed W_out

bf16 (default): u and the weights W_in, conv_w, conv_b, norm_w, W_out in bf16 (the activations bf16, as a
mixed-precision model stores them); dt_bias, A_log, D_skip, the decays, the scan's states and the norm's sums in
fp32 (as Mamba2 keeps them). fp32: everything fp32, TF32 off.

Before any time counts, the output is compared with tm-bench's: rel-norm ||ours - torch|| / ||torch|| must stay
under --bound (tm-bench passes bounds::kBf16Ceiling = 2e-2, the ceiling of the bf16 rule, DESIGN.md section 7:
no bf16 tensor of a passing check is further than that from the double reference, so two correct layers, one
of them possibly fp32, are within about that of each other; bf16's own rounding is 2^-9 = 2e-3 per element).
Exit 1 when it is over. Then forward and forward + backward (out.backward(d_out), every parameter and u
requiring grad) are timed with CUDA events after --warmup runs, the median of --reps, the L2 cache flushed
(a buffer of twice its size zeroed) before each. Prints one JSON line last:
  {"forward": {"median_ms", "min_ms", "max_ms", "reps"}, "forward_backward": {...}, "rel_error", "bound", ...}
--dry-run reads and checks the file with the standard library only and prints its shapes (no torch).
Exit 0, 1 on a mismatch, 2 on bad usage or a bad file, 3 when torch is missing.
"""
import argparse
import array
import json
import math
import struct
import sys

PARAMS = ["W_in", "conv_w", "conv_b", "dt_bias", "A_log", "D_skip", "norm_w", "W_out"]
KEEP_FP32 = {"dt_bias", "A_log", "D_skip"}


def fail(msg, code=2):
    print(f"torch_layer: {msg}", file=sys.stderr)
    sys.exit(code)


def read_safetensors(path):
    """(metadata, {name: (shape, values as array('f'))}) with the standard library; F32 only."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        fail(f"cannot read {path}: {e}")
    if len(data) < 8:
        fail(f"{path}: too short for a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    try:
        header = json.loads(data[8:8 + n])
    except ValueError as e:
        fail(f"{path}: bad header: {e}")
    meta = header.pop("__metadata__", {})
    body = data[8 + n:]
    tensors = {}
    for name, t in header.items():
        if t["dtype"] != "F32":
            fail(f"{path}: tensor '{name}' is {t['dtype']}, expected F32")
        a, b = t["data_offsets"]
        values = array.array("f")
        values.frombytes(body[a:b])
        if sys.byteorder != "little":
            values.byteswap()
        if len(values) != math.prod(t["shape"]):
            fail(f"{path}: tensor '{name}' holds {len(values)} values for shape {t['shape']}")
        tensors[name] = (t["shape"], values)
    return meta, tensors


def layer_config(meta, tensors):
    try:
        c = {k: int(meta[k]) for k in ["D", "E", "H", "G", "N", "W", "Q", "Bt", "T", "P"]}
    except (KeyError, ValueError) as e:
        fail(f"metadata: missing or bad {e}")
    D, E, H, G, N, W, Bt, T = (c[k] for k in ["D", "E", "H", "G", "N", "W", "Bt", "T"])
    C = E + 2 * G * N
    want = {"W_in": [D, 2 * E + 2 * G * N + H], "conv_w": [C, W], "conv_b": [C], "dt_bias": [H], "A_log": [H],
            "D_skip": [H], "norm_w": [E], "W_out": [E, D], "u": [Bt, T, D], "d_out": [Bt, T, D], "out": [Bt, T, D]}
    for name, shape in want.items():
        if name not in tensors:
            fail(f"no tensor '{name}'")
        if list(tensors[name][0]) != shape:
            fail(f"tensor '{name}' has shape {tensors[name][0]}, expected {shape}")
    if E % H or H % G or E % G or not 0 <= c["P"] <= T:
        fail(f"inconsistent sizes {c}")
    return c


# ---- the layer ----------------------------------------------------------------------------------------------

def segsum(a):
    """a [..., Q] -> [..., Q, Q]: out[i, j] = sum_{j < k <= i} a[k] (term by term over its own segment: a masked
    cumulative sum of the repeated row, not a difference of two cumulative sums), -inf above the diagonal."""
    import torch
    Q = a.shape[-1]
    x = a[..., None].expand(*a.shape, Q)  # x[..., k, j] = a[k]
    strict = torch.tril(torch.ones(Q, Q, dtype=torch.bool, device=a.device), diagonal=-1)
    s = torch.cumsum(x.masked_fill(~strict, 0), dim=-2)
    causal = torch.tril(torch.ones(Q, Q, dtype=torch.bool, device=a.device), diagonal=0)
    return s.masked_fill(~causal, -torch.inf)


def converter(x, dt, A, B):
    """E5. x [b, P, H, p], dt [b, P, H], A [H], B [b, P, H, N] (expanded) -> S0 [b, H, p, N], fp32."""
    import torch
    # later[s] = sum_{r > s} dt[r]: the exclusive suffix sum, accumulated from the end.
    rev = torch.cumsum(dt.flip(1), dim=1)
    later = torch.cat([torch.zeros_like(rev[:, :1]), rev[:, :-1]], dim=1).flip(1)
    w = torch.exp(A * later) * dt  # [b, P, H]
    return torch.einsum("bshp,bsh,bshn->bhpn", x, w, B)


def ssd(x, dt, A, B, C, S0, Q):
    """E6 without the D skip, the chunked form. x [b, L, H, p], dt [b, L, H], B and C [b, L, H, N], S0 [b, H, p, N]
    (fp32) -> y [b, L, H, p] fp32."""
    import torch
    b, L, H, p = x.shape
    if L == 0:
        return x.new_zeros(b, 0, H, p)
    pad = (-L) % Q  # padded tokens have dt = 0: decay 1, no input, so they change nothing before them
    if pad:
        x, B, C = (torch.nn.functional.pad(t, (0, 0, 0, 0, 0, pad)) for t in (x, B, C))
        dt = torch.nn.functional.pad(dt, (0, 0, 0, pad))
    c = x.shape[1] // Q
    x, B, C = (t.reshape(b, c, Q, H, -1) for t in (x, B, C))
    dt = dt.reshape(b, c, Q, H)
    a = (dt * A).permute(0, 3, 1, 2)  # [b, H, c, Q] log-decays
    xdt = x * dt[..., None]
    decay = torch.exp(segsum(a))  # [b, H, c, Q, Q]: exp(sum_{j<k<=i} a[k])
    # 1. within each chunk: attention-like, scores C_i . B_j times the decay from j to i
    scores = torch.einsum("bcihn,bcjhn->bhcij", C, B) * decay
    y = torch.einsum("bhcij,bcjhp->bcihp", scores, xdt)
    # 2. each chunk's own state (from a zero start) at its end: decay from j to the chunk's last token
    states = torch.einsum("bcjhn,bhcj,bcjhp->bchpn", B, decay[..., -1, :], xdt)
    # 3. the states entering each chunk, from S0: between chunks the decay is the chunk's whole sum
    totals = a.sum(-1)  # [b, H, c]
    chunk_decay = torch.exp(segsum(torch.nn.functional.pad(totals, (1, 0))))  # [b, H, c+1, c+1]
    states = torch.cat([S0[:, None], states], dim=1)  # [b, c+1, H, p, N]
    starts = torch.einsum("bhzc,bchpn->bzhpn", chunk_decay, states)[:, :-1]
    # 4. the entering state to each token's output: decay from the chunk's start to i (inclusive)
    into = torch.exp(torch.cumsum(a, dim=-1))  # [b, H, c, Q]
    y = y + torch.einsum("bcihn,bchpn,bhci->bcihp", C, starts, into)
    return y.reshape(b, c * Q, H, p)[:, :L]


def rmsnorm(v, w, G, eps=1e-5):
    """E7 on fp32 v [b, t, E] in G groups of consecutive channels."""
    b, t, E = v.shape
    g = v.reshape(b, t, G, E // G)
    r = (g.pow(2).mean(-1, keepdim=True) + eps).rsqrt()
    return (g * r).reshape(b, t, E) * w.float()


def layer(prm, u, c):
    """E1-E8 for u [Bt, T, D] -> out [Bt, T, D] in u's dtype."""
    import torch
    import torch.nn.functional as F
    E, H, G, N, W, P = (c[k] for k in ["E", "H", "G", "N", "W", "P"])
    Bt, T = u.shape[0], u.shape[1]
    p, hpg, GN = E // H, H // G, G * N
    act = u.dtype
    zxbcdt = F.linear(u, prm["W_in"].t())  # E1
    z, xBC_in, dt_raw = zxbcdt.split([E, E + 2 * GN, H], dim=-1)
    xBC = F.conv1d(xBC_in.transpose(1, 2), prm["conv_w"][:, None, :], prm["conv_b"], padding=W - 1,
                   groups=E + 2 * GN)[..., :T]  # E2: left padding W - 1, the last tap on the current token
    xBC = F.silu(xBC).transpose(1, 2)
    x, B, C = xBC.split([E, GN, GN], dim=-1)
    x = x.reshape(Bt, T, H, p)
    B = B.reshape(Bt, T, G, N).repeat_interleave(hpg, dim=2)  # every head its group's K and Q
    C = C.reshape(Bt, T, G, N).repeat_interleave(hpg, dim=2)
    dt = F.softplus(dt_raw.float() + prm["dt_bias"])  # E3
    A = -torch.exp(prm["A_log"])
    ys = []
    if P > 0:  # E4: causal attention among the prefix, scale 1 / sqrt(N)
        q, k, v = (t[:, :P].transpose(1, 2) for t in (C, B, x))
        d = max(N, p)  # zero columns change neither q·k nor the first p columns of w·v
        q, k, v = (F.pad(t, (0, d - t.shape[-1])) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1.0 / math.sqrt(N))
        ys.append(y[..., :p].transpose(1, 2))
    if P < T:  # E5, E6 in fp32
        S0 = converter(x[:, :P].float(), dt[:, :P], A, B[:, :P].float())
        y_scan = ssd(x[:, P:].float(), dt[:, P:], A, B[:, P:].float(), C[:, P:].float(), S0, c["Q"])
        y_scan = y_scan + prm["D_skip"][:, None] * x[:, P:].float()
        ys.append(y_scan)
    # E7: the attention rows ungated, the scan rows gated by SiLU(z); then E8.
    normed = []
    if P > 0:
        normed.append(rmsnorm(ys[0].float().reshape(Bt, P, E), prm["norm_w"], G))
    if P < T:
        gate = F.silu(z[:, P:].float())
        normed.append(rmsnorm(ys[-1].reshape(Bt, T - P, E) * gate, prm["norm_w"], G))
    y_normed = torch.cat(normed, dim=1).to(act)
    return F.linear(y_normed, prm["W_out"].t())


# ---- the run ------------------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--input", required=True, help="the safetensors file tm-bench wrote")
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--bound", type=float, default=2e-2, help="rel-norm bound of the output check")
    ap.add_argument("--dry-run", action="store_true", help="read and check the file only (no torch)")
    args = ap.parse_args(argv)
    if args.reps < 1 or args.warmup < 0:
        ap.error("--reps must be >= 1 and --warmup >= 0")
    meta, tensors = read_safetensors(args.input)
    cfg = layer_config(meta, tensors)
    if args.dry_run:
        print(json.dumps({"config": cfg, "tensors": {k: v[0] for k, v in sorted(tensors.items())}}))
        return 0
    try:
        import torch
    except ImportError:
        fail("PyTorch is not installed (python3 -c 'import torch' fails)", 3)
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        fail("--device cuda: torch sees no GPU", 2)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    act = torch.bfloat16 if args.dtype == "bf16" else torch.float32

    def tensor(name, dtype):
        shape, values = tensors[name]
        return torch.frombuffer(bytearray(values.tobytes()), dtype=torch.float32).reshape(shape).to(dev, dtype)

    prm = {k: tensor(k, torch.float32 if k in KEEP_FP32 else act).requires_grad_() for k in PARAMS}
    u = tensor("u", act).requires_grad_()
    d_out = tensor("d_out", act)
    ours = tensor("out", torch.float32)

    with torch.no_grad():
        out = layer(prm, u, cfg).float()
    rel = (torch.linalg.vector_norm(ours - out) / torch.linalg.vector_norm(out)).item()
    if not math.isfinite(rel) or rel > args.bound:
        fail(f"P={cfg['P']}: our output differs from PyTorch's by rel-norm {rel:.3e} > {args.bound:.1e}; "
             f"no time counts", 1)

    def forward():
        return layer(prm, u, cfg)

    def forward_backward():
        for t in list(prm.values()) + [u]:
            t.grad = None
        layer(prm, u, cfg).backward(d_out)

    flush = None
    if dev.type == "cuda":
        l2 = torch.cuda.get_device_properties(dev).L2_cache_size
        flush = torch.empty(2 * l2, dtype=torch.uint8, device=dev)

    def timed(fn):
        import time
        for _ in range(args.warmup):
            fn()
        ms = []
        for _ in range(args.reps):
            if flush is not None:
                flush.zero_()
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                ms.append(start.elapsed_time(end))
            else:
                t0 = time.perf_counter()
                fn()
                ms.append((time.perf_counter() - t0) * 1e3)
        ms.sort()
        n = len(ms)
        med = ms[n // 2] if n % 2 else (ms[n // 2 - 1] + ms[n // 2]) / 2
        return {"median_ms": med, "min_ms": ms[0], "max_ms": ms[-1], "reps": n}

    result = {"P": cfg["P"], "dtype": args.dtype, "device": str(dev), "rel_error": rel, "bound": args.bound}
    result["forward"] = timed(forward)  # with autograd recording, as a training step's forward
    result["forward_backward"] = timed(forward_backward)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
