"""SCons tool module ``esp_secure`` (installed with the package)."""

from esp_secure_build.scons import exists, generate

__all__ = ["exists", "generate"]
