#!/usr/bin/env bash
# Create .venv and install the project with the given extras, keeping the CPU torch 2.13.0 build.
# Usage: scripts/setup.sh [extras]   e.g. scripts/setup.sh dev
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -c constraints-cpu.txt -e ".${extras:+[$extras]}"
