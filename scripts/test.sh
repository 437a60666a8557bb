#!/usr/bin/env bash
# Run every suite, each in its own pytest process (each service is its own program with its
# own tables), then print one total over every pass.
# Usage: scripts/test.sh [--calendar] [suite ...]
# Suites: shared, referrals, providers, cohorts, notifications, insights, deploy (deploy/tests), system (tests/).
# With no suite: every suite on the real clock, then the calendar pass. With --calendar: only the
# calendar pass (of the named suites, or of shared and every service): the same tests with the
# Python clock moved to each instant of CALENDAR_CLOCKS (see pathways_shared.testing). The system
# tests run the services as processes on the real clock, and deploy has no dates: both stay out.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PYTEST=("$ROOT/.venv/bin/python" -m pytest -p no:cacheprovider)
REPORTS=$(mktemp -d)
trap 'rm -rf "$REPORTS"' EXIT
# a day more than a year ahead; a leap day; the hour after the spring clock change (01:00 UTC
# on 2027-03-28 is 02:00 BST)
CALENDAR_CLOCKS=${CALENDAR_CLOCKS:-"2028-06-30T23:30:00Z 2028-02-29T12:00:00Z 2027-03-28T01:30:00Z"}
CALENDAR_SUITES=(shared referrals providers cohorts notifications insights)

real_clock=1
calendar=0
if [ "${1:-}" = "--calendar" ]; then
  shift
  real_clock=0
  calendar=1
fi
suites=("$@")
if [ ${#suites[@]} -eq 0 ]; then
  if [ $real_clock -eq 1 ]; then
    suites=(shared referrals providers cohorts notifications insights deploy system)
    calendar=1
  else
    suites=("${CALENDAR_SUITES[@]}")
  fi
fi

path_of() {
  case "$1" in
    shared) echo shared/tests ;;
    system) echo tests ;;
    deploy) echo deploy/tests ;;
    *) echo "services/$1/tests" ;;
  esac
}

has_tests() {
  [ -d "$1" ] && [ -n "$(find "$1" -name 'test_*.py' -print -quit)" ]
}

run_suite() {  # run_suite <label> <suite>: one pytest process; a failure is noted in $REPORTS/failed
  local label=$1 suite=$2 path start
  path=$(path_of "$suite")
  if ! has_tests "$path"; then
    echo "==> $label: no tests in $path"
    return
  fi
  echo "==> $label ($path)"
  start=$(date +%s)
  "${PYTEST[@]}" "$path" --junitxml="$REPORTS/$label.xml" || echo "$label" >> "$REPORTS/failed"
  echo "    $label took $(( $(date +%s) - start ))s"
}

calendar_day() {  # calendar_day <clock>: the calendar suites among those asked for, on that clock
  local clock=$1 suite
  for suite in "${suites[@]}"; do
    case " ${CALENDAR_SUITES[*]} " in *" $suite "*) ;; *) continue ;; esac
    PATHWAYS_TEST_CLOCK=$clock run_suite "$suite@$clock" "$suite"
  done
}

if [ $real_clock -eq 1 ]; then
  for suite in "${suites[@]}"; do
    run_suite "$suite" "$suite"
  done
fi

if [ $calendar -eq 1 ]; then
  # The tests mostly wait (on the relay, the consumers, the broker), so the days run side by
  # side, CALENDAR_JOBS at a time; each day's log is printed when it ends. Every pytest process
  # has its own database and subject prefixes, so they cannot meet.
  calendar_start=$(date +%s)
  jobs_at_once=${CALENDAR_JOBS:-3}
  echo "==> the calendar pass: ${CALENDAR_CLOCKS// /, } ($jobs_at_once at a time)"
  if [ "$jobs_at_once" -le 1 ]; then
    for clock in $CALENDAR_CLOCKS; do calendar_day "$clock"; done
  else
    day_logs=()
    running=0
    for clock in $CALENDAR_CLOCKS; do
      if [ $running -ge "$jobs_at_once" ]; then
        wait -n
        running=$((running - 1))
      fi
      log="$REPORTS/day-${#day_logs[@]}.log"
      day_logs+=("$log")
      calendar_day "$clock" > "$log" 2>&1 &
      running=$((running + 1))
    done
    wait
    for log in "${day_logs[@]}"; do cat "$log"; done
  fi
  echo "    the calendar pass took $(( $(date +%s) - calendar_start ))s"
fi

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
if [ -s "$REPORTS/failed" ]; then
  echo "failed: $(tr '\n' ' ' < "$REPORTS/failed")" >&2
  exit 1
fi
