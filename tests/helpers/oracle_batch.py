"""Run many ``esptool`` invocations in one process (a test oracle, run as a subprocess).

Usage: python oracle_batch.py JOBS.json RESULTS.json
JOBS is a list of argument lists for ``esptool``; RESULTS gets, per job,
``{"ok": bool, "error": str}``. One process amortises esptool's start-up over
hundreds of conversions; the tests still only talk to esptool's command line.
"""

import contextlib
import io
import json
import sys
from pathlib import Path

import esptool


def main() -> None:
    jobs = json.loads(Path(sys.argv[1]).read_text())
    results = []
    for argv in jobs:
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                esptool.main(argv)
            results.append({"ok": True, "error": ""})
        except BaseException as exc:  # FatalError, SystemExit from click, or a crash
            results.append({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
    Path(sys.argv[2]).write_text(json.dumps(results))


if __name__ == "__main__":
    main()
