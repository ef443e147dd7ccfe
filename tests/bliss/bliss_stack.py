"""The real-BLISS stack of the BLISS tier, all on 127.0.0.1 inside the caller's network namespace.

Two redis-stack servers (Beacon settings; blissdata data), the Tango database, Beacon (BLISS 2.4.0,
`.venv-bliss`) on a copy of `tests/bliss/beacon/`, the registered writer and
`mpirun -n RANKS NexusWriterService`, all through launch.stack.Stack (free ports, PID files,
stopped by PID). Beacon gets both Redis servers as external addresses: the tier starts them itself
(nxpar's redis-stack with libssl1.1), so Beacon starts no redis-server of its own and its scan
counter starts from zero in every run. nxpar's pytango Tango database serves both BLISS and the
writer (the one the rest of the suite uses; Beacon's would need NosqlTangoDB).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from launch.stack import Stack, _wait, free_port  # noqa: E402

BLISS_VENV = Path(os.environ.get("NXPAR_BLISS_VENV", ROOT / ".venv-bliss"))
BEACON_CONFIG = Path(__file__).resolve().parent / "beacon"
SESSION = "nxbliss"


def in_private_netns() -> bool:
    """True when this process's network namespace has only the loopback interface (unshare -n)."""
    names = [line.split(":")[0].strip() for line in Path("/proc/net/dev").read_text().splitlines()[2:]]
    return names == ["lo"]


class BlissStack(Stack):
    """Stack + Beacon + the writer service for the BLISS session `nxbliss`."""

    def start_all(self, ranks: int = 3, log_level: str = "INFO") -> None:
        self.data_dir = self.rundir / "data"
        self.data_dir.mkdir(exist_ok=True)
        self.start_redis()                                        # data (blissdata-initialised)
        self.settings_url = self.start_redis(init_db=False, name="redis_settings")
        self.start_tango_db()
        os.environ.update(self.env)
        self.start_beacon()
        self.devname = self.register(SESSION, "nxbliss")
        self.bliss_writer_name = self.register_bliss_writer(SESSION, "nxbliss")  # the "mapping" route
        self.start_service("nxbliss", ranks, log_level)
        self.proxy = self.wait_device(self.devname)
        self.bliss_writer = self.wait_device(self.bliss_writer_name)

    def register_bliss_writer(self, session: str, instance: str) -> str:
        """`RegisterNexusWriter SESSION --class BlissWriter`: the device of BLISS's "mapping" route."""
        cmd = [sys.executable, "-m", "nxpar.service.register", session, "--class", "BlissWriter", "--instance", instance,
               "--domain", "id00"]
        out = subprocess.run(cmd, env={**self.process_env(), "PYTHONPATH": str(ROOT)}, check=True,
                             capture_output=True, text=True)
        return out.stdout.strip().splitlines()[-1]

    def start_beacon(self) -> None:
        db = self.rundir / "beacon"
        shutil.copytree(BEACON_CONFIG, db, dirs_exist_ok=True)
        port = free_port()
        data_url = self.env["REDIS_DATA_URL"]
        cmd = [str(BLISS_VENV / "bin" / "beacon-server"), f"--db-path={db}", f"--port={port}",
               f"--redis-address={self.settings_url}", f"--redis-data-address={data_url}",
               "--tango-port=0", "--homepage-port=0", "--log-server-port=0", "--log-viewer-port=0",
               f"--redis-socket={self.rundir / 'redis.sock'}",
               f"--redis-data-socket={self.rundir / 'redis_data.sock'}", "--log-level=WARN"]
        env = {"PATH": f"{BLISS_VENV / 'bin'}:{os.environ['PATH']}", "TMPDIR": str(self.rundir),
               "PYTHONPATH": ""}
        proc = self._spawn("beacon", cmd, env=env)

        def ready() -> bool:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True

        _wait("beacon", ready, 60, proc, self.rundir / "beacon.log")
        self.env["BEACON_HOST"] = f"127.0.0.1:{port}"
        self._save_env()

    def bliss_env(self) -> dict[str, str]:
        """Environment of a BLISS process of this stack."""
        # this checkout's stand-ins first (the venv's .pth names the checkout that built it)
        return {**os.environ, **self.env, "NXBLISS_DATA": str(self.data_dir), "TMPDIR": str(self.rundir),
                "PYTHONPATH": str(ROOT / "launch" / "bliss_env"), "PATH": f"{BLISS_VENV / 'bin'}:{os.environ['PATH']}",
                "BEAMLINENAME": "id00", "QT_QPA_PLATFORM": "offscreen"}


class BlissDriver:
    """One BLISS session process (`driver.py` in `.venv-bliss`) running scenarios on request."""

    def __init__(self, stack: BlissStack) -> None:
        self.stack = stack
        self.outdir = stack.rundir / "scenarios"
        self.outdir.mkdir(exist_ok=True)
        self.requests = 0
        log = open(stack.rundir / "bliss_driver.log", "ab")
        self.proc = subprocess.Popen(
            [str(BLISS_VENV / "bin" / "python"), str(Path(__file__).with_name("driver.py")), SESSION,
             str(self.outdir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
            env=stack.bliss_env(), cwd=stack.rundir, start_new_session=True, text=True, bufsize=1)
        (stack.rundir / "bliss_driver.pid").write_text(str(self.proc.pid))
        self._expect("ready", timeout=180)

    def _expect(self, what: str, timeout: float, request_id: int | None = None) -> dict:
        import json
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                break
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"BLISS driver exited ({self.proc.poll()}): {self.log_tail()}")
            if line.startswith("NXBLISS "):
                msg = json.loads(line[8:])
                if msg.get("event") == what and msg.get("id") == request_id:  # not a late answer
                    return msg
        raise TimeoutError(f"BLISS driver: no {what!r} after {timeout}s: {self.log_tail()}")

    def log_tail(self, n: int = 4000) -> str:
        log = self.stack.rundir / "bliss_driver.log"
        return log.read_text(errors="replace")[-n:] if log.exists() else ""

    def run(self, scenario: str, timeout: float = 120, args: tuple = ()) -> dict:
        """Run one scenario of driver.py (with `args`); returns its report (scans, BLISS's data saved as .npz)."""
        import json

        self.requests += 1
        self.proc.stdin.write(json.dumps({"id": self.requests, "scenario": scenario, "args": list(args)}) + "\n")
        self.proc.stdin.flush()
        msg = self._expect("done", timeout, self.requests)
        if msg.get("error"):
            raise RuntimeError(f"scenario {scenario} failed in BLISS: {msg['error']}\n{self.log_tail()}")
        return msg

    def close(self) -> None:
        from launch.stack import stop_pidfile

        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=20)
        except Exception:
            pass
        stop_pidfile(self.stack.rundir / "bliss_driver.pid", timeout=5)
