"""The multi-node scenario, run on node c of tests/test_cluster_netns.py (inside its network namespace).

Node c holds Redis, the Tango database and the BLISS-like client (ScanPublisher + DeviceProxy); the MPI
job runs on nodes a and b. Run 1: rank 0 on a, writers on a and b; a scan is written. Then a writer
rank is killed mid-scan and the job is started again with rank 0 on b (as a cluster job restarted on
another node): the interrupted scan is written again from Redis by the new job, which found it in the
journal on the shared state directory.

    ip netns exec NS_C python -m tests.netns_scenario RUNDIR NODES_JSON   # writes RUNDIR/result.json
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import psutil

from launch.netns import Node, SimulatedNodes, mpiexec_command, tcp_sockets
from launch.simulate import ScanSpec
from launch.stack import ROOT, VENV, Stack
from tests.helpers import wait_scan_done, assert_file_matches, run_scan, start_scan, wait_progress

INSTANCE = "w_cluster"
SESSION = "cluster"
FILE_ACCESS = {"NXPAR_ALIGNMENT": "65536", "NXPAR_ALIGNMENT_THRESHOLD": "1024",
               "NXPAR_MPIO_HINTS": "romio_cb_write=enable,cb_nodes=2"}


# one chunk per frame, so that both writer ranks (one per node) own frames of the small scan
ONE_FRAME_PER_CHUNK = {"chunk_nbytes": 64 * 64 * 2, "chunk_split": 1}


def start_service(stack: Stack, nodes: SimulatedNodes, ranks: dict[str, int], restart_reason: str = "") -> None:
    """The MPI job across nodes; rank 0 (first node of `ranks`) serves Tango on that node's address."""
    program = [str(VENV / "bin" / "NexusWriterService"), INSTANCE, "--log=INFO"]
    cmd, env = mpiexec_command(nodes, ranks, program)
    env |= {"ORBendPoint": f"giop:tcp:{nodes.address(next(iter(ranks)))}:", "PYTHONPATH": str(ROOT),
            "NXPAR_STATE_DIR": str(stack.rundir / "state"), **FILE_ACCESS}
    if restart_reason:
        env["NXPAR_RESTART_REASON"] = restart_reason
    stack._spawn(f"service_{INSTANCE}", cmd, env=env)


def placement(nodes: SimulatedNodes) -> dict[int, dict]:
    """Each rank of the job: its node (by network namespace), its TCP listening sockets and peers."""
    by_inode = {nodes.netns_inode(n): n for n in nodes.nodes}
    ranks = {}
    for p in psutil.process_iter(["cmdline", "environ"]):
        cmd, env = p.info["cmdline"] or [], p.info["environ"] or {}
        if "PMI_RANK" in env and INSTANCE in cmd and any("NexusWriterService" in c for c in cmd):
            inode = os.stat(f"/proc/{p.pid}/ns/net").st_ino
            ranks[int(env["PMI_RANK"])] = {"pid": p.pid, "node": by_inode.get(inode, f"netns {inode}"),
                                           **tcp_sockets(p.pid)}
    return dict(sorted(ranks.items()))


def wait_job_gone(pids: list[int], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids):
        if time.monotonic() > deadline:
            raise TimeoutError(f"ranks {pids} still alive {timeout} s after a rank was killed")
        time.sleep(0.2)


def scenario(stack: Stack, nodes: SimulatedNodes, data: Path, result: dict) -> None:
    stack.start_redis()
    stack.start_tango_db()
    os.environ.update(stack.env)
    url = stack.env["REDIS_DATA_URL"]
    dev = stack.register(SESSION, INSTANCE)
    start_service(stack, nodes, {"a": 2, "b": 1})
    proxy = stack.wait_device(dev, timeout=120)
    pub = run_scan(proxy, url, ScanSpec(SESSION, str(data / "scan1.h5"), 1, 24, image_shape=(64, 64),
                                          chunk_options=ONE_FRAME_PER_CHUNK), batch=4)
    assert_file_matches(pub, 24)
    result["run1"] = {"ranks": placement(nodes), "scan1": str(proxy.scan_state(pub.spec.name))}

    # a writer rank on node b dies mid-scan; the job is restarted with rank 0 on node b
    spec2 = ScanSpec(SESSION, str(data / "scan2.h5"), 2, 40, image_shape=(64, 64))
    pub2 = start_scan(proxy, url, spec2, 10, batch=2)
    wait_progress(proxy, spec2.name, "10pts-10pts")
    time.sleep(1.0)  # one periodic flush (0.5 s) after the 10 points
    ranks = result["run1"]["ranks"]
    os.kill(ranks[2]["pid"], signal.SIGKILL)
    wait_job_gone([r["pid"] for r in ranks.values()])
    stack.stop_service(INSTANCE)
    start_service(stack, nodes, {"b": 2, "a": 1}, restart_reason="restarted on node b")
    proxy = stack.wait_device(dev, timeout=120)
    result["run2"] = {"status": proxy.Status()}
    pub2.send(5, batch=5)
    pub2.stop_close()
    result["run2"] |= {"scan2": wait_scan_done(proxy, spec2.name, 120), "scan2_reason": proxy.scan_state_reason(spec2.name)}
    assert_file_matches(pub2, 15)
    pub3 = run_scan(proxy, url, ScanSpec(SESSION, str(data / "scan3.h5"), 3, 12, image_shape=(64, 64)), batch=3)
    assert_file_matches(pub3, 12)
    result["run2"] |= {"ranks": placement(nodes), "scan3": str(proxy.scan_state(pub3.spec.name))}


def main(argv: list[str]) -> int:
    rundir = Path(argv[0])
    spec = json.loads(argv[1])
    nodes = SimulatedNodes(list(spec["nodes"]), prefix=spec["prefix"],
                           nodes={k: Node(**v) for k, v in spec["nodes"].items()})
    stack = Stack(rundir / "stack", host=nodes.address("c"))
    result: dict = {"nodes": {k: v["address"] for k, v in spec["nodes"].items()}}
    try:
        scenario(stack, nodes, rundir / "data", result)
        result["ok"] = True
    except BaseException as e:
        result["error"] = f"{type(e).__name__}: {e}"
        raise
    finally:
        stack.down()
        (rundir / "result.json").write_text(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
