#!/usr/bin/env bash
# Set up (system packages, .venv with the dev extras), lint and format-check (ruff, pyproject.toml), and run the test
# suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/system-packages.sh
scripts/setup.sh dev
.venv/bin/ruff check --quiet .
.venv/bin/ruff format --check --quiet .
exec .venv/bin/python -m pytest -n 2 "$@" tests
