"""esp-secure-build: secure ESP32-family release artifacts from SCons.

The package is a pure-Python core (one module per firmware format), a thin
SCons layer (:mod:`esp_secure_build.scons`) and a thin CLI
(:mod:`esp_secure_build.cli`).
"""

__version__ = "0.1.0"
