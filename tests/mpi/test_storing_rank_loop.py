"""The rank loop on the storing path, on real MPI: rank 0 plays the writer channel (every step to every
writer rank, the answer from the first writer rank, as driver/writer_channel.py does), ranks 1.. run
`WriterRankLoop` with the executors `executor_for` gives them. Two steps are kept in flight, so the
writer ranks other than the storing rank run ahead of it (they do not wait for its answer):

    mpirun -n 3 .venv/bin/python -m pytest -p no:cacheprovider -m mpi tests/mpi
"""
from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest

from nxpar.protocol import steps as st

pytestmark = pytest.mark.mpi

FRAME = (16, 24)


def drive(world, steps: list) -> list[st.StepResult]:
    """RANK 0: every step to every writer rank, two in flight; the first writer rank's answers, in order."""
    from nxpar.protocol.mpi_roles import PROGRESS_TAG, RESULT_TAG, STEP_TAG, wait_for_message

    answers, sent = [], 0
    while len(answers) < len(steps):
        while sent < len(steps) and sent - len(answers) < 2:
            for rank in range(1, world.size):
                world.send(pickle.dumps(st.Envelope(sent, steps[sent])), dest=rank, tag=STEP_TAG)
            sent += 1
        wait_for_message(world, 1, RESULT_TAG)
        answer = world.recv(source=1, tag=RESULT_TAG)
        assert answer.seq == len(answers)
        answers.append(answer.result)
    for rank in range(1, world.size):
        world.send(pickle.dumps(st.Envelope(sent, st.Shutdown())), dest=rank, tag=STEP_TAG)
    world.Barrier()  # the writer ranks left their loop: their marks are all sent
    while world.Iprobe(tag=PROGRESS_TAG):
        world.recv(tag=PROGRESS_TAG)
    return answers


def test_a_scan_through_the_rank_loop_on_the_storing_path(tmp_path_factory, monkeypatch):
    from mpi4py import MPI

    world = MPI.COMM_WORLD
    if world.size < 3:
        pytest.skip("the storing path needs two writer ranks: mpirun -n 3 or more")
    monkeypatch.delenv("NXPAR_WRITE_MODE", raising=False)
    directory = world.bcast(str(tmp_path_factory.mktemp("loop")) if world.rank == 0 else None, root=0)
    lima, path = f"{directory}/lima.h5", f"{directory}/scan.h5"
    writers = world.Split(MPI.UNDEFINED if world.rank == 0 else 1, world.rank)  # as mpi_roles.writer_comm
    if world.rank == 0:
        frames = np.arange(40 * 16 * 24, dtype="uint16").reshape((40,) + FRAME) % 97
        with h5py.File(lima, "w") as f:
            f["entry/data"] = frames
        spec = st.ArraySpec(path="/1.1/instrument/cam/data", dtype="uint16", detector_shape=FRAME,
                            chunks=(4, 8, 8), compression="gzip-byteshuffle", fillvalue=0)

        def write(lo: int, hi: int, bad: bool = False) -> st.WriteBatch:
            refs = [("HDF5", "/nonexistent.h5" if bad else lima, "entry/data", i) for i in range(lo, hi)]
            return st.WriteBatch("scan1", [st.WriteRows(spec, st.FileFramesSource("cam:image", lo, refs), lo, hi)])

        steps = [st.OpenFile("scan1", path, {"NX_class": "NXroot"}, ["1.1"]),
                 st.Tree("scan1", [st.Node("group", "/1.1/instrument/cam", attrs={"NX_class": "NXdetector"})]),
                 write(0, 10), write(10, 21), st.Flush("scan1"), write(21, 30, bad=True), write(21, 40),
                 st.Tree("scan1", [st.Node("value", "/1.1/writer_status", "SUCCEEDED")]), st.CloseFile("scan1")]
        results = drive(world, steps)
        assert [r.ok for r in results] == [True] * 5 + [False] + [True] * 3
        assert "nonexistent" in results[5].error
        with h5py.File(path, "r", locking=False) as f:
            np.testing.assert_array_equal(f["1.1/instrument/cam/data"][()], frames)
            assert f["1.1/writer_status"][()] == b"SUCCEEDED"
    else:  # the writer loop, as run_writer_rank runs it (its executors: the write path's)
        from nxpar.writers.rank_loop import WriterRankLoop
        from nxpar.writers.storing.storing_rank import StoringRankExecutor

        loop = WriterRankLoop(world, writers)
        assert isinstance(loop.executor, StoringRankExecutor) == (writers.rank == 0)
        loop.run()
        world.Barrier()
        writers.Free()
