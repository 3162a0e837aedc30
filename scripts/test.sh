#!/usr/bin/env bash
# Set up (system packages, .venv with the dev extras) and run the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/system-packages.sh
scripts/setup.sh dev
exec .venv/bin/python -m pytest -n 2 "$@" tests
