#!/usr/bin/env python3
"""CTest fixture for the privileged integration tests: `up` creates the lab
(tests/lab/lab.sh up), `down` removes it.  TP_LAB / TP_LAB_NET come from the
environment (set by tests/integration/CMakeLists.txt).

Not root or no network namespaces: prints the skip reason and exits 0, so the
fixture never fails there (every dependent test then exits 77 = skipped).
`down` never fails: it must not turn a green run red, and it runs even when
tests failed.
"""

import argparse
import os
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tplab  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("action", choices=("up", "down"))
    a = ap.parse_args()

    if not tplab.privileged():
        print(tplab.SKIP_MESSAGE + " (lab %s not %s)" % (tplab.LAB, "created" if a.action == "up" else "touched"))
        return 0

    lab_sh = os.path.join(a.source_dir, "tests", "lab", "lab.sh")
    try:
        r = subprocess.run([lab_sh, a.action], timeout=60)
        rc = r.returncode
    except subprocess.TimeoutExpired:
        print("lab.sh %s did not finish within 60 s" % a.action)
        rc = 1
    if a.action == "down":
        left = [n for n in (tplab.CLI_NS, tplab.SRV_NS) if os.path.exists("/run/netns/" + n)]
        if left:
            print("warning: namespaces still present after lab.sh down: %s" % ", ".join(left))
        return 0
    if rc == 0:
        subprocess.run([lab_sh, "status"], timeout=30)
    return rc


if __name__ == "__main__":
    sys.exit(main())
