"""Flint proxy functions BLISS imports: Flint is never running here."""
import logging

FLINT_LOGGER = logging.getLogger("flint")
FLINT_OUTPUT_LOGGER = logging.getLogger("flint.output")


def check_flint(*args, **kwargs) -> bool:
    return False


def get_flint(*args, mandatory: bool = True, **kwargs):
    if mandatory:
        raise RuntimeError("Flint is not available in this environment")
    return None


def attach_flint(*args, **kwargs):
    raise RuntimeError("Flint is not available in this environment")


def close_flint(*args, **kwargs) -> None:
    return None


def restart_flint(*args, **kwargs) -> None:
    return None
