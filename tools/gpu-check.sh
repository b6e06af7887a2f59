#!/usr/bin/env bash
# One command for a GPU host: every kernel check on the device and compute-sanitizer on small cases, with a
# summary table and JSON in OUTDIR, and a first timing of the bf16 layer. Under 2 minutes without the paper-size
# step (GPU_CHECK_SKIP=paper-size), up to 10 with it; opt-in, the paper-size timings and a profile (below).
#
#   tools/gpu-check.sh OUTDIR [BUILD_DIR]
#
# BUILD_DIR (default: build) holds a build made here or carried from a machine without a GPU (binaries built
# on Debian 12 run on the GPU host unchanged; Boost.Context is linked statically). Steps, each logged to
# OUTDIR/<step>.log:
#   device       nvidia-smi, and what the build sees (tm-verify's header line)
#   verify       tm-verify --backend cuda --seed 1 --json OUTDIR/tm-verify-cuda.json: every kernel check
#   paper-size   tm-verify --backend cuda --suite cuda.mixer_paper_size (opt-in): the paper's layer (T 8192,
#                D 1536, E 3072, H 48, G 8, N 128; P 0, 2048, 8192) forward and backward against the double
#                reference on OMP_NUM_THREADS = every core; the log holds each P's times and every tensor's error
#   mma          test_mma "[cuda]": the tensor cores' mma.sync (cuda/mma.cuh) against the double product and the
#                emulation's result
#   memcheck, racecheck, synccheck, initcheck
#                compute-sanitizer --tool T on tm-verify --backend cuda --cases 3 (small cases of every kernel)
#   bench        (when BUILD_DIR has tm-bench) tm-bench --dtype bf16 --T 2048 --reps 10: the bf16 layer's and each
#                kernel family's times at V9's TransPoints (clamped to 2048), OUTDIR/tm-bench.json and
#                tm-bench.png; the device checks' outcomes are the verify step's JSON (--checks-json), so it
#                refuses when they failed and adds no check time. Limit 120 s for 6 P x 18 timed items x 13
#                calls (the fp32 layer's took 10 s on an H200, 2026-11-26).
# Opt-in steps, run only when named in GPU_CHECK_EXTRA="STEP ..." and only when every step before them passed:
#   paper-bench  tm-bench --dtype bf16 --T 8192 --reps 10 --warmup 2 --baseline (README, "Measured on a GPU"),
#                the checks from the verify step's JSON: OUTDIR/tm-bench-8192.{json,png}, the table in its log
#   profile      ncu (--clock-control none; sections SpeedOfLight, Occupancy, WarpStateStats, LaunchStats,
#                SchedulerStats) on the first 20 launches of the scan's and attention's kernels in one run of the
#                layer at P = 0 and at P = 8192: OUTDIR/profile.log
# GPU_CHECK_SKIP="STEP ..." leaves those steps out (each is listed as skipped; the others' outcome decides the
# exit status), e.g. GPU_CHECK_SKIP=paper-size when a short lease cannot spend minutes on the CPU references.
# A short lease's work in one call (about 7 minutes by the budgets below):
#   GPU_CHECK_SKIP=paper-size GPU_CHECK_EXTRA="paper-bench profile" tools/gpu-check.sh OUTDIR BUILD_DIR
# Exit 0 when every step that ran passed, 1 otherwise, 2 on misuse.
set -uo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ] || [ "${1:-}" = "--help" ]; then
  awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"  # the header comment
  [ "${1:-}" = "--help" ] && exit 0
  exit 2
fi
out="$1"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${2:-$root/build}"
verify="$build/tm-verify"
if [ ! -x "$verify" ]; then
  echo "gpu-check: $verify not found: build first (cmake -S . -B build && cmake --build build --target tm-verify)" >&2
  exit 2
fi
mkdir -p "$out" || exit 2
sanitizer="$(command -v compute-sanitizer || true)"
for c in /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
  [ -z "$sanitizer" ] && [ -x "$c" ] && sanitizer="$c"
done

names=(); statuses=(); seconds=(); details=()
failed=0
# step NAME TIMEOUT_S COMMAND...: runs it, logs it, records pass/fail and time.
step() {
  local name="$1" limit="$2"; shift 2
  local t0=$SECONDS rc
  if [[ " ${GPU_CHECK_SKIP:-} " == *" $name "* ]]; then
    names+=("$name"); statuses+=(skipped); seconds+=(0); details+=("GPU_CHECK_SKIP"); return
  fi
  echo "gpu-check: $name ..." >&2
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  rc=$?
  local status=pass detail
  [ $rc -eq 0 ] || { status=FAIL; failed=1; }
  [ $rc -eq 124 ] && detail="timed out after ${limit} s" || detail="$(tail -n 1 "$out/$name.log" | cut -c1-100)"
  names+=("$name"); statuses+=("$status"); seconds+=("$((SECONDS - t0))"); details+=("$detail")
}

# ran_on_device JSON: tm-verify's JSON has no skipped "cuda" row (no device, or a build without nvcc).
ran_on_device() { ! grep -A1 '"name": "cuda"' "$1" | grep -q '"skipped"'; }
export -f ran_on_device

