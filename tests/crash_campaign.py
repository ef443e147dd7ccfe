"""A crash campaign against the real stack: kill -9 of the whole MPI job or of one writer rank at a random
instant of a live scan, the service restarted by its supervisor, and the scan written again from Redis.

Each trial, in a file that already holds a finished scan A:
  scan B: 300 frames 256² uint16 published at 100 Hz (plus the motor, timer, diode and MCA streams);
  at a random instant of B, kill -9 of every rank ("job") or of one writer rank ("rank");
  in "job" trials a scan G is published, whole, while no job runs (the restart gap);
  then: B must end OFF, equal to the published data, writer status SUCCEEDED, with writer/interruption;
  G must be written; A must be untouched; a next scan C must be written normally.

    python -m tests.crash_campaign --trials 10 [--json out.json]    (README "Reliability")

tests/test_crash_resume.py runs a short campaign in the integration tier.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import signal
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (bitshuffle/LZ4 readers)
import numpy as np
import tango

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from launch.simulate import ScanPublisher, ScanSpec  # noqa: E402
from launch.stack import Stack  # noqa: E402
from tests.helpers import assert_file_matches, wait_scan_done, wait_scan_exists  # noqa: E402
from tests.processes import service_ranks  # noqa: E402

FRAMES, RATE_HZ, SHAPE = 300, 100.0, (256, 256)
# supervisord counts a job that dies within `startsecs` (10 s: nxpar/service/supervision_templates/
# supervisord.conf) of its start as a failed start and retries it after 1, 2, 3 … s: a trial kills a job
# only once it has run that long, so that each restart is the prompt one a crash gets, not a crash loop's.
SUPERVISOR_STARTSECS = 10.0


@dataclass
class Trial:
    number: int
    mode: str  # "job" | "rank"
    killed_at_s: float  # into scan B's publishing
    frames_at_kill: int
    device_back_s: float = float("nan")  # from the kill to the device answering ON/RUNNING again
    resumed_s: float = float("nan")  # from the kill to scan B OFF
    b_state: str = ""
    b_reason: str = ""
    b_complete: bool = False
    interruption_noted: bool = False
    gap_scan_written: bool | None = None  # "job" trials only
    earlier_intact: bool = False
    next_written: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (self.b_complete and self.interruption_noted and self.earlier_intact and self.next_written
                and self.gap_scan_written is not False)


def entry_digest(filename: str, entry: str) -> str:
    """A digest of every dataset of an entry (values and paths): 'untouched' means equal digests."""
    h = hashlib.sha256()
    with h5py.File(filename, "r", locking=False) as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                h.update(name.encode())
                h.update(np.ascontiguousarray(obj[()]).tobytes() if obj.shape != () else repr(obj[()]).encode())
        f[entry].visititems(visit)
    return h.hexdigest()


def wait_device_back(devname: str, timeout: float = 120) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if str(tango.DeviceProxy(devname).state()) in ("ON", "RUNNING"):
                return time.monotonic() - t0
        except (tango.DevFailed, AttributeError):  # not exported yet (PyTango may say so as AttributeError)
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{devname} not back after {timeout} s")


class Campaign:
    def __init__(self, stack: Stack, data_dir: Path, session: str = "crash", instance: str = "w_crash",
                 ranks: int = 3, seed: int = 1) -> None:
        self.stack, self.data_dir, self.session, self.instance, self.ranks = stack, data_dir, session, instance, ranks
        self.url = stack.env["REDIS_DATA_URL"]
        self.rng = random.Random(seed)
        self.devname = stack.register(session, instance)
        stack.start_service(instance, ranks, "INFO", supervised=True)
        self.proxy = stack.wait_device(self.devname)
        self.scan_nb = 0
        self.up_since = time.monotonic()

    def next_spec(self, filename: str, frames: int) -> ScanSpec:
        self.scan_nb += 1
        return ScanSpec(self.session, filename, self.scan_nb, frames, image_shape=SHAPE, mca_channels=64)

    def write_whole(self, filename: str, frames: int = 10) -> ScanPublisher:
        pub = ScanPublisher(self.url, self.next_spec(filename, frames))
        wait_scan_exists(self.proxy, pub.spec.name, 30)
        pub.run(batch=5)
        assert wait_scan_done(self.proxy, pub.spec.name, 60) == "OFF", self.proxy.scan_state_reason(pub.spec.name)
        return pub

    def kill(self, mode: str) -> None:
        ranks = service_ranks(self.instance)
        victims = list(ranks.values()) if mode == "job" else [ranks[self.rng.randrange(1, self.ranks)]]
        for p in victims:
            p.send_signal(signal.SIGKILL)

    def trial(self, number: int, mode: str) -> Trial:
        filename = str(self.data_dir / f"crash{number}.h5")
        time.sleep(max(SUPERVISOR_STARTSECS + 0.5 - (time.monotonic() - self.up_since), 0.0))
        a = self.write_whole(filename)
        a_digest = entry_digest(filename, f"{a.spec.scan_nb}.1")
        b = ScanPublisher(self.url, self.next_spec(filename, FRAMES))
        wait_scan_exists(self.proxy, b.spec.name, 30)
        killed_at = self.rng.uniform(0.2, FRAMES / RATE_HZ - 0.2)
        publisher = threading.Thread(target=b.run, kwargs={"batch": 1, "rate_hz": RATE_HZ}, daemon=True)
        t0 = time.monotonic()
        publisher.start()
        time.sleep(max(killed_at - (time.monotonic() - t0), 0))
        self.kill(mode)
        t_kill = time.monotonic()
        result = Trial(number, mode, round(killed_at, 2), b.sent)
        gap = self._publish_in_the_gap(filename) if mode == "job" else None
        publisher.join(60)
        wait_device_back(self.devname)
        result.device_back_s = round(time.monotonic() - t_kill, 2)
        self.up_since = time.monotonic()  # the job started earlier still: its wait is on the safe side
        proxy = self.proxy = tango.DeviceProxy(self.devname)
        wait_scan_exists(proxy, b.spec.name, 60)
        result.b_state = wait_scan_done(proxy, b.spec.name, 180)
        result.resumed_s = round(time.monotonic() - t_kill, 2)
        result.b_reason = proxy.scan_state_reason(b.spec.name)
        self._check_b(result, b)
        if gap is not None:
            result.gap_scan_written = self._written(gap, result)
        result.earlier_intact = entry_digest(filename, f"{a.spec.scan_nb}.1") == a_digest
        result.next_written = self._written(self.write_whole(filename, 5), result)
        return result

    def _publish_in_the_gap(self, filename: str) -> ScanPublisher | None:
        """A whole scan published while no job runs (it is written once the job is back)."""
        try:
            pub = ScanPublisher(self.url, self.next_spec(filename.replace(".h5", "_gap.h5"), 10))
            pub.run(batch=5)
            return pub
        except Exception as e:  # noqa: BLE001 - reported, the trial goes on
            print(f"gap scan not published: {e}", file=sys.stderr)
            return None

    def _written(self, pub: ScanPublisher, result: Trial) -> bool:
        try:
            wait_scan_exists(self.proxy, pub.spec.name, 60)
            state = wait_scan_done(self.proxy, pub.spec.name, 120)
            assert state == "OFF", self.proxy.scan_state_reason(pub.spec.name)
            assert_file_matches(pub, pub.spec.npoints)
            return True
        except Exception as e:  # noqa: BLE001 - a trial records what went wrong
            result.problems.append(f"{pub.spec.name}: {e}")
            return False

    def _check_b(self, result: Trial, b: ScanPublisher) -> None:
        try:
            assert result.b_state == "OFF", result.b_reason
            assert_file_matches(b, FRAMES)
            result.b_complete = True
            with h5py.File(b.spec.filename, "r", locking=False) as f:
                note = f.get(f"{b.spec.scan_nb}.1/writer/interruption")
                result.interruption_noted = note is not None and "written again from Redis" in note[()].decode()
        except Exception as e:  # noqa: BLE001
            result.problems.append(f"{b.spec.name}: {e}")


def summary(trials: list[Trial]) -> dict:
    resumed = [t.resumed_s for t in trials if t.b_complete]
    return {"trials": len(trials), "interrupted scans complete": sum(t.b_complete for t in trials),
            "interruption noted": sum(t.interruption_noted for t in trials),
            "earlier scans intact": sum(t.earlier_intact for t in trials),
            "next scans written": sum(t.next_written for t in trials),
            "gap scans written": f"{sum(bool(t.gap_scan_written) for t in trials)}/"
                                 f"{sum(t.gap_scan_written is not None for t in trials)}",
            "seconds from kill to scan OFF (min/median/max)":
                [min(resumed), float(np.median(resumed)), max(resumed)] if resumed else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=10, help="number of trials (default 10), modes alternating")
    p.add_argument("--ranks", type=int, default=3, help="MPI ranks of the service (default 3: 2 writer ranks)")
    p.add_argument("--seed", type=int, default=1, help="random seed of the kill instants and victims (default 1)")
    p.add_argument("--json", help="also write the trials and the summary to this file")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="nxpar-crash-") as tmp:
        stack = Stack(Path(tmp) / "stack")
        try:
            stack.start_redis()
            stack.start_tango_db()
            import os

            os.environ.update(stack.env)
            campaign = Campaign(stack, Path(tmp), ranks=args.ranks, seed=args.seed)
            trials = []
            for n in range(args.trials):
                trials.append(campaign.trial(n, ("job", "rank")[n % 2]))
                print(json.dumps(asdict(trials[-1])), flush=True)
        finally:
            stack.down()
    result = {"summary": summary(trials), "trials": [asdict(t) for t in trials]}
    print(json.dumps(result["summary"], indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0 if all(t.ok for t in trials) else 1


if __name__ == "__main__":
    sys.exit(main())
