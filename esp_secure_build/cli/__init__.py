"""The ``esp-secure`` command line: a thin layer over the core."""
