"""The SCons layer: ``env.Tool('esp_secure')``.

Importing this package registers the tool's folder on SCons's default tool
path, so a project that pip-installed esp-secure-build needs one extra line::

    import esp_secure_build.scons  # registers the 'esp_secure' tool
    env = Environment(tools=['default', 'esp_secure'])

From a checkout, ``site_scons/site_tools/esp_secure.py`` loads the same code.
"""

from __future__ import annotations

import os
from typing import Any

TOOL_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "site_tools")

try:  # only when imported from an SConstruct (SCons itself on sys.path)
    import SCons.Tool

    if TOOL_DIR not in SCons.Tool.DefaultToolpath:
        SCons.Tool.DefaultToolpath.append(TOOL_DIR)
except ImportError:  # pragma: no cover - plain Python import without SCons
    pass


# One module per group of builders, each with generate(env); production first: it takes the build lock.
BUILDER_MODULES = (
    "production", "image", "toolchain", "signing", "encryption", "partitions", "factory", "nvs", "certs", "manifest", "release", "idf",
)  # fmt: skip


_freeze_at_exit = False


def _lighten_gc() -> None:
    """Keep Python's cyclic collector off the objects that live for the whole build.

    A build is a short process whose modules, classes and nodes live until exit: the
    collector walking them again and again (and once more at exit) cost ~20 ms of a
    200 ms release (benchmarks/bench_release.py). ``gc.freeze()`` moves what exists now
    out of its reach; what the build makes later is still collected. At exit the same
    call spares the final collections: files are closed and outputs renamed by then.
    """
    import atexit
    import gc

    global _freeze_at_exit
    gc.freeze()
    if not _freeze_at_exit:
        _freeze_at_exit = True
        atexit.register(gc.freeze)


def generate(env: Any) -> None:
    """Add the esp-secure construction variables, builders and methods to ``env``."""
    import importlib

    from .common import install_one_line_errors, refuse_special_files

    install_one_line_errors()
    refuse_special_files(env)
    for name in BUILDER_MODULES:
        importlib.import_module(f"{__name__}.{name}").generate(env)
    _lighten_gc()


def exists(env: Any) -> bool:
    return True
