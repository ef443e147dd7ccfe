"""`scan_urls` for BLISS's `silx_view` helper: `<file>::/<nb>.1` of a scan."""


def scan_urls(scan_info: dict) -> list[str]:
    filename = scan_info.get("filename")
    nb = scan_info.get("scan_nb")
    return [f"{filename}::/{nb}.1"] if filename and nb else []
