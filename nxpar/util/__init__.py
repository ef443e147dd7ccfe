"""Small helpers with no nxpar imports: disk permission and free-space checks, calls retried with back-off,
the path policy (`paths.py`: allowed_roots, symlinks resolved)."""
