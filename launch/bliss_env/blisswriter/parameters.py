"""Imported by BLISS's in-process writer; not used by the "nexus" writer."""


def default_saveoptions(configurable: bool = True) -> dict:
    return {"configurable": configurable, "resource_profiling": None}
