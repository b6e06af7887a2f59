#!/usr/bin/env bash
# Fuzzes the safetensors parser (fixture_format/safetensors.cpp) with libFuzzer + ASan + UBSan for a bounded time.
#
#   tools/run-fuzz.sh [SECONDS [WORK_DIR]]
#
# SECONDS (default 20) bounds the fuzzing run. WORK_DIR (optional) keeps the built binaries between runs
# (rebuilt when a source is newer); without it everything lives in a temp dir. A fresh seed corpus of valid
# files, written by the writer, is made in a temp dir each run. Needs clang++ with libFuzzer (Debian:
# clang + libclang-rt-14-dev); CXX overrides the compiler. Exits 0 when no crash or sanitizer report
# happened, non-zero otherwise (the crashing input and log are kept and their paths printed).
set -uo pipefail

secs="${1:-20}"
work="${2:-}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cxx="${CXX:-clang++}"
case "$(basename "$cxx")" in clang++*) ;; *) cxx=clang++ ;; esac  # CXX may name g++ in a normal build
if ! [[ "$secs" =~ ^[0-9]+$ ]] || [ "$secs" -lt 1 ]; then
  echo "usage: $0 [SECONDS [WORK_DIR]]" >&2
  exit 2
fi
if ! command -v "$cxx" >/dev/null 2>&1; then
  echo "fuzz_safetensors: FAILED: $cxx not found" >&2
  exit 2
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/fuzz-safetensors.XXXXXX")"
keep_tmp=0
cleanup() { [ "$keep_tmp" = 1 ] || rm -rf "$tmp"; }
trap cleanup EXIT
if [ -z "$work" ]; then work="$tmp/bin"; fi
mkdir -p "$work" "$tmp/corpus" "$tmp/artifacts"

srcs=("$root/tools/fuzz_safetensors.cpp" "$root/fixture_format/safetensors.cpp")
deps=("${srcs[@]}" "$root/fixture_format/safetensors.hpp" "$0")
eigen_inc="$(pkg-config --cflags-only-I eigen3 2>/dev/null)"
[ -n "$eigen_inc" ] || eigen_inc="-I/usr/include/eigen3"
common=(-std=c++17 -g -O1 -fno-omit-frame-pointer -I"$root" $eigen_inc)

needs_build() {  # $1: binary
  [ -x "$1" ] || return 0
  local d
  for d in "${deps[@]}"; do [ "$d" -nt "$1" ] && return 0; done
  return 1
}

fuzzer="$work/fuzz_safetensors"
seedgen="$work/fuzz_seed_gen"
if needs_build "$fuzzer"; then
  # -fno-sanitize-recover: every UBSan report aborts, so libFuzzer sees it as a crash.
  if ! "$cxx" "${common[@]}" -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
      "${srcs[@]}" -o "$fuzzer.new" 2>"$tmp/build.log"; then
    cat "$tmp/build.log" >&2
    echo "fuzz_safetensors: FAILED: could not build the fuzzer with $cxx -fsanitize=fuzzer" \
         "(Debian needs libclang-rt-14-dev)" >&2
    exit 2
  fi
  mv "$fuzzer.new" "$fuzzer"
fi
if needs_build "$seedgen"; then
  if ! "$cxx" "${common[@]}" -DTM_FUZZ_SEED_GENERATOR -fsanitize=address,undefined -fno-sanitize-recover=all \
      "${srcs[@]}" -o "$seedgen.new" 2>"$tmp/build.log"; then
    cat "$tmp/build.log" >&2
    echo "fuzz_safetensors: FAILED: could not build the seed generator" >&2
    exit 2
  fi
  mv "$seedgen.new" "$seedgen"
fi
"$seedgen" "$tmp/corpus" >/dev/null || { echo "fuzz_safetensors: FAILED: seed generator" >&2; exit 2; }

# A dictionary of the format's tokens helps the fuzzer reach past the JSON parser.
cat >"$tmp/dict" <<'EOF'
"__metadata__"
"dtype"
"shape"
"data_offsets"
"F64"
"F32"
"BF16"
"I64"
"I32"
"F16"
"{"
"}"
"["
"]"
":"
","
"\"\""
"18446744073709551615"
"9223372036854775808"
"-1"
"1e3"
"null"
EOF

log="$tmp/fuzz.log"
ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1}" \
UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}" \
  "$fuzzer" -max_total_time="$secs" -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -dict="$tmp/dict" -artifact_prefix="$tmp/artifacts/" "$tmp/corpus" >"$log" 2>&1
rc=$?

execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
corpus="$(find "$tmp/corpus" -type f | wc -l)"
findings="$(grep -cE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|==[0-9]+== *ERROR|SUMMARY: (Address|Undefined|Leak)' "$log")"
artifacts="$(find "$tmp/artifacts" -type f | wc -l)"
if [ "$rc" -ne 0 ] || [ "$findings" -ne 0 ] || [ "$artifacts" -ne 0 ]; then
  keep_tmp=1
  tail -n 60 "$log" >&2
  echo "fuzz_safetensors: FAILED (exit $rc, $findings sanitizer/libFuzzer reports) after ${execs:-?} executions;" \
       "log $log, crashing inputs in $tmp/artifacts/" >&2
  exit 1
fi
echo "fuzz_safetensors: OK: ${execs:-?} executions in ${secs} s, no crash or sanitizer report (corpus $corpus files)"
