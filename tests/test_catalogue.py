#!/usr/bin/env python3
"""Every check of the catalogue runs under ctest.

Each check that `tm-verify --list` prints (the fixture rows and the CUDA row aside, which have tests of their
own) must be run by a test in tests/*.cpp, as require_check("<name>"); and every require_check names a check
that exists. A check added to verify/ without its one-line TEST_CASE would otherwise run only in tm-verify.

    python3 tests/test_catalogue.py TM_VERIFY_BINARY
"""
import os
import re
import subprocess
import sys


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    listing = subprocess.run([sys.argv[1], "--list"], check=True, capture_output=True, text=True).stdout
    catalogue = {line.split()[0] for line in listing.splitlines()
                 if line.strip() and not line.startswith(("fixture:", "cuda"))}
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    required = {}
    for name in sorted(os.listdir(tests_dir)):
        if name.endswith(".cpp"):
            for check in re.findall(r'require_check\("([^"]+)"', open(os.path.join(tests_dir, name)).read()):
                required[check] = name
    failures = [f"check '{c}' is in the catalogue but no test in tests/ calls require_check(\"{c}\")"
                for c in sorted(catalogue - set(required))]
    failures += [f"tests/{required[c]}: require_check(\"{c}\") names no check of the catalogue"
                 for c in sorted(set(required) - catalogue)]
    for f in failures:
        print("FAIL " + f)
    print(f"{len(catalogue)} checks in the catalogue, {len(required)} run by ctest; "
          f"{len(failures)} problem(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
