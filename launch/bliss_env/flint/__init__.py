"""Stand-in for ESRF's Flint (not on PyPI): enough for BLISS to import; Flint never starts."""
