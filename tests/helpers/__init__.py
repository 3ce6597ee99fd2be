"""Test helpers (not tests): ELF writer, oracle batch runner."""
