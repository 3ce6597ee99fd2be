"""SCons tool ``esp_secure`` for use from a checkout of esp-secure-build.

Point ``toolpath`` at this folder (the sample project does); the tool then
uses the package of this checkout, installed or not.
"""

import os
import sys

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from esp_secure_build.scons import exists, generate  # noqa: E402

__all__ = ["exists", "generate"]
