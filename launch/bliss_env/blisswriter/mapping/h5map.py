"""No h5map from this stand-in: BLISS logs the error (it ignores h5map failures for the "nexus"
writer) and publishes no `h5maps`, so the writer plans the file from scan_info (spec §4)."""


def scan_info_to_h5map(scan_info, configurable=True, flat=True, multivalue_positioners=False):
    raise NotImplementedError("blisswriter.mapping.h5map is not available in this environment")
