"""RANK 0 ONLY: what the Tango classes of this process share — the writer channel (made by
`main.run_front_end` before the Tango server starts), the session subscribers of the `NexusWriter`
devices (kept across Tango Init), the DevFailed helper and the state mapping."""
from __future__ import annotations

from tango import DevState, Except

from ..driver.session import SessionSubscriber
from ..driver.states import State
from ..driver.writer_channel import WriterChannel

CHANNEL: WriterChannel | None = None
SUBSCRIBERS: dict[str, SessionSubscriber] = {}  # device name → its session subscriber

TANGO_STATES = {State.INIT: DevState.INIT, State.ON: DevState.ON, State.RUNNING: DevState.RUNNING,
                State.OFF: DevState.OFF, State.FAULT: DevState.FAULT}


def writer_channel() -> WriterChannel:
    assert CHANNEL is not None, "the writer channel is created before the Tango server starts"
    return CHANNEL


def tango_state(state: str) -> DevState:
    """A driver state (or its name) as Tango shows it; UNKNOWN for anything else."""
    try:
        return TANGO_STATES.get(State(state), DevState.UNKNOWN)
    except ValueError:
        return DevState.UNKNOWN


def fail(reason: str, message: str, origin: str) -> None:
    """Raise a DevFailed for the client."""
    Except.throw_exception(reason, message, origin)
