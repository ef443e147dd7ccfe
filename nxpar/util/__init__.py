"""Small helpers with no nxpar imports: disk permission and free-space checks, calls retried with back-off."""
