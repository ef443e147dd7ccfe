"""Flint's command line, as BLISS's SCAN_DISPLAY checks `extra_args` against it."""


def configure_parser_arguments(parser) -> None:
    parser.add_argument("--no-flint", action="store_true")
