"""Simulated nodes on one machine: network namespaces joined by a bridge (needs root).

    nodes = SimulatedNodes(["a", "b", "c"]).up()     # 10.77.0.1, .2, .3 on a bridge of their own
    nodes.exec_prefix("a") + ["cmd", ...]            # run a command "on node a"
    mpiexec_command(nodes, {"a": 2, "b": 1}, [...])  # MPICH's hydra across nodes a and b
    nodes.down()                                      # ends the processes left inside, deletes all

Every namespace, the bridge included, is created here and named `<prefix>-<node>`: nothing is added to
the host's own network namespace, and traffic stays between these namespaces. Each node has one
interface, `nx0`, with its own address. Mount, PID and UTS namespaces are shared: the "nodes" see
the same file system (the shared file system of a cluster) and the same host name.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

LAUNCHER = Path(__file__).resolve().parent / "netns_ssh.sh"
IFACE = "nx0"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def netns_unavailable() -> str:
    """'' if network namespaces can be created here, else why not."""
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    name = f"nxprobe{os.getpid()}"
    try:
        _ip("netns", "add", name)
    except subprocess.CalledProcessError as e:
        return f"`ip netns add` is not permitted here: {e.stderr.strip()}"
    _ip("netns", "del", name)
    return ""


@dataclass
class Node:
    name: str
    netns: str
    address: str


@dataclass
class SimulatedNodes:
    names: list[str]
    prefix: str = field(default_factory=lambda: f"nx{os.getpid()}")
    subnet: str = "10.77.0"  # a /24 on a bridge no other namespace is attached to
    nodes: dict[str, Node] = field(default_factory=dict)

    @property
    def switch(self) -> str:
        return f"{self.prefix}-sw"

    def up(self) -> "SimulatedNodes":
        """Create the bridge namespace and one namespace per node with a veth into the bridge."""
        try:
            _ip("netns", "add", self.switch)
            _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.switch, "link", "set", "br0", "up")
            for i, name in enumerate(self.names, start=1):
                node = Node(name, f"{self.prefix}-{name}", f"{self.subnet}.{i}")
                _ip("netns", "add", node.netns)
                self.nodes[name] = node
                port = f"v{name}"[:15]
                _ip("-n", self.switch, "link", "add", port, "type", "veth", "peer", "name", IFACE,
                    "netns", node.netns)
                _ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
                _ip("-n", node.netns, "addr", "add", f"{node.address}/24", "dev", IFACE)
                _ip("-n", node.netns, "link", "set", IFACE, "up")
                _ip("-n", node.netns, "link", "set", "lo", "up")
        except Exception:
            self.down()
            raise
        return self

    def exec_prefix(self, name: str) -> list[str]:
        return ["ip", "netns", "exec", self.nodes[name].netns]

    def address(self, name: str) -> str:
        return self.nodes[name].address

    def netns_inode(self, name: str) -> int:
        """Identifies the node: /proc/PID/ns/net of a process on it has this inode."""
        return os.stat(f"/run/netns/{self.nodes[name].netns}").st_ino

    def netns_map(self) -> str:
        """For the hydra launcher (launch/netns_ssh.sh): address=namespace, ..."""
        return ",".join(f"{n.address}={n.netns}" for n in self.nodes.values())

    def port_bytes(self, name: str) -> tuple[int, int]:
        """(rx, tx) bytes of node `name`'s port on the bridge (what crossed the simulated network)."""
        out = subprocess.run(["ip", "-n", self.switch, "-s", "-j", "link", "show", f"v{name}"[:15]],
                             check=True, capture_output=True, text=True).stdout
        stats = json.loads(out)[0]["stats64"]
        return stats["rx"]["bytes"], stats["tx"]["bytes"]

    def down(self) -> None:
        """End every process still inside the namespaces (all started here), then delete them."""
        names = [n.netns for n in self.nodes.values()] + [self.switch]
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            pids = [pid for ns in names for pid in _netns_pids(ns)]
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while pids and time.monotonic() < deadline and any(_netns_pids(ns) for ns in names):
                time.sleep(0.1)
        for ns in names:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.nodes.clear()


def _netns_pids(ns: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()] if out.returncode == 0 else []


def mpiexec_command(nodes: SimulatedNodes, ranks: dict[str, int], program: list[str]) -> tuple[list[str], dict]:
    """(command, environment) of hydra's mpiexec started on the first node of `ranks`, with ranks
    placed in order (rank 0 on the first node). MPI between nodes goes over TCP on nx0 (UCX_TLS=tcp):
    shared memory would otherwise bypass the simulated network, since the nodes share one kernel."""
    first = next(iter(ranks))
    hosts = ",".join(f"{nodes.address(n)}:{k}" for n, k in ranks.items())
    cmd = [*nodes.exec_prefix(first), "mpiexec", "-launcher", "ssh", "-launcher-exec", str(LAUNCHER),
           "-iface", IFACE, "-hosts", hosts, "-n", str(sum(ranks.values())), *program]
    env = {"NXPAR_NETNS_MAP": nodes.netns_map(), "UCX_TLS": "tcp,self", "UCX_NET_DEVICES": IFACE}
    return cmd, env


def tcp_sockets(pid: int) -> dict[str, list[tuple[str, int]]]:
    """The IPv4 TCP sockets process `pid` holds: {"listen": [(address, port)], "peers": [(remote, port)]}.

    /proc/PID/net/tcp lists the sockets of PID's network namespace; those whose inode is one of PID's
    file descriptors are PID's own."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out: dict[str, set] = {"listen": set(), "peers": set()}
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[9] not in inodes or fields[3] not in ("01", "0A"):  # ESTABLISHED, LISTEN
            continue
        ip_hex, port_hex = fields[2 if fields[3] == "01" else 1].split(":")
        ip = ".".join(str(int(ip_hex[i:i + 2], 16)) for i in (6, 4, 2, 0))
        out["peers" if fields[3] == "01" else "listen"].add((ip, int(port_hex, 16)))
    return {k: sorted(v) for k, v in out.items()}
