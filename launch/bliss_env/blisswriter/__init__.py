"""Stand-in for the names BLISS 2.4.0 imports from blisswriter 1.x (see ../README.md)."""
