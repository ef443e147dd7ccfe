"""Names BLISS's in-process writer module needs at import time (its signatures)."""
import enum
from dataclasses import dataclass
from typing import Any


class ChannelDataType(enum.Enum):
    NUMERIC_DATA = enum.auto()
    SCAN_REFERENCE = enum.auto()
    LIMA1_STATUS = enum.auto()
    LIMA2_STATUS = enum.auto()


@dataclass
class Channel:
    name: str
    data_type: ChannelDataType
    info: Any = None
