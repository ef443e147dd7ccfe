"""Session set-up of the BLISS tier: files under $NXBLISS_DATA, the "nexus" writer (nxpar), no Flint.
SCAN_SAVING and SCAN_DISPLAY are the session's globals (this file runs in the session namespace)."""
import os

from bliss.common.scans.simulation import FakeController

SCAN_SAVING.base_path = os.environ["NXBLISS_DATA"]  # noqa: F821
SCAN_SAVING.template = "{session}"  # noqa: F821
SCAN_SAVING.data_filename = "data"  # noqa: F821
SCAN_SAVING.writer = "nexus"  # noqa: F821
if "SCAN_DISPLAY" in globals():  # only in a BLISS shell
    SCAN_DISPLAY.auto = False  # noqa: F821

# 1D and 2D fake detectors (random data, software triggered; data_size a tuple,
# square: FakeController generates (h, w) frames for a (w, h) channel shape)
fakedet = FakeController("fakedet", {"counters": [
    {"counter_name": "spectrum", "data_size": 64, "data_gen": "random"},
    {"counter_name": "frame", "data_size": (32, 32), "data_gen": "random"}]})
