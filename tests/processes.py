"""The processes of a running writer service, found by their command line and MPI environment."""
from __future__ import annotations

import psutil


def service_ranks(instance: str) -> dict[int, psutil.Process]:
    """The NexusWriterService processes of one instance, by MPI rank."""
    ranks = {}
    for p in psutil.process_iter(["cmdline", "environ"]):
        cmd = p.info["cmdline"] or []
        if len(cmd) > 2 and cmd[-2:-1] == [instance] or instance in cmd[1:3]:
            if any("NexusWriterService" in c for c in cmd) and "mpirun" not in cmd[0] and "python" in cmd[0]:
                env = p.info["environ"] or {}
                if "PMI_RANK" in env:
                    ranks[int(env["PMI_RANK"])] = p
    return ranks
