"""blisswriter 2.0.0's own channel mapping, loaded from its wheel (spec §4.5).

`launch/setup_bliss.sh` downloads the wheel into `.cache-bliss/` of the checkout (cached, never
installed, never committed). Only two of its modules are loaded: `blisswriter.nexus.devices`
(`device_info`, the mapping) and `blisswriter.nexus.mapping` (`get_primary_dataset_path`). They
import nothing beyond the standard library and each other, so they load beside bliss 2.4.0 and
blissdata 2.4.5 although the blisswriter 2.0.0 package as a whole does not (spec §0.1). They are
imported from inside the wheel (zipimport) under a private package name: BLISS's `blisswriter`
stays the stand-ins of this folder.
"""
from __future__ import annotations

import importlib
import importlib.machinery
import sys
import types
from pathlib import Path

VERSION = "2.0.0"
WHEEL = Path(__file__).resolve().parents[4] / ".cache-bliss" / f"blisswriter-{VERSION}-py3-none-any.whl"
_PACKAGE = "_blisswriter_2_0_0_nexus"


class ReferenceMissing(RuntimeError):
    """The wheel is not where launch/setup_bliss.sh puts it."""


def _package(wheel: Path) -> types.ModuleType:
    """The private package whose submodules are the wheel's `blisswriter/nexus/*.py`."""
    if _PACKAGE not in sys.modules:
        if not wheel.is_file():
            raise ReferenceMissing(f"blisswriter {VERSION}'s wheel is not at {wheel}: "
                                   "run launch/setup_bliss.sh (make setup-bliss), it downloads it")
        package = types.ModuleType(_PACKAGE, f"blisswriter {VERSION}'s blisswriter.nexus, from {wheel}")
        package.__path__ = [str(wheel / "blisswriter" / "nexus")]
        package.__spec__ = importlib.machinery.ModuleSpec(_PACKAGE, None, is_package=True)
        package.__spec__.submodule_search_locations = package.__path__
        sys.modules[_PACKAGE] = package
    return sys.modules[_PACKAGE]


def nexus_devices(wheel: Path = WHEEL) -> types.ModuleType:
    """blisswriter 2.0.0's `blisswriter.nexus.devices`."""
    _package(wheel)
    return importlib.import_module(f"{_PACKAGE}.devices")


def nexus_mapping(wheel: Path = WHEEL) -> types.ModuleType:
    """blisswriter 2.0.0's `blisswriter.nexus.mapping`."""
    _package(wheel)
    return importlib.import_module(f"{_PACKAGE}.mapping")
