#!/usr/bin/env python3
"""Does the harness have teeth? Plants realistic bugs in the reference, one at a time, in a throw-away copy of
the repository, and records which tm-verify checks catch each one (verify/PLANTED_BUGS.md holds the results).

    python3 tools/planted_bugs.py [--seed 1] [--only NAME ...] [--keep DIR] [--json FILE] [--markdown FILE]

For every bug: copy the working tree (git ls-files, so uncommitted changes count) into a temporary directory,
replace one exact piece of reference code (the bug must apply exactly once, else the script stops: the
reference moved and the bug needs updating), build tm-verify there (CPU only) and run it with its defaults
and --seed. The repository itself is never touched. The golden fixtures are the committed ones, made by the
correct reference, so a fixture that fails is a regression test doing its job.

Exit 0 when every bug was caught by at least one check, 1 when one was not (a missing property), 2 on misuse.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

# name, file, what the bug is (as a reader of the report would describe it), the exact code, its replacement.
BUGS = [
    ("converter_off_by_one", "reference/converter.hpp",
     "Memory Converter: a prefix token's weight includes its own decay (sum over r >= s instead of r > s, E5)",
     "(A(h) * later_steps(dt, h).array()).exp();",
     "(A(h) * (later_steps(dt, h) + dt.col(h)).array()).exp();"),
    ("group_of_modulo", "reference/config.hpp",
     "head h reads group h % G instead of h / (H/G) (scan, converter; attention loops over groups itself)",
     "int group_of(int h) const { return h / heads_per_group(); }",
     "int group_of(int h) const { return h % G; }"),
    ("attention_mask_leak", "reference/attention.hpp",
     "causal mask off by one: query t also sees key t+1",
     "const Eigen::Index visible = first + i + 1;",
     "const Eigen::Index visible = std::min(n, first + i + 2);"),
    ("chunk_state_passing", "reference/ssm.hpp",
     "chunked scan, stage 2: the state entering a chunk is decayed by its first token only, not the whole chunk",
     "std::exp(cum(len - 1)) * S_start",
     "std::exp(cum(0)) * S_start"),
    ("scan_backward_dt", "reference/ssm.hpp",
     "scan backward: d_dt misses the decay's dependence on dt (the <Gs, S_prev> a A term)",
     "g.d_dt(t, h) = x_t.dot(Gs * B_t) + d_a * a * A(h);",
     "g.d_dt(t, h) = x_t.dot(Gs * B_t);"),
    ("missing_D_skip", "reference/mixer.hpp",
     "mixer forward: the D skip of the scan tokens is left out (E6); the backward still has it",
     "Mat<S>(f.scan.y + skip_term(prm, Mat<S>(f.x.bottomRows(L))))",
     "Mat<S>(f.scan.y)"),
    ("converter_reads_queries", "reference/mixer.hpp",
     "mixer forward: the converter is given the queries C instead of the keys B (E5); the backward uses B",
     "memory_converter<S>(cfg, f.x.topRows(P), f.B.topRows(P),",
     "memory_converter<S>(cfg, f.x.topRows(P), f.C.topRows(P),"),
    ("attention_scale_1_over_N", "reference/attention.hpp",
     "attention scores scaled by 1/N instead of 1/sqrt(N), in the forward AND the backward (consistently wrong)",
     None, None),  # two replacements, below
    ("norm_eps", "reference/norm.hpp",
     "RMSNorm eps 1e-6 instead of 1e-5 (forward and backward share it: consistently wrong)",
     "constexpr double kNormEps = 1e-5;",
     "constexpr double kNormEps = 1e-6;"),
    ("step_size_backward", "reference/step_size.hpp",
     "step size backward: softplus' evaluated at dt_raw, without the bias",
     "(dt_raw.rowwise() + dt_bias.transpose()).unaryExpr([](S v) { return sigmoid(v); })",
     "dt_raw.unaryExpr([](S v) { return sigmoid(v); })"),
    ("conv_shift", "reference/conv.hpp",
     "causal conv forward reads one token further back (t - W + k instead of t - W + 1 + k)",
     "const Eigen::Index src = t - W + 1 + k;\n      if (src >= 0) pre.row(t)",
     "const Eigen::Index src = t - W + k;\n      if (src >= 0) pre.row(t)"),
    ("decode_state_frozen", "reference/inference.hpp",
     "decode: the running scan state is not updated while the layer attends (t < P), so at P it is stale",
     "  layer.scan_state = scan.final_state;\n",
     "  if (!layer.attends(t)) layer.scan_state = scan.final_state;\n"),
    ("tied_head_gradient", "reference/model.hpp",
     "model backward: with a tied head, the head's gradient is not added to the embedding's",
     "    g.embedding += head.d_W.transpose();\n",
     "    (void)head;\n"),
    # The two cancellations of issue 8 (DESIGN.md section 3), put back: right in exact arithmetic, wrong in double.
    ("scan_decay_by_difference", "reference/ssm.hpp",
     "quadratic scan (and the chunked form's stages 1 and 3): Lmask[t, s] = exp(cumA[t] - cumA[s]), a difference of "
     "two cumulative sums, instead of the segment sum accumulated directly",
     # The code before issue 8, as it was: one cumA per head, so that the two sums share their rounding.
     "  for (Eigen::Index t = 0; t < T; ++t) {\n    Lmask(t, t) = 1;\n    S segment = 0;  // Σ_{r=s+1..t} dt[r]·A\n"
     "    for (Eigen::Index s = t - 1; s >= 0; --s) Lmask(t, s) = std::exp(segment += dt(s + 1, h) * A(h));\n  }\n",
     "  const Vec<S> cum = cumulative_log_decay(dt, A, h);\n  for (Eigen::Index t = 0; t < T; ++t)\n"
     "    for (Eigen::Index s = 0; s <= t; ++s) Lmask(t, s) = std::exp(cum(t) - cum(s));\n"),
    ("converter_suffix_by_subtraction", "reference/converter.hpp",
     "converter backward: the sums over r > s of dt[r] as the total minus a running prefix sum, not accumulated "
     "from the end",
     "    const Vec<S> later = later_steps(dt, h);",
     "    Vec<S> later(P);\n    S running = dt.col(h).sum();\n"
     "    for (Eigen::Index s = 0; s < P; ++s) later(s) = running -= dt(s, h);"),
]
# The attention scale appears in the forward and in the backward.
SCALE_EDITS = [
    ("C.middleCols(g * N, N) * B.middleCols(g * N, N).transpose() / std::sqrt(S(N));",
     "C.middleCols(g * N, N) * B.middleCols(g * N, N).transpose() / S(N);"),
    ("d_scores /= std::sqrt(S(N));",
     "d_scores /= S(N);"),
]


def edits_of(bug):
    name, path, _, old, new = bug
    return SCALE_EDITS if name == "attention_scale_1_over_N" else [(old, new)]


def copy_tree(repo, dest):
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                           check=True, capture_output=True).stdout.decode().split("\0")
    for f in filter(None, files):
        src = os.path.join(repo, f)
        if not os.path.isfile(src):
            continue  # deleted in the working tree
        os.makedirs(os.path.dirname(os.path.join(dest, f)), exist_ok=True)
        shutil.copy2(src, os.path.join(dest, f))


def plant(dest, bug):
    path = os.path.join(dest, bug[1])
    text = open(path).read()
    for old, new in edits_of(bug):
        if text.count(old) != 1:
            sys.exit(f"planted_bugs.py: bug '{bug[0]}': the code to replace occurs {text.count(old)} times in "
                     f"{bug[1]} (expected once): update the bug to the current reference")
        text = text.replace(old, new)
    open(path, "w").write(text)


def run_tm_verify(dest, build, seed):
    out_json = os.path.join(build, "result.json")
    p = subprocess.run([os.path.join(build, "tm-verify"), "--backend", "cpu", "--seed", str(seed), "--json",
                        out_json, "--fixtures", os.path.join(dest, "fixtures")], capture_output=True, text=True)
    results = json.load(open(out_json)) if os.path.exists(out_json) else None
    return p.returncode, p.stdout + p.stderr, results


def markdown_table(summary):
    """The results as a Markdown table: one row per bug; the properties and the fixtures that caught it."""
    rows = ["| bug (file) | what | properties that failed (worst tensor, rel error) | fixtures that failed |",
            "| --- | --- | --- | --- |"]
    for r in summary:
        props = [c for c in r["caught_by"] if not c.startswith("fixture:")]
        fixtures = [c[len("fixture:"):].replace(".safetensors", "") for c in r["caught_by"] if c.startswith("fixture:")]
        props_text = ", ".join(f"`{c}` ({r['worst'][c][0]}, {r['worst'][c][1]:.1e})" for c in props) or "**none**"
        rows.append(f"| `{r['bug']}` ({r['file'].split('/')[-1]}) | {r['description']} | {props_text} | "
                    f"{len(fixtures)}: {', '.join(fixtures) or '-'} |")
    return "\n".join(rows) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1, help="tm-verify --seed (default 1)")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="plant only these bugs (names: see --list)")
    ap.add_argument("--list", action="store_true", help="list the bugs and exit")
    ap.add_argument("--keep", metavar="DIR", help="write each bug's tm-verify output to DIR/<name>.txt")
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON")
    ap.add_argument("--markdown", metavar="FILE", help="write the results as a Markdown table")
    args = ap.parse_args()
    if args.list:
        for b in BUGS:
            print(f"{b[0]:26} {b[1]:28} {b[2]}")
        return 0
    names = [b[0] for b in BUGS]
    for n in args.only or []:
        if n not in names:
            print(f"planted_bugs.py: no bug named '{n}'; the bugs are: {', '.join(names)}", file=sys.stderr)
            return 2
    bugs = [b for b in BUGS if not args.only or b[0] in args.only]
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
    summary = []
    with tempfile.TemporaryDirectory(prefix="tm-planted-") as tmp:
        clean = os.path.join(tmp, "clean")
        copy_tree(repo, clean)
        build = os.path.join(tmp, "build")
        subprocess.run(["cmake", "-S", clean, "-B", build, "-DTM_ENABLE_CUDA=OFF", "-DCMAKE_BUILD_TYPE=Release"],
                       check=True, capture_output=True)
        for i, bug in enumerate(bugs):
            start = time.time()
            print(f"[{i + 1}/{len(bugs)}] {bug[0]}: {bug[2]}", flush=True)
            # Plant into the configured source tree, build, then restore the file for the next bug.
            path = os.path.join(clean, bug[1])
            original = open(path).read()
            plant(clean, bug)
            try:
                b = subprocess.run(["cmake", "--build", build, "-j", str(os.cpu_count() or 2), "--target", "tm-verify"],
                                   capture_output=True, text=True)
                if b.returncode != 0:
                    print(b.stdout[-3000:] + b.stderr[-3000:])
                    sys.exit(f"planted_bugs.py: bug '{bug[0]}' does not compile")
                rc, output, results = run_tm_verify(clean, build, args.seed)
            finally:
                open(path, "w").write(original)
            caught = [r for r in (results or {}).get("checks", []) if r.get("passed") is False]
            print(f"    exit {rc}; caught by {len(caught)}: {', '.join(r['name'] for r in caught) or 'NOTHING'} "
                  f"({time.time() - start:.0f} s)", flush=True)
            if args.keep:
                open(os.path.join(args.keep, bug[0] + ".txt"), "w").write(output)
            summary.append({"bug": bug[0], "file": bug[1], "description": bug[2], "exit": rc,
                            "caught_by": [r["name"] for r in caught],
                            "worst": {r["name"]: [r.get("worst_tensor"), r.get("worst_rel")] for r in caught}})
    if args.json:
        json.dump(summary, open(args.json, "w"), indent=1)
    if args.markdown:
        open(args.markdown, "w").write(markdown_table(summary))
    missed = [s["bug"] for s in summary if not s["caught_by"]]
    print(f"{len(summary) - len(missed)} caught, {len(missed)} missed" + (f": {', '.join(missed)}" if missed else ""))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
