"""blisswriter 1.x `mapping` package: what BLISS imports from it."""
from . import devices, h5map, publish, scan_url_info  # noqa: F401
