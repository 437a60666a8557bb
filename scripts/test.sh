#!/usr/bin/env bash
# Run every suite, each in its own pytest process (each service is its own program with its
# own tables), then print one total. Usage: scripts/test.sh [suite ...]
# Suites: shared, referrals, providers, cohorts, notifications, insights, deploy (deploy/tests), system (tests/).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PYTEST=("$ROOT/.venv/bin/python" -m pytest -p no:cacheprovider)
REPORTS=$(mktemp -d)
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(shared referrals providers cohorts notifications insights deploy system)

path_of() {
  case "$1" in
    shared) echo shared/tests ;;
    system) echo tests ;;
    deploy) echo deploy/tests ;;
    *) echo "services/$1/tests" ;;
  esac
}

failed_suites=()
for suite in "${suites[@]}"; do
  path=$(path_of "$suite")
  if [ ! -d "$path" ] || [ -z "$(find "$path" -name 'test_*.py' -print -quit)" ]; then
    echo "==> $suite: no tests in $path"
    continue
  fi
  echo "==> $suite ($path)"
  start=$(date +%s)
  "${PYTEST[@]}" "$path" --junitxml="$REPORTS/$suite.xml" || failed_suites+=("$suite")
  echo "    $suite took $(( $(date +%s) - start ))s"
done

"$ROOT/.venv/bin/python" - "$REPORTS" <<'PYEOF'
import sys, pathlib, xml.etree.ElementTree as ET
totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
for report in sorted(pathlib.Path(sys.argv[1]).glob("*.xml")):
    for suite in ET.parse(report).getroot().iter("testsuite"):
        for key in totals:
            totals[key] += int(suite.get(key, 0))
failed = totals["failures"] + totals["errors"]
passed = totals["tests"] - failed - totals["skipped"]
print()
print(f"{passed} passed, {failed} failed" + (f", {totals['skipped']} skipped" if totals["skipped"] else ""))
PYEOF
rm -rf "$REPORTS"
if [ ${#failed_suites[@]} -gt 0 ]; then
  echo "failed suites: ${failed_suites[*]}" >&2
  exit 1
fi
