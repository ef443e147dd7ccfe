"""Imported by BLISS's in-process writer ("hdf5"), which this environment does not provide."""


class ScanWriterWithState:
    def __init__(self, *args, **kwargs):
        raise RuntimeError('the in-process writer is not available here: use SCAN_SAVING.writer = "nexus"')
