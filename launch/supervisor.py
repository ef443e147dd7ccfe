"""Keep `mpirun -n N NexusWriterService INSTANCE` running: restart the MPI job when it dies.

A rank that dies takes the whole MPI job down (mpirun aborts the others). The supervisor restarts
it after a short back-off and hands the next run the reason (NXPAR_RESTART_REASON), which the
devices show in their Status; the scans that were being written are reported FAULT by the new run
(see nxpar/driver/journal.py). SIGTERM stops the job and the supervisor.

    python -m launch.supervisor --ranks 4 nexuswriters -- --log=info
"""
from __future__ import annotations

import argparse
import datetime
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

VENV = Path(os.environ.get("NXPAR_VENV", Path(__file__).resolve().parent.parent / ".venv"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("instance")
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--max-restarts", type=int, default=100)
    p.add_argument("--backoff", type=float, default=2.0, help="seconds before a restart")
    p.add_argument("service_args", nargs="*", help="extra NexusWriterService arguments (after --)")
    args = p.parse_args(argv)

    cmd = ["mpirun", "-n", str(args.ranks), str(VENV / "bin" / "NexusWriterService"), args.instance,
           *args.service_args]
    stopping = False
    child: subprocess.Popen | None = None

    def stop(signum, frame):  # noqa: ARG001
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            os.killpg(child.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    env = dict(os.environ)
    restarts = 0
    while True:
        print(f"[supervisor] {datetime.datetime.now():%H:%M:%S} starting: {' '.join(cmd)}", flush=True)
        child = subprocess.Popen(cmd, env=env, start_new_session=True)
        code = child.wait()
        if stopping:
            deadline = time.monotonic() + 20
            while child.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            print(f"[supervisor] stopped (exit {code})", flush=True)
            return 0
        try:  # ranks of the dead job that are still around
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        restarts += 1
        reason = (f"restarted at {datetime.datetime.now():%Y-%m-%d %H:%M:%S} after the MPI job exited with "
                  f"code {code} (restart {restarts})")
        print(f"[supervisor] {reason}", flush=True)
        if restarts > args.max_restarts:
            print("[supervisor] too many restarts, giving up", flush=True)
            return 1
        env["NXPAR_RESTART_REASON"] = reason
        time.sleep(args.backoff)


if __name__ == "__main__":
    sys.exit(main())
