"""`nxpar-supervision supervisord|systemd INSTANCE --ranks N ...`: the supervisord program section or the
systemd unit that runs `mpirun -n N NexusWriterService INSTANCE` as a beamline service, filled in for this
installation (the paths of mpirun, NexusWriterService and its environment; TANGO_HOST, REDIS_DATA_URL or
BEACON_HOST, NXPAR_STATE_DIR; the MPI network), printed to stdout. Templates: supervision_templates/.

Both restart the job whenever it dies, stop it with SIGTERM to mpirun (the service's clean stop: scans
finalised, writer ranks dismissed, within seconds) and kill every rank if it does not stop within the stop
timeout. Why a run was restarted is the service's own business (run_marker.py), so any supervisor will do.

The MPI network (`mpi_network`): a one-host job keeps its ranks' MPI traffic on loopback
(UCX_NET_DEVICES=lo); a multi-node job uses the interface the operator names (--iface, env NXPAR_MPI_IFACE):
mpirun -iface IFACE and UCX_NET_DEVICES=IFACE (an explicit UCX_NET_DEVICES, e.g. an InfiniBand port
mlx5_0:1, wins). docs/operating.md says what stays off loopback and why.
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from enum import Enum
from importlib import resources
from pathlib import Path
from string import Template

from ..driver.journal import state_dir

SHIM_NAME = "libnxpar_loopback_bind.so"
IFACE_ENV = "NXPAR_MPI_IFACE"
LOOPBACK = "lo"
DEFAULT_STOP_TIMEOUT_S = 60  # > the service's clean stop: each running scan ≤ 10 s, the writer ranks ≤ 30 s
PASSED_ON = ("TANGO_HOST", "REDIS_DATA_URL", "BEACON_HOST")  # from the generator's environment, if set


class Supervisor(Enum):
    SUPERVISORD = "supervisord"
    SYSTEMD = "systemd"

    @property
    def template(self) -> str:
        name = {"supervisord": "supervisord.conf", "systemd": "systemd.service"}[self.value]
        return resources.files(__package__).joinpath("supervision_templates", name).read_text()


def loopback_shim() -> Path | None:
    """The library that keeps hydra's control port on loopback (supervision_templates/loopback_bind.c,
    built by launch/setup.sh into <prefix>/lib/nxpar/), or NXPAR_LOOPBACK_SHIM; None if not built."""
    path = Path(os.environ.get("NXPAR_LOOPBACK_SHIM") or Path(sys.prefix) / "lib" / "nxpar" / SHIM_NAME)
    return path if path.is_file() else None


def mpi_network(iface: str = "", environ: dict[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
    """mpirun options and environment of the MPI network: loopback for one host (the ranks' UCX, and
    hydra's own control port through the preloaded shim), else `iface`."""
    env = os.environ if environ is None else environ
    iface = iface or env.get(IFACE_ENV, "")
    options = ["-iface", iface] if iface else []
    network = {"UCX_NET_DEVICES": env.get("UCX_NET_DEVICES") or iface or LOOPBACK}
    shim = loopback_shim()
    if not iface and shim is not None:
        network["LD_PRELOAD"] = " ".join(p for p in (env.get("LD_PRELOAD", ""), str(shim)) if p)
    return options, network


def installed(program: str) -> str:
    """The absolute path of `program` in this installation's environment, else on PATH."""
    here = Path(sys.prefix) / "bin" / program
    if here.exists():
        return str(here)
    found = shutil.which(program)
    if not found:
        raise SystemExit(f"nxpar-supervision: {program} not found in {here.parent} nor on PATH")
    return found


@dataclass
class ServiceLaunch:
    """How one instance of the service is started: the command line and its environment."""

    instance: str
    ranks: int
    env: dict[str, str]
    iface: str = ""
    hosts: str = ""
    log_level: str = "INFO"
    mpirun: str = field(default_factory=lambda: installed("mpirun"))
    service: str = field(default_factory=lambda: installed("NexusWriterService"))

    def argv(self) -> list[str]:
        options, _ = mpi_network(self.iface, self.env)
        hosts = ["-hosts", self.hosts] if self.hosts else []
        return [self.mpirun, *options, *hosts, "-n", str(self.ranks), self.service, self.instance,
                f"--log={self.log_level}"]

    def environment(self) -> dict[str, str]:
        _, network = mpi_network(self.iface, self.env)
        return {**self.env, **network}


@dataclass
class Rendering:
    supervisor: Supervisor
    launch: ServiceLaunch
    workdir: str
    logfile: str
    stop_timeout: int = DEFAULT_STOP_TIMEOUT_S
    user: str = ""
    generated_by: str = ""

    def text(self) -> str:
        render = {Supervisor.SUPERVISORD: self._supervisord, Supervisor.SYSTEMD: self._systemd}[self.supervisor]
        return Template(self.supervisor.template).substitute(
            instance=self.launch.instance, ranks=self.launch.ranks, workdir=self.workdir, logfile=self.logfile,
            stop_timeout=self.stop_timeout, generated_by=self.generated_by, **render())

    def _supervisord(self) -> dict[str, str]:
        """supervisord expands %(...)s: every % doubled; environment values in double quotes, which it
        cannot escape; the command split as a shell would."""
        def value(text: str) -> str:
            if "'" in text or '"' in text:
                raise SystemExit(f"nxpar-supervision: supervisord cannot pass quotes in an environment value: {text}")
            return '"' + text.replace("%", "%%") + '"'

        env = ",".join(f"{k}={value(v)}" for k, v in self.launch.environment().items())
        return {"command": shlex.join(self.launch.argv()).replace("%", "%%"), "environment": env,
                "user_line": f"user={self.user}\n" if self.user else ""}

    def _systemd(self) -> dict[str, str]:
        """systemd expands % specifiers (and $VARIABLES in ExecStart): escaped; values in double quotes."""
        def quoted(text: str) -> str:
            return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%") + '"'

        env = "\n".join(f"Environment={quoted(f'{k}={v}')}" for k, v in self.launch.environment().items())
        command = " ".join(quoted(a).replace("$", "$$") for a in self.launch.argv())
        return {"command": command, "environment": env, "user_line": f"User={self.user}\n" if self.user else ""}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nxpar-supervision", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("supervisor", choices=[s.value for s in Supervisor], help="what to print: a supervisord "
                   "program section or a systemd unit")
    p.add_argument("instance", help="the Tango server instance of NexusWriterService (e.g. nexuswriters)")
    p.add_argument("--ranks", type=int, required=True, help="MPI ranks: 1 front end + N-1 writer ranks")
    p.add_argument("--tango-host", default=os.environ.get("TANGO_HOST", ""),
                   help="host:port of the Tango database (default: $TANGO_HOST)")
    p.add_argument("--redis-url", default=os.environ.get("REDIS_DATA_URL", ""),
                   help="blissdata Redis (REDIS_DATA_URL; default: $REDIS_DATA_URL, else Beacon is asked)")
    p.add_argument("--beacon-host", default=os.environ.get("BEACON_HOST", ""),
                   help="host:port of Beacon, which names the Redis (BEACON_HOST; default: $BEACON_HOST)")
    p.add_argument("--state-dir", default=str(state_dir()),
                   help="journal and run marker (NXPAR_STATE_DIR; default: %(default)s)")
    p.add_argument("--log-dir", default="", help="supervisord: where the service's log goes "
                   "(default: /var/log/nxpar as root, else STATE_DIR/log); systemd logs to the journal")
    p.add_argument("--log", dest="log_level", default="INFO", type=str.upper, help="service log level (default INFO)")
    p.add_argument("--iface", default=os.environ.get(IFACE_ENV, ""),
                   help="multi-node jobs: the network interface of MPI (mpirun -iface, UCX_NET_DEVICES; default: "
                        f"${IFACE_ENV}, else a one-host job on loopback)")
    p.add_argument("--hosts", default="", help="multi-node jobs: mpirun -hosts (e.g. node1:4,node2:4)")
    p.add_argument("--user", default="", help="the account the service runs as (default: the supervisor's)")
    p.add_argument("--stop-timeout", type=int, default=DEFAULT_STOP_TIMEOUT_S,
                   help="seconds a clean stop may take before every rank is killed (default %(default)s)")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="more environment of the service (e.g. ORBendPoint, HDF5 or MPI-IO settings), repeatable")
    return p


