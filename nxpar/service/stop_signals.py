"""SIGTERM and SIGINT stop the service the same way at any moment of its run: the scans being written
are finalised (their files FAILED, with end_time, and left to the next run, which writes them again from
Redis), the writer ranks dismissed, no traceback, no hang.

mpirun forwards both (Ctrl-C is SIGINT) to every rank; systemd and supervisord send SIGTERM. Every rank
blocks both first thing (`block`, before MPI and Tango start threads), so that no thread ever takes
them asynchronously: no KeyboardInterrupt raised at a random place, no rank killed by the default action
(which mpirun reports as BAD TERMINATION). The writer ranks never wait for them: rank 0 dismisses them.
On rank 0 they are taken by sigwait, in `StopSignals`' thread, from the start: before the server runs,
the request is kept and the server is not started, or shut down as soon as it is initialised; while it
runs, the scans being written are finalised, then the server is shut down as Tango itself does it;
afterwards a further signal is only logged. When the Tango server has returned, rank 0 stops whatever
scan is left and dismisses the writer ranks (nxpar/service/main.py). Tango's own signal thread, started
with the server, waits for the same signals (its answer: shut the server down, which during the
server's initialisation kills the process); Linux gives a signal sent to the process to the first thread
that waits for it in creation order, ours (the tests always saw ours take it); were Tango's to take one
while the server runs, the outcome is the same, the scans being finalised after the devices are deleted.

A process started by a rank would inherit the blocked mask (nxpar starts none).
"""
from __future__ import annotations

import logging
import signal
import threading
from typing import Callable

log = logging.getLogger("nxpar.tango")

STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})


def block() -> None:
    """Every rank, before MPI or Tango start a thread: the stop signals are only ever taken by sigwait."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


class StopSignals:
    """RANK 0: the first SIGINT/SIGTERM stops the Tango server (or keeps it from starting)."""

    def __init__(self, stop_scans: Callable[[], None]) -> None:
        """stop_scans: finalises the scans being written, before the Tango devices are deleted."""
        self.stop_scans = stop_scans
        self.received = ""  # the name of the first stop signal, '' while none came
        self._lock = threading.Lock()
        self._server_up = False
        self._server_done = False
        threading.Thread(target=self._wait, name="nxpar-stop-signals", daemon=True).start()

    def server_started(self) -> None:
        """Tango's post-init callback: the server is initialised and about to run (stopped from another
        thread: Tango's shutdown from this one, before its loop runs, fails)."""
        with self._lock:
            self._server_up = True
            stop = bool(self.received)
        if stop:
            threading.Thread(target=self._stop_server, name="nxpar-stop-server", daemon=True).start()

    def server_returned(self) -> None:
        with self._lock:
            self._server_done = True

    def _wait(self) -> None:
        while True:
            signum = signal.sigwait(STOP_SIGNALS)
            name = signal.Signals(signum).name
            with self._lock:
                first = not self.received
                self.received = self.received or name
                stop = first and self._server_up and not self._server_done
            if not first:
                log.warning("%s received: the service is already stopping", name)
                continue
            log.warning("%s received: stopping the service (scans being written are finalised, their files FAILED, "
                        "and written again by its next run)", name)
            if stop:
                self._stop_server()

    def _stop_server(self) -> None:
        """The scans first, then what Tango does on SIGTERM: shut the server down, so that its loop returns."""
        import tango

        self.stop_scans()
        try:
            tango.Util.instance().get_dserver_device().kill()
        except Exception as e:  # noqa: BLE001 - the server may be shutting down already
            log.info("Tango server shutdown: %s", e)
