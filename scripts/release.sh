#!/usr/bin/env bash
# Build the release of sample_project/ (ESP32-C3) into sample_project/build/release/.
# Extra arguments go to scons, e.g. `scripts/release.sh ESP_CHIP=esp32`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cd sample_project
exec ../.venv/bin/scons release "$@"
