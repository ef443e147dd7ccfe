"""A multi-node run on one machine (issue 15): network namespaces as nodes, hydra across them.

    node a (10.77.0.1)   rank 0: Tango front end on a's address; rank 1: writer
    node b (10.77.0.2)   rank 2: writer
    node c (10.77.0.3)   Redis, Tango database, the BLISS-like client (tests/netns_scenario.py)

Nodes share the file system (the scan files, the journal in NXPAR_STATE_DIR) and the kernel; MPI
between nodes is forced onto TCP over the bridge. Needs root (CI runs as root); skipped otherwise.
"""
from __future__ import annotations

import json
import subprocess
import sys

import h5py
import hdf5plugin  # noqa: F401
import pytest

from launch.netns import SimulatedNodes, netns_unavailable
from tests.helpers import ROOT


@pytest.fixture
def nodes():
    why = netns_unavailable()
    if why:
        pytest.skip(f"no simulated nodes: {why}")
    sim = SimulatedNodes(["a", "b", "c"]).up()
    try:
        yield sim
    finally:
        sim.down()  # always: the processes left inside, then the namespaces
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert sim.prefix + "-" not in listed


@pytest.mark.integration  # its own Redis, Tango database and mpiexec, in network namespaces
def test_two_nodes_write_one_file_and_a_restart_on_the_other_node_writes_the_interrupted_scan_again(nodes, tmp_path):
    spec = {"prefix": nodes.prefix, "nodes": {k: vars(v) for k, v in nodes.nodes.items()}}
    rx_b_before, tx_b_before = nodes.port_bytes("b")
    proc = subprocess.run([*nodes.exec_prefix("c"), sys.executable, "-m", "tests.netns_scenario", str(tmp_path),
                           json.dumps(spec)], cwd=ROOT, capture_output=True, text=True, timeout=420,
                          env={"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "PYTHONPATH": str(ROOT),
                               "HOME": str(tmp_path)})
    result = json.loads((tmp_path / "result.json").read_text())
    logs = (tmp_path / "stack" / "service_w_cluster.log").read_text()
    assert proc.returncode == 0, (result.get("error"), proc.stderr[-3000:], logs[-3000:])
    a, b, c = (nodes.address(n) for n in "abc")

    # run 1: ranks where they were put; rank 0 serves Tango on a's address; the writer on b reached
    # Redis on c and rank 1 on a (MPI over TCP) across the bridge
    ranks = result["run1"]["ranks"]
    assert {r: v["node"] for r, v in ranks.items()} == {"0": "a", "1": "a", "2": "b"}
    assert any(addr == a for addr, _ in ranks["0"]["listen"]), ranks["0"]
    peers_of_b = {addr for addr, _ in ranks["2"]["peers"]}
    assert {a, c} <= peers_of_b, ranks["2"]
    ports_on_a = {port for r in ("0", "1") for _, port in ranks[r]["listen"]}
    assert any(addr == a and port in ports_on_a for addr, port in ranks["2"]["peers"]), ranks  # rank to rank
    assert result["run1"]["scan1"] == "OFF"
    rx_b, tx_b = nodes.port_bytes("b")
    assert tx_b - tx_b_before > 24 * 64 * 64 * 2 / 3  # at least b's share of the frames went to b

    # the file on the shared file system, with the file-access settings of every rank on both nodes
    with h5py.File(tmp_path / "data" / "scan1.h5", "r", locking=False) as f:
        assert f["1.1/writer/status"][()] == b"SUCCEEDED"
        frames = f["1.1/instrument/image/data"]
        assert frames.shape == (24, 64, 64)
        offsets = [frames.id.get_chunk_info(i).byte_offset for i in range(frames.id.get_num_chunks())]
        assert len(offsets) == 24 and all(o % 65536 == 0 for o in offsets)
    assert "file access: alignment 65536 B for objects >= 1024 B; MPI-IO hints: romio_cb_write=enable, cb_nodes=2" \
        in logs

    # run 2, restarted with rank 0 on node b: the journal on the shared state dir gave the interrupted scan,
    # written again from Redis by the writers on b and a
    run2 = result["run2"]
    assert {r: v["node"] for r, v in run2["ranks"].items()} == {"0": "b", "1": "b", "2": "a"}
    assert any(addr == b for addr, _ in run2["ranks"]["0"]["listen"])
    assert run2["scan2"] == "OFF", run2["scan2_reason"]
    assert "restarted on node b" in run2["status"]
    with h5py.File(tmp_path / "data" / "scan2.h5", "r", locking=False) as f:
        assert f["2.1/writer/status"][()] == b"SUCCEEDED"
        assert "restarted on node b" in f["2.1/writer/interruption"][()].decode()
        assert f["2.1/instrument/image/data"].shape[0] == 15
    assert run2["scan3"] == "OFF"
    with h5py.File(tmp_path / "data" / "scan3.h5", "r", locking=False) as f:
        assert f["3.1/writer/status"][()] == b"SUCCEEDED"
