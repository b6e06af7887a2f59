#!/usr/bin/env bash
# What a short GPU lease is for, as one command: the checks first, then the paper-size timings and a profile of
# the kernels that take the time (about 7 minutes of an H100's, budgets below; a lease has 15).
#
#   tools/gpu-session.sh OUTDIR [BUILD_DIR]
#
# Steps, each with a time limit, their output in OUTDIR:
#   check    tools/gpu-check.sh OUTDIR/check BUILD_DIR without its paper-size step (every kernel check on the
#            device, compute-sanitizer, the T = 2048 timing; under 2 minutes): OUTDIR/check/summary.txt
#   bench    only when check passed: tm-bench --dtype bf16 --T 8192 --reps 10 --warmup 2 --baseline, its device
#            checks read from check's JSON (README, "Measured on a GPU"): OUTDIR/tm-bench-8192.{txt,json,png}
#   profile  only when check passed and ncu is found: one run of the layer at P = 0 and at P = 8192 (tm-bench
#            --layer-only --reps 1 --warmup 0) under ncu, the first launches of the scan's and attention's
#            kernels, sections SpeedOfLight, Occupancy, WarpStateStats, LaunchStats, SchedulerStats, clocks not
#            locked: OUTDIR/ncu-P0.txt, OUTDIR/ncu-P8192.txt
# Exit status: check's (0 when every check passed); a failed or timed-out bench or profile is reported, not fatal.
set -uo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ] || [ "${1:-}" = "--help" ]; then
  awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"  # the header comment
  [ "${1:-}" = "--help" ] && exit 0
  exit 2
fi
out="$1"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${2:-$root/build}"
bench="$build/tm-bench"
mkdir -p "$out" || exit 2
if [ ! -x "$bench" ]; then
  echo "gpu-session: $bench not found: build first (cmake --build build)" >&2
  exit 2
fi

say() { echo "gpu-session: $*" | tee -a "$out/session.txt" >&2; }

GPU_CHECK_SKIP="paper-size ${GPU_CHECK_SKIP:-}" timeout 300 bash "$root/tools/gpu-check.sh" "$out/check" "$build"
check=$?
say "check: exit $check (summary: $out/check/summary.txt)"
if [ $check -ne 0 ]; then
  say "bench and profile skipped: the checks did not pass"
  exit 1
fi

checks_json="$out/check/tm-verify-cuda.json"
timeout 360 "$bench" --dtype bf16 --T 8192 --reps 10 --warmup 2 --baseline --checks-json "$checks_json" \
  --json "$out/tm-bench-8192.json" --plot "$out/tm-bench-8192.png" >"$out/tm-bench-8192.txt" 2>&1
say "bench: exit $? ($out/tm-bench-8192.txt)"

ncu="$(command -v ncu || true)"
for c in /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu; do
  [ -z "$ncu" ] && [ -x "$c" ] && ncu="$c"
done
if [ -z "$ncu" ]; then
  say "profile skipped: ncu not found"
  exit 0
fi
for P in 0 8192; do
  timeout 150 "$ncu" --clock-control none -k 'regex:ssm_|attention_' -c 20 --section SpeedOfLight --section Occupancy \
    --section WarpStateStats --section LaunchStats --section SchedulerStats \
    "$bench" --dtype bf16 --T 8192 --P "$P" --layer-only --reps 1 --warmup 0 --checks-json "$checks_json" \
    >"$out/ncu-P$P.txt" 2>&1
  say "profile at P = $P: exit $? ($out/ncu-P$P.txt)"
done
exit 0
