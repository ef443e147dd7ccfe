"""The MPI network of a one-host job (nxpar/service/supervision.py `mpi_network`): its listening sockets,
as `ss` lists them for the job's processes. The ranks listen on loopback only (UCX_NET_DEVICES=lo; Tango on
the stack's ORBendPoint, 127.0.0.1), and so does hydra's control port: MPICH 4.0.2's hydra binds it on every
interface (HYDU_sock_listen → MPL_listen_anyport, INADDR_ANY, no option), so a preloaded shim
(supervision_templates/loopback_bind.c, built by launch/setup.sh) turns that bind into a loopback one in
mpiexec and its proxy only (docs/operating.md, "Network").
"""
from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

import psutil

from launch.processes import marked

LOOPBACK = re.compile(r"^(127\.\d+\.\d+\.\d+|\[::1\]|\[::ffff:127\.\d+\.\d+\.\d+\]):\d+$")


@dataclass(frozen=True)
class Listener:
    proto: str
    local: str
    pids: frozenset[int]


def listeners(pids: set[int]) -> list[Listener]:
    """TCP and UDP sockets listening (or bound, UDP) held by any of `pids` (`ss -ltnupH`)."""
    out = subprocess.run(["ss", "-H", "-l", "-t", "-u", "-n", "-p"], capture_output=True, text=True, check=True)
    found = []
    for line in out.stdout.splitlines():
        fields = line.split()
        holders = frozenset(int(p) for p in re.findall(r"pid=(\d+)", line))
        if holders & pids:
            found.append(Listener(fields[0], fields[4], holders))
    return found


def test_a_one_host_job_listens_on_loopback_only(stack):
    instance = "w_net"
    dev = stack.register("net", instance)
    mpirun = stack.start_service(instance, 3)
    try:
        stack.wait_device(dev, service=mpirun)
        job = set(marked(stack.rundir, f"service_{instance}"))
        ranks = {p for p in job if "PMI_RANK" in psutil.Process(p).environ()}
        assert mpirun.pid in job and len(ranks) == 3
        sockets = listeners(job)
        assert any(ranks & s.pids for s in sockets)  # the ranks' own (UCX, Tango)
        assert [s for s in sockets if mpirun.pid in s.pids]  # hydra's control port, seen
        off_loopback = [s for s in sockets if not LOOPBACK.match(s.local)]
        assert off_loopback == [], off_loopback
        ranks_own = [s for s in sockets if s.pids <= ranks]
        assert ranks_own and all(LOOPBACK.match(s.local) for s in ranks_own), ranks_own
    finally:
        stack.stop_service(instance)
