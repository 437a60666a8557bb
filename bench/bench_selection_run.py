"""Benchmark 4: the cohort selection run at 100,000 nominals and 1,000,000 offences. Goal: < 10 s.

    .venv/bin/python bench/bench_selection_run.py [--runs 3] [any option of the cohorts bench]

The cohorts engineer's benchmark (services/cohorts/bench/bench_selection.py, not edited here)
does the work: a scratch database migrated with the cohorts migrations, 100,000 nominals and
1,000,000 offences generated in SQL (a fixed seed), then the selection run as
`POST /selection-runs` performs it (`cohorts.service.run_selection`: the SQL aggregate, the
rules, storing the run and its outbox event), timed in-process (no HTTP) several times.
This wrapper prints the machine, runs it (3 runs by default rather than its 5, to stay
within a few minutes on this machine) and states the median against the goal.
"""

from __future__ import annotations

import re
import subprocess
import sys

from _system import PY, ROOT, goal, machine_report

COHORTS_BENCH = ROOT / "services" / "cohorts" / "bench" / "bench_selection.py"


def main() -> None:
    machine_report("Cohort selection run: 100,000 nominals, 1,000,000 offences")
    args = sys.argv[1:]
    if not any(a.startswith("--runs") for a in args):
        args = ["--runs", "3", *args]
    print(f"running     {COHORTS_BENCH.relative_to(ROOT)} {' '.join(args)}", flush=True)
    process = subprocess.Popen([PY, str(COHORTS_BENCH), *args], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    median = None
    assert process.stdout is not None
    for line in process.stdout:
        print(line, end="", flush=True)
        found = re.search(r"whole run \(as POST /selection-runs\) ([0-9.]+)s", line)
        if found:
            median = float(found.group(1))
    if process.wait() != 0:
        sys.exit(process.returncode)
    if median is None:
        print("could not read the median from the cohorts benchmark's output")
        sys.exit(1)
    goal("4. selection run 100k/1M", f"median {median:.2f} s", "< 10 s", median < 10)


if __name__ == "__main__":
    main()