# The device as the driver and as this build see it (tm-verify's header line names device 0 or why there is none).
step device 60 bash -c "nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; \
  '$verify' --backend cuda --suite cuda.conv --cases 1 | head -n 1 | tee /dev/stderr | grep -q 'device 0:'"
# Every kernel check on the device; a check skipped for want of a device is a failure here.
step verify 300 bash -c "'$verify' --backend cuda --seed 1 --json '$out/tm-verify-cuda.json' && ran_on_device '$out/tm-verify-cuda.json'"
# The paper-size check; a check skipped for want of a device is a failure here too. Its time is the double and
# float references' (the device's is seconds), mostly their GEMMs (the projections and the floors' products, in
# column blocks on the threads) and, at P = 8192, the 8 groups' T x T attention. Measured with the references
# alone on 2 threads: 119 CPU-s for the three P at T = 1024, 262 at T = 2048. Measured on the H100 host's 16 cores
# (2026-11-26, the step's logs of two runs): forward + backward 31-45 + 48-68 s at P = 0, 33-39 + 58-72 s at
# P = 2048, 49-57 + 111 s at P = 8192 (the backward's attention grows as P^2); the whole step 397 s. Budget:
# 540 s; with it the script takes up to 10 minutes.
step paper-size 540 env OMP_NUM_THREADS="$(nproc)" bash -c "'$verify' --backend cuda --suite cuda.mixer_paper_size --seed 1 \
  --json '$out/tm-verify-paper-size.json' && ran_on_device '$out/tm-verify-paper-size.json'"
# The tensor-core wrapper on the hardware; its case prints "skipped: no CUDA device" and passes without one.
step mma 120 bash -c "'$build/test_mma' '[cuda]' | tee /dev/stderr | { ! grep -q 'skipped: no CUDA device'; }"
if [ -n "$sanitizer" ]; then
  for tool in memcheck racecheck synccheck initcheck; do
    step "$tool" 240 "$sanitizer" --tool "$tool" --error-exitcode 1 "$verify" --backend cuda --seed 1 --cases 3
  done
else
  names+=(compute-sanitizer); statuses+=(FAIL); seconds+=(0); details+=("compute-sanitizer not found"); failed=1
fi

# A first timing of the bf16 layer.
if [ -x "$build/tm-bench" ]; then
  step bench 120 "$build/tm-bench" --dtype bf16 --T 2048 --reps 10 --checks-json "$out/tm-verify-cuda.json" \
    --json "$out/tm-bench.json" --plot "$out/tm-bench.png"
fi

# The opt-in steps (header comment), after everything else passed.
extra() { [[ " ${GPU_CHECK_EXTRA:-} " == *" $1 "* ]]; }
if extra paper-bench || extra profile; then
  if [ $failed -ne 0 ]; then
    names+=("${GPU_CHECK_EXTRA}"); statuses+=(skipped); seconds+=(0); details+=("a step before them failed")
  else
    extra paper-bench && step paper-bench 360 "$build/tm-bench" --dtype bf16 --T 8192 --reps 10 --warmup 2 --baseline \
      --checks-json "$out/tm-verify-cuda.json" --json "$out/tm-bench-8192.json" --plot "$out/tm-bench-8192.png"
    ncu="$(command -v ncu || true)"
    for c in /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu; do
      [ -z "$ncu" ] && [ -x "$c" ] && ncu="$c"
    done
    if extra profile && [ -z "$ncu" ]; then
      names+=(profile); statuses+=(FAIL); seconds+=(0); details+=("ncu not found"); failed=1
    elif extra profile; then
      step profile 300 bash -c "for P in 0 8192; do '$ncu' --clock-control none -k 'regex:ssm_|attention_' -c 20 \
        --section SpeedOfLight --section Occupancy --section WarpStateStats --section LaunchStats --section SchedulerStats \
        '$build/tm-bench' --dtype bf16 --T 8192 --P \$P --layer-only --reps 1 --warmup 0 \
        --checks-json '$out/tm-verify-cuda.json' || exit 1; done"
    fi
  fi
fi

{
  printf '%-12s %-6s %8s  %s\n' step status seconds detail
  for i in "${!names[@]}"; do printf '%-12s %-6s %8s  %s\n' "${names[$i]}" "${statuses[$i]}" "${seconds[$i]}" "${details[$i]}"; done
} | tee "$out/summary.txt"
{
  echo '{"steps": ['
  for i in "${!names[@]}"; do
    [ "$i" -gt 0 ] && echo ','
    printf '  {"step": "%s", "status": "%s", "seconds": %s, "detail": %s}' "${names[$i]}" "${statuses[$i]}" "${seconds[$i]}" \
      "$(printf '%s' "${details[$i]}" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))' 2>/dev/null || echo '""')"
  done
  printf '\n], "passed": %s}\n' "$([ $failed -eq 0 ] && echo true || echo false)"
} >"$out/summary.json"
echo "gpu-check: $([ $failed -eq 0 ] && echo 'all passed' || echo 'FAILED'); logs and summary in $out"
exit $failed
