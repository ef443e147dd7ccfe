"""On PYTHONPATH of a test service: blissdata's lima2 and mosca plugins look uninstalled there, so
the writer gets `MissingPluginStream`s, as on a writer host without blissdata-lima2/-mosca."""
from blissdata.redis_engine import scan as _scan

for _name in ("lima2", "mosca"):
    _scan.discovered_plugins.pop(_name, None)
