#!/usr/bin/env python3
"""The math of tools/bench/torch_layer.py's layer() on the CPU without PyTorch (ctest torch_layer_math).

The machines that build and test this project have no PyTorch; the GPU hosts that run tm-bench --baseline
do. So that the baseline's layer is checked before its first GPU run, this test runs torch_layer.layer() on a
small stand-in for the part of torch it calls (NumPy float64 arrays with torch's method names and argument
conventions: split by sizes, transpose of two dims, flip, expand, masked_fill, repeat_interleave, F.pad's
pairs from the last dim, a depthwise conv1d, causal SDPA with its scale argument or 1/sqrt(head size)), on the layer
fixtures (fixtures/layer_*.safetensors: P = 0, mid-chunk, T; G = 1, 2, H), and compares its out with the
fixture's, written by the double reference: rel-norm <= 1e-10. The stand-in has no autograd: the backward
and the timing run only where torch is (tm-bench --baseline). Exit 77 without NumPy or safetensors.
"""
import glob
import importlib.util
import json
import os
import sys
import types

SKIP = 77
try:
    import numpy as np
    from safetensors.numpy import load_file
    from safetensors import safe_open
except ImportError as e:
    print(f"skipped: {e}")
    sys.exit(SKIP)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class T(np.ndarray):
    """A float64 array with the torch.Tensor methods layer() uses."""

    def transpose(self, a, b):
        return np.swapaxes(self, a, b).view(T)

    def permute(self, *dims):
        return np.transpose(self, dims).view(T)

    def reshape(self, *shape):
        return np.reshape(np.asarray(self), shape).view(T)

    def split(self, sizes, dim):
        return [p.view(T) for p in np.split(np.asarray(self), np.cumsum(sizes)[:-1], axis=dim)]

    def repeat_interleave(self, n, dim):
        return np.repeat(np.asarray(self), n, axis=dim).view(T)

    def flip(self, dims):
        return np.flip(np.asarray(self), dims).view(T)

    def expand(self, *shape):
        return np.broadcast_to(np.asarray(self), shape).view(T)

    def masked_fill(self, mask, value):
        return np.where(np.asarray(mask), value, np.asarray(self)).view(T)

    def mean(self, dim, keepdim=False):
        return np.asarray(self).mean(axis=dim, keepdims=keepdim).view(T)

    def sum(self, dim):
        return np.asarray(self).sum(axis=dim).view(T)

    def pow(self, e):
        return (np.asarray(self) ** e).view(T)

    def rsqrt(self):
        return (1 / np.sqrt(np.asarray(self))).view(T)

    def float(self):
        return self

    def to(self, dtype):
        return self

    def t(self):
        return np.asarray(self).T.view(T)

    def new_zeros(self, *shape):
        return np.zeros(shape).view(T)

    @property
    def device(self):
        return "cpu"


def t(a):
    return np.asarray(a, dtype=np.float64).view(T)


def make_torch():
    torch = types.ModuleType("torch")
    torch.bool = bool
    torch.inf = np.inf
    torch.tril = lambda m, diagonal=0: np.tril(np.asarray(m), diagonal).view(T)
    torch.ones = lambda *shape, dtype=None, device=None: np.ones(shape, dtype=dtype or np.float64).view(T)
    torch.cumsum = lambda x, dim: np.cumsum(np.asarray(x), axis=dim).view(T)
    torch.exp = lambda x: np.exp(np.asarray(x)).view(T)
    torch.cat = lambda xs, dim: np.concatenate([np.asarray(x) for x in xs], axis=dim).view(T)
    torch.zeros_like = lambda x: np.zeros_like(np.asarray(x)).view(T)
    torch.einsum = lambda eq, *xs: np.einsum(eq, *[np.asarray(x) for x in xs]).view(T)

    F = types.ModuleType("torch.nn.functional")

    def pad(x, pairs):
        widths = [(0, 0)] * x.ndim
        for i in range(len(pairs) // 2):
            widths[x.ndim - 1 - i] = (pairs[2 * i], pairs[2 * i + 1])
        return np.pad(np.asarray(x), widths).view(T)

    def conv1d(x, w, b, padding, groups):  # depthwise: x [b, C, T], w [C, 1, W]
        x, w, b = np.asarray(x), np.asarray(w), np.asarray(b)
        assert groups == x.shape[1] == w.shape[0] and w.shape[1] == 1
        W = w.shape[2]
        xp = np.pad(x, ((0, 0), (0, 0), (padding, padding)))
        n = xp.shape[2] - W + 1
        out = sum(w[None, :, 0, k, None] * xp[:, :, k:k + n] for k in range(W))
        return (out + b[None, :, None]).view(T)

    def sdpa(q, k, v, is_causal, scale=None):  # torch's default scale: 1 / sqrt(q's head size)
        q, k, v = np.asarray(q), np.asarray(k), np.asarray(v)
        assert is_causal and q.shape[-1] == k.shape[-1]
        s = q @ np.swapaxes(k, -1, -2) * (1 / np.sqrt(q.shape[-1]) if scale is None else scale)
        n = s.shape[-1]
        s = np.where(np.tril(np.ones((n, n), dtype=bool)), s, -np.inf)
        w = np.exp(s - s.max(-1, keepdims=True))
        return ((w / w.sum(-1, keepdims=True)) @ v).view(T)

    F.pad = pad
    F.conv1d = conv1d
    F.scaled_dot_product_attention = sdpa
    F.linear = lambda x, w: (np.asarray(x) @ np.asarray(w).T).view(T)
    F.silu = lambda x: (np.asarray(x) / (1 + np.exp(-np.asarray(x)))).view(T)
    F.softplus = lambda x: np.log1p(np.exp(np.asarray(x))).view(T)
    nn = types.ModuleType("torch.nn")
    nn.functional = F
    torch.nn = nn
    return {"torch": torch, "torch.nn": nn, "torch.nn.functional": F}


def main():
    sys.modules.update(make_torch())
    spec = importlib.util.spec_from_file_location("torch_layer", os.path.join(ROOT, "tools", "bench", "torch_layer.py"))
    tl = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tl)
    files = sorted(glob.glob(os.path.join(ROOT, "fixtures", "layer_*.safetensors")))
    if not files:
        print("no layer fixtures found")
        return 1
    failed = 0
    for path in files:
        with safe_open(path, framework="numpy") as f:
            meta = f.metadata()
        c = json.loads(meta["config"])
        cfg = {"E": c["E"], "H": c["H"], "G": c["G"], "N": c["N"], "W": c["W"], "P": c["P"], "Q": c["chunk"]}
        ts = load_file(path)
        prm = {k: t(ts["param." + k]) for k in tl.PARAMS}
        u = t(ts["input.u"])[None]
        out = np.asarray(tl.layer(prm, u, cfg))[0]
        want = ts["output.out"]
        rel = np.linalg.norm(out - want) / np.linalg.norm(want)
        ok = rel <= 1e-10
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {os.path.basename(path)} (T {c['T']}, P {c['P']}, G {c['G']}, H {c['H']}): "
              f"out rel-norm error {rel:.2e}")
    print(f"{len(files) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
