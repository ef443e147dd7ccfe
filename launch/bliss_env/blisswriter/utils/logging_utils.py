"""Imported by BLISS's in-process writer; not used by the "nexus" writer."""
import logging


class CustomLogger(logging.LoggerAdapter):
    def __init__(self, logger, prefix):
        super().__init__(logger, {})
        self.prefix = prefix

    def process(self, msg, kwargs):
        return f"{self.prefix}: {msg}", kwargs
