"""nxpar against the reference, blisswriter 2.0.0, on real BLISS 2.4.0 (tests/bliss/reference_run.py):
every scan type of the comparison written once by each writer, the two entries compared.

* `test_alike_with_reference[SCAN TYPE]`: no difference but the known ones (KNOWN) — a new difference
  fails here.
* `test_known_difference[SCAN TYPE-N]`: one per known difference, xfail(strict): when someone mends
  it, the test XPASSes and fails strict, saying so (then remove it from KNOWN).
* A scan type of which BLISS itself published another number of points in one run than in the other
  (an abort in the middle of a point: `aborted`, `timescan_aborted`) is skipped with those channels
  named, never judged; a known difference that only such an abort shows (`Shows.RAGGED`) is skipped in
  a run where BLISS's channels all ended at one length. more_scenarios.py's `*_aborted_between_points`
  abort between two points: always comparable.
* The times (BLISS's scan end → writer done) are measured and written with the verdicts, never
  asserted (the machine is shared); `make compare-reference` prints them (tests/bliss/reference_report.py).

JSON: $NXPAR_REFERENCE_JSON (make compare-reference: docs/reference_comparison.json), else the
tier's run directory.
"""
from __future__ import annotations

import enum
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.bliss.conftest import RANKS
from tests.bliss.reference_run import COMPARED, compare_files, compare_runs, document, run_writer
from tests.bliss.writers import WriterKind, Writers

pytestmark = pytest.mark.bliss


class Shows(enum.Enum):
    """When a known difference can show in a run."""
    ALWAYS = "always"
    RAGGED = "only when BLISS's abort left the channels at different lengths (the KeyboardInterrupt came mid-point)"


@dataclass(frozen=True)
class Known:
    """A difference known today: `pattern` (a regular expression) matches its lines of the verdict
    ("<scan name> <path>: <aspect>: nxpar … / reference …")."""
    scenario: str
    pattern: str
    reason: str
    shows: Shows = Shows.ALWAYS

    def applies(self, verdict) -> bool:
        return self.shows == Shows.ALWAYS or bool(verdict.ragged)


# (mended: the mesh plotselect of plotinit before an amesh, and plotselect split by signal length after
# an abort mid-point — nxpar/nexus/plots.py now groups as blisswriter 2.0.0 does)
KNOWN: tuple[Known, ...] = ()


@pytest.fixture(scope="module")
def comparison(bliss, bliss_stack):
    """Both writers' runs (nxpar first), the verdicts; nxpar serves the session again afterwards."""
    load = os.getloadavg()
    writers = Writers(bliss_stack, "nxbliss", RANKS)
    try:
        nxpar = run_writer(bliss, writers, WriterKind.NXPAR)
        reference = run_writer(bliss, writers, WriterKind.REFERENCE)
    finally:
        writers.use(WriterKind.NXPAR)
    verdicts = {v.scenario: v for v in compare_runs(nxpar, reference)}
    files = compare_files(nxpar, reference)
    path = Path(os.environ.get("NXPAR_REFERENCE_JSON") or bliss_stack.rundir / "reference_comparison.json")
    document(list(verdicts.values()), files, RANKS, load).write(path)
    return verdicts, files


def _unknown(verdict) -> list[str]:
    patterns = [re.compile(k.pattern) for k in KNOWN if k.scenario == verdict.scenario and k.applies(verdict)]
    return [d for d in verdict.differences if not any(p.search(d) for p in patterns)]


@pytest.mark.parametrize("scenario", COMPARED)
def test_alike_with_reference(comparison, scenario):
    verdicts, _ = comparison
    verdict = verdicts[scenario]
    if not verdict.comparable:
        pytest.skip(f"BLISS published this scan type differently in the two runs ({'; '.join(verdict.unlike_runs)}): "
                    f"{len(verdict.differences)} differences not judged")
    assert _unknown(verdict) == []


def test_files_alike(comparison):
    """The data files' root attributes (NX_class, creator, default): the writer's name aside."""
    _, files = comparison
    assert files == []


@pytest.mark.parametrize("known", [pytest.param(k, marks=pytest.mark.xfail(strict=True, reason=k.reason),
                                                id=f"{k.scenario}-{i}") for i, k in enumerate(KNOWN)])
def test_known_difference(comparison, known):
    verdicts, _ = comparison
    verdict = verdicts[known.scenario]
    if not verdict.comparable or not known.applies(verdict):
        pytest.skip(f"cannot show in this run: {known.shows.value}")
    assert not [d for d in verdict.differences if re.search(known.pattern, d)], known.reason


def test_every_scan_timed(comparison):
    """Both writers were seen finishing every saved scan (the times of the report are complete)."""
    verdicts, _ = comparison
    missing = [(v.scenario, writer, s[writer]["identifier"]) for v in verdicts.values() for s in v.scans
               for writer in ("nxpar", "reference") if s[writer]["status"] and s[writer]["lag_s"] is None]
    assert missing == []