def rendering(args: argparse.Namespace, argv: list[str]) -> Rendering:
    if not args.tango_host:
        raise SystemExit("nxpar-supervision: no Tango database: give --tango-host HOST:PORT or set TANGO_HOST")
    if args.ranks < 1:
        raise SystemExit("nxpar-supervision: --ranks must be at least 1")
    env = {"TANGO_HOST": args.tango_host, "NXPAR_STATE_DIR": args.state_dir}
    env |= {k: v for k, v in (("REDIS_DATA_URL", args.redis_url), ("BEACON_HOST", args.beacon_host)) if v}
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"nxpar-supervision: --env {item!r} is not NAME=VALUE")
        env[name] = value
    log_dir = args.log_dir or ("/var/log/nxpar" if os.geteuid() == 0 else str(Path(args.state_dir) / "log"))
    launch = ServiceLaunch(args.instance, args.ranks, env, args.iface, args.hosts, args.log_level)
    return Rendering(Supervisor(args.supervisor), launch, args.state_dir,
                     str(Path(log_dir) / f"nxpar-{args.instance}.log"), args.stop_timeout, args.user,
                     shlex.join(["nxpar-supervision", *argv]))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    print(rendering(build_parser().parse_args(argv), argv).text(), end="")


if __name__ == "__main__":
    main()
