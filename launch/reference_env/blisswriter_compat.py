"""blisswriter 2.0.0 beside blissdata 2.4.5: the one import of the reference writer that no longer
resolves, and nothing else (spec §0.1; docs/reference_comparison.md).

blisswriter 2.0.0's `subscribers/scan_subscriber.py` does `from blissdata.streams.lima2 import
Lima2Stream`; blissdata 2.4.5 moved Lima2 to the plug-in package `blissdata-lima2` (module
`blissdata_lima2`). This module answers that one import with the plug-in's class (a class no stream
is an instance of when the plug-in is absent), through a finder appended to the END of
`sys.meta_path`: a blissdata that still has the module keeps its own. Every other blissdata import
of 2.0.0 works in 2.4.5 through blissdata's own deprecation shims (FutureWarnings, left as they are).

Loaded by the reference venv only (`.venv-reference`, launch/setup_reference.sh: a .pth line
`import blisswriter_compat`); importing it costs nothing until that module is asked for.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import sys

MODULE = "blissdata.streams.lima2"


class Lima2StreamAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finder + loader of `blissdata.streams.lima2` = blissdata_lima2's Lima2Stream."""

    def find_spec(self, fullname, path, target=None):
        if fullname != MODULE:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        return None  # the default module object

    def exec_module(self, module) -> None:
        try:
            from blissdata_lima2 import Lima2Stream
        except ImportError:
            class Lima2Stream:  # noqa: N801 - the name blisswriter imports
                """Stand-in: without the blissdata-lima2 plug-in no stream is a Lima2 stream."""
        module.Lima2Stream = Lima2Stream
        module.__doc__ = "blisswriter_compat: blissdata_lima2.Lima2Stream under blissdata 2.x's old name"


def install() -> None:
    if not any(isinstance(f, Lima2StreamAlias) for f in sys.meta_path):
        sys.meta_path.append(Lima2StreamAlias())


install()
